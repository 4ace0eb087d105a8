"""Protocol pieces: pcm16 + streaming resampler, event validation, session
config, batched silero-vad against silero's own scorer, the endpointer."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import torch

from streaming.protocol import (
    ProtocolError,
    SessionConfig,
    StreamingResampler,
    apply_session_update,
    decode_pcm16,
    encode_pcm16,
    parse_client_event,
)
from streaming.protocol.audio import AudioDecodeError, resample
from streaming.vad import WINDOW, Endpointer, SileroVAD, VADState


@pytest.mark.parametrize("rates", [(24000, 16000), (16000, 24000), (48000, 16000), (16000, 16000)])
def test_resampler_matches_analytic_sine_and_is_split_invariant(rates):
    a, b = rates
    t = np.arange(a) / a
    x = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    whole = resample(x, a, b)
    assert len(whole) == b
    ref = 0.5 * np.sin(2 * np.pi * 440 * np.arange(b) / b)
    # away from the edges (zero padding) the band-limited resampler is within 1e-3 of the true sine
    err = np.abs(whole[b // 50:-b // 50] - ref[b // 50:-b // 50]).max()
    assert err < 1e-3, err
    np.testing.assert_allclose(_in_chunks(StreamingResampler(a, b), x, 3000, seed=0), whole, atol=1e-6)


def _in_chunks(r: StreamingResampler, x: np.ndarray, max_chunk: int, seed: int) -> np.ndarray:
    """x through `r` in random chunks of 1 .. max_chunk - 1 samples, then flushed."""
    rng = np.random.default_rng(seed)
    parts, i = [], 0
    while i < len(x):
        k = int(rng.integers(1, max_chunk))
        parts.append(r.process(x[i:i + k]))
        i += k
    parts.append(r.flush())
    return np.concatenate(parts)


@pytest.mark.parametrize("rates", [(24000, 16000), (16000, 24000), (48000, 16000), (44100, 16000), (8000, 16000)])
def test_resampler_equals_direct_convolution_in_any_chunking(rates):
    """Output n is sum_k x[k] h[n * down - k * up + c] (the filter centred on input position
    n * in / out, zeros outside the signal), written here as a plain loop, whatever the chunks."""
    a, b = rates
    x = np.random.default_rng(1).standard_normal(3001).astype(np.float32)
    r = StreamingResampler(a, b)
    up, down, h, c = r.up, r.down, r.h, r.center
    k = np.arange(len(x))
    ref = []
    for n in range(-(-len(x) * up // down)):
        tap = n * down - k * up + c
        ok = (tap >= 0) & (tap < len(h))
        ref.append(float((x[ok].astype(np.float64) * h[tap[ok]]).sum()))
    np.testing.assert_allclose(_in_chunks(r, x, 700, seed=2), np.array(ref), atol=1e-6)


def test_pcm16_roundtrip_and_errors():
    x = np.linspace(-1, 0.99, 1000).astype(np.float32)
    y = decode_pcm16(encode_pcm16(x))
    assert np.abs(x - y).max() <= 1 / 32768 + 1e-7
    with pytest.raises(AudioDecodeError, match="base64"):
        decode_pcm16("not base64!!")
    with pytest.raises(AudioDecodeError, match="even number"):
        decode_pcm16(base64.b64encode(b"abc").decode())


@pytest.mark.parametrize("raw,code", [
    ("{not json", "invalid_json"),
    ("[1,2]", "invalid_event"),
    ('{"type": "made.up"}', "unknown_event"),
    ('{"type": "input_audio_buffer.append"}', "missing_field"),
    ('{"type": "conversation.item.delete"}', "missing_field"),
    ('{"type": "conversation.item.create", "item": {"type": "mcp_call", "id": "x"}}', "unsupported_item_type"),
    ('{"type": "conversation.item.create", "item": {"type": "reasoning"}}', "invalid_value"),
    ('{"type": "session.update", "session": {"tools": [{"type": "mcp", "server_label": "s"}]}}',
     "unsupported_tool_type"),
    ('{"type": "response.create", "response": {"tool_choice": {"type": "function"}}}', "missing_field"),
])
def test_bad_events_are_typed_errors(raw, code):
    with pytest.raises(ProtocolError) as e:
        parse_client_event(raw)
    assert e.value.code == code


def test_oversized_message():
    raw = json.dumps({"type": "input_audio_buffer.append", "audio": "A" * 2000})
    with pytest.raises(ProtocolError) as e:
        parse_client_event(raw, max_bytes=1000)
    assert e.value.code == "message_too_large"
    assert parse_client_event(raw, max_bytes=5000).type == "input_audio_buffer.append"


def test_session_update_ga_and_beta_shapes():
    cfg = apply_session_update(SessionConfig(), {
        "type": "realtime", "instructions": "be brief",
        "audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000},
                            "turn_detection": {"type": "server_vad", "silence_duration_ms": 700,
                                               "speculative_silence_ms": 250}},
                  "output": {"format": {"type": "audio/pcm", "rate": 24000}}}})
    assert cfg.input_format.rate == 16000 and cfg.instructions == "be brief"
    assert cfg.turn_detection.silence_duration_ms == 700 and cfg.turn_detection.speculative_silence_ms == 250
    beta = apply_session_update(SessionConfig(), {"input_audio_format": "pcm16", "turn_detection": None,
                                                  "modalities": ["text", "audio"]})
    assert beta.input_format.rate == 24000 and beta.turn_detection is None
    assert json.loads(json.dumps(cfg.to_json()))["audio"]["input"]["turn_detection"]["silence_duration_ms"] == 700


@pytest.mark.parametrize("session,param", [
    ({"audio": {"input": {"format": {"type": "audio/pcmu"}}}}, "session.audio.input.format"),
    ({"audio": {"input": {"format": {"type": "audio/pcm", "rate": 8000}}}}, "session.audio.input.format.rate"),
    ({"input_audio_format": "g711_ulaw"}, "session.input_audio_format"),
    ({"turn_detection": {"type": "server_vad", "threshold": 3}}, "session.turn_detection.threshold"),
    ({"turn_detection": {"silence_duration_ms": 300, "speculative_silence_ms": 400}},
     "session.turn_detection.speculative_silence_ms"),
])
def test_session_update_errors_name_the_field(session, param):
    with pytest.raises(ProtocolError) as e:
        apply_session_update(SessionConfig(), session)
    assert e.value.param == param


def test_batched_vad_equals_silero_reference(voice):
    from silero_vad import load_silero_vad

    x = np.concatenate([np.zeros(4000, np.float32), voice("hello there"), np.zeros(4000, np.float32)])
    vad = SileroVAD()
    a, b = VADState(), VADState()
    # session a arrives in odd pieces, session b whole; both are scored in the same batches
    first = vad.probs([(a, x[:3001]), (b, x)])
    pa = np.concatenate([first[0], vad.probs([(a, x[3001:])])[0]])
    ref_model = load_silero_vad()
    ref = np.array([float(ref_model(torch.from_numpy(x[i * WINDOW:(i + 1) * WINDOW]), 16000))
                    for i in range(len(x) // WINDOW)])
    assert ref.max() > 0.9 and ref[:5].max() < 0.2  # the speech is actually detected
    np.testing.assert_allclose(pa, ref, atol=1e-4)
    np.testing.assert_allclose(first[1], ref, atol=1e-4)


def test_endpointer_two_thresholds():
    win_ms = 32
    speech, sil = [0.95] * 10, [0.02]
    e = Endpointer(threshold=0.5, silence_ms=600, speculative_ms=200)
    # speech, 320 ms pause (speculate, then resume), speech, long silence (end of turn)
    events = e.feed(np.array([0.0] * 5 + speech + sil * 10 + speech + sil * 30))
    kinds = [ev.kind for ev in events]
    assert kinds == ["speech_started", "speculate", "resumed", "speculate", "end_of_turn"]
    spec, end = events[3], events[4]
    assert spec.speech_end == end.speech_end == (5 + 10 + 10 + 10) * WINDOW
    assert (end.sample - end.speech_end) / 16 == pytest.approx(19 * win_ms, abs=win_ms)
    off = Endpointer(speculative_ms=None)
    assert [ev.kind for ev in off.feed(np.array(speech + sil * 30))] == ["speech_started", "end_of_turn"]

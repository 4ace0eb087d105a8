"""OmniModel: prompt building with real encoders (offline == incremental), embeddings,
generation and the checkpoint directory."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from omni.generation import GenerationOptions, OmniRequest, generate, stream
from omni.realtime import RealtimeOmni
from omni.realtime_api import UserChunk
from omni.sequence import Tokens
from omni.sequence_stream import IncrementalBuilder


def _request(seconds=2, n_frames=4, seed=0):
    rng = np.random.default_rng(seed)
    audio = (0.1 * rng.standard_normal(16000 * seconds)).astype(np.float32)
    frames = [rng.integers(0, 255, (56, 84, 3), dtype=np.uint8) for _ in range(n_frames)]
    times = [0.5 * i for i in range(n_frames)]
    return OmniRequest(audio=audio, video=frames, video_times=times)


def test_offline_and_incremental_prompts_are_identical(debug_model):
    m = debug_model
    req = _request()
    offline = m.prepare(req)
    rt = RealtimeOmni(m, max_slots=1, capacity=256)
    slot = rt.open_slot()
    b = IncrementalBuilder(m.fmt)
    runs = [b.open_user_turn()]
    for k in range(2):
        chunk = UserChunk(req.audio[16000 * k : 16000 * (k + 1)], req.video[2 * k : 2 * k + 2], float(k))
        enc = rt.encode_chunk(slot, chunk)
        runs.append(b.add_chunk(enc))
    tail = m.audio_encoder.flush(rt._audio.select(slot))[0]
    runs.append(b.begin_response(tail))
    inc = Tokens.cat(runs)
    assert torch.equal(offline.ids, inc.ids)
    assert torch.equal(offline.codec, inc.codec)
    e_off, e_inc = m.embed_tokens(offline), m.embed_tokens(inc)
    # streaming vs whole-clip audio encoding: fp32 rounding only (measured 9e-8);
    # the vision features are bitwise equal
    torch.testing.assert_close(e_off, e_inc, atol=1e-6, rtol=1e-6)
    assert torch.equal(torch.cat(offline.image), torch.cat(inc.image))
    sp = m.tokenizer.special
    assert int((offline.ids == sp.audio_pad).sum()) == m.audio_encoder.num_frames(32000)
    assert int((offline.ids == sp.image_pad).sum()) == sum(f.shape[0] for f in offline.image) > 0


def test_prefill_batch_equals_single(debug_model):
    m = debug_model
    runs = m.prepare_many([OmniRequest(text="what color is the star"), OmniRequest(text="hi")])
    cache = m.new_cache(2, 64)
    lb, hb = m.prefill(cache, [0, 1], runs)
    for i, r in enumerate(runs):
        c = m.new_cache(1, 64)
        l1, h1 = m.prefill(c, [0], [r])
        torch.testing.assert_close(hb[i], h1[0], atol=1e-5, rtol=1e-5)
        n = len(r)
        torch.testing.assert_close(cache.kv[:, i, :n], c.kv[:, 0, :n], atol=1e-5, rtol=1e-5)


def test_generate_batched_equals_single_and_stream(debug_model):
    m = debug_model
    reqs = [OmniRequest(text="what color is the star"), OmniRequest(text="hi there")]
    opts = GenerationOptions(max_new_tokens=8, decode_audio=False)
    batched = generate(m, reqs, opts)
    for req, rb in zip(reqs, batched):
        (r1,) = generate(m, [req], opts)
        assert r1.text_ids == rb.text_ids
        assert np.array_equal(r1.frames, rb.frames)
        assert rb.steps == 8 and rb.frames.shape[1] == 4
    events = list(stream(m, reqs[0], GenerationOptions(max_new_tokens=8)))
    assert [e.token for e in events if e.token is not None] == batched[0].text_ids
    frames = [e.frame for e in events if e.frame is not None]
    assert np.array_equal(np.stack(frames), batched[0].frames)
    # the streamed waveform equals a whole-sequence decode of the same frames
    wav = np.concatenate([e.audio for e in events if e.audio is not None])
    full = m.codec.decode(torch.as_tensor(batched[0].frames).T[None])[0].numpy()
    np.testing.assert_allclose(wav, full, atol=1e-4)
    assert events[-1].done


def test_codec_values_in_range(debug_model):
    m = debug_model
    (r,) = generate(m, [OmniRequest(text="hello")], GenerationOptions(max_new_tokens=6, decode_audio=False))
    c = m.config.codec
    assert (r.frames[:, 0] >= 0).all() and (r.frames[:, 0] < c.semantic_codebook_size).all()
    assert (r.frames[:, 1:] >= 0).all() and (r.frames[:, 1:] < c.acoustic_codebook_size).all()


def test_checkpoint_round_trip_and_errors(debug_model, tmp_path):
    from omni.model import OmniModel

    m = debug_model
    m.save_pretrained(tmp_path / "ck")
    m2 = OmniModel.from_pretrained(tmp_path / "ck")
    for k, v in m.state_dict().items():
        assert torch.equal(v, m2.state_dict()[k]), k
    run = m.prepare(OmniRequest(text="hi"))
    torch.testing.assert_close(m.embed_tokens(run), m2.embed_tokens(run))
    with pytest.raises(FileNotFoundError, match="config.json"):
        OmniModel.from_pretrained(tmp_path)
    (tmp_path / "ck" / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        OmniModel.from_pretrained(tmp_path / "ck")


def test_training_forward_matches_inference(debug_model):
    """One forward serves training and inference: the teacher-forced pass over a
    prompt gives the prefill's last-position logits, and the audio logits come
    from the same depth-conditioned heads."""
    m = debug_model
    run = m.prepare(_request(seconds=1, n_frames=2))
    logits, hidden, audio_logits = m(run.ids[None], run.codec[None], run.audio, run.image, target_codec=run.codec[None])
    l_pre, h_pre = m.prefill(m.new_cache(1, len(run) + 1), [0], [run])
    torch.testing.assert_close(logits[0, -1].float(), l_pre[0], atol=1e-4, rtol=1e-4)
    assert audio_logits.shape == (1, len(run), 4, m.config.audio_vocab_size)
    torch.testing.assert_close(audio_logits[0, -1, 0], m.audio_head.audio_output_layers[0](h_pre[0]), atol=1e-4, rtol=1e-4)


def test_static_decode_step_matches_eager(debug_model):
    """The backbone's static-shape decode step (the one CUDA graphs capture) gives
    the same replies as the general forward."""
    m = debug_model
    reqs = [OmniRequest(text="what color is the star"), OmniRequest(text="hi")]
    opts = GenerationOptions(max_new_tokens=6, decode_audio=False)
    eager = generate(m, reqs, opts)
    try:
        m.set_decode_mode("static")
        static = generate(m, reqs, opts)
    finally:
        m.set_decode_mode("eager")
    for a, b in zip(eager, static):
        assert a.text_ids == b.text_ids and np.array_equal(a.frames, b.frames)
    with pytest.raises(ValueError, match="CUDA"):
        m.set_decode_mode("graph")


def test_visual_token_budget_per_request(debug_model):
    """A long video is shrunk to the request's visual token budget; a short one is untouched."""
    import dataclasses

    m = debug_model
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (112, 168, 3), dtype=np.uint8) for _ in range(8)]
    req = OmniRequest(text="what moves", video=frames, video_times=[0.5 * i for i in range(8)])
    full = m.prepare(req)
    n_full = int((full.ids == m.tokenizer.special.image_pad).sum())
    old = m.config.vision
    try:
        m.config.vision = dataclasses.replace(old, max_video_tokens=n_full // 3)
        capped = m.prepare(req)
    finally:
        m.config.vision = old
    n_capped = int((capped.ids == m.tokenizer.special.image_pad).sum())
    assert n_capped <= n_full // 3 < n_full
    capped.check(m.tokenizer.special.audio_pad, m.tokenizer.special.image_pad)


def test_a_speech_delay_starts_the_frames_that_many_steps_later(debug_model, monkeypatch):
    """`OmniConfig.text_audio_delay`: generation feeds pad rows for the first steps of a
    reply, so its frames start that many steps later; batched, single and streamed agree."""
    m = debug_model
    req = OmniRequest(text="what color is the star")
    opts = GenerationOptions(max_new_tokens=10, decode_audio=False)
    (plain,) = generate(m, [req], opts)
    monkeypatch.setattr(m.config, "text_audio_delay", 3)
    (late,) = generate(m, [req], opts)
    assert late.text_ids[:1] == plain.text_ids[:1]  # the first step reads the same prompt
    # neither reply ends within 10 steps: a frame per step after the first, and 3 steps later
    assert (len(plain.frames), len(late.frames)) == (10 - 1, 10 - 1 - 3)
    events = list(stream(m, req, GenerationOptions(max_new_tokens=10)))
    assert np.array_equal(np.stack([e.frame for e in events if e.frame is not None]), late.frames)

"""RealtimeOmni: batched prefill/decode over slots, rollback equals never speculating."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from omni.realtime import RealtimeOmni
from omni.realtime_api import UserChunk


def _chunks(n=3, seed=0):
    rng = np.random.default_rng(seed)
    return [
        UserChunk(
            (0.1 * rng.standard_normal(16000)).astype(np.float32),
            [rng.integers(0, 255, (56, 84, 3), dtype=np.uint8) for _ in range(2)],
            float(k),
        )
        for k in range(n)
    ]


def _session(rt, chunks, speculate_after=None, spec_steps=4, steps=6):
    slot = rt.open_slot("Be brief.")
    for k, ch in enumerate(chunks):
        rt.prefill([(slot, rt.encode_chunk(slot, ch))])
        if speculate_after == k:
            mark = rt.slot_length(slot)
            rt.begin_response(slot)
            rt.decode_step([slot])
            for _ in range(spec_steps - 1):
                rt.decode_step([slot])
            rt.truncate(slot, mark)  # the user went on speaking
            assert rt.slot_length(slot) == mark
    rt.begin_response(slot)
    outs = [rt.decode_step([slot])[0] for _ in range(steps)]
    return slot, outs


def test_rollback_equals_never_speculating(debug_model):
    chunks = _chunks()
    a = RealtimeOmni(debug_model, max_slots=1, capacity=512)
    b = RealtimeOmni(debug_model, max_slots=1, capacity=512)
    sa, outs_a = _session(a, chunks, speculate_after=1)
    sb, outs_b = _session(b, chunks, speculate_after=None)
    n = a.slot_length(sa)
    assert n == b.slot_length(sb)
    assert torch.equal(a.cache.kv[:, sa, :n], b.cache.kv[:, sb, :n])  # bitwise
    for x, y in zip(outs_a, outs_b):
        assert x.text_token == y.text_token and x.text == y.text and x.done == y.done
        assert (x.codec_frame is None) == (y.codec_frame is None)
        if x.codec_frame is not None:
            assert np.array_equal(x.codec_frame, y.codec_frame)


def test_batched_slots_match_single_sessions(debug_model):
    chunks = _chunks(2)
    rt = RealtimeOmni(debug_model, max_slots=3, capacity=512)
    s0, s1 = rt.open_slot(), rt.open_slot()
    for ch in chunks:  # one batched encoder step + one batched prefill for both sessions
        rt.prefill(list(zip([s0, s1], rt.encode_chunks([(s0, ch), (s1, ch)]))))
    rt.begin_response(s0)
    rt.begin_response(s1)
    both = [rt.decode_step([s0, s1]) for _ in range(4)]
    single = RealtimeOmni(debug_model, max_slots=1, capacity=512)
    s = single.open_slot()
    for ch in chunks:
        single.prefill([(s, single.encode_chunk(s, ch))])
    single.begin_response(s)
    alone = [single.decode_step([s])[0] for _ in range(4)]
    for pair, one in zip(both, alone):
        assert pair[0].text_token == pair[1].text_token == one.text_token
    torch.testing.assert_close(rt.cache.kv[:, s0, : rt.slot_length(s0)], single.cache.kv[:, s, : single.slot_length(s)], atol=1e-5, rtol=1e-5)


def test_multi_turn_barge_in_and_errors(debug_model):
    rt = RealtimeOmni(debug_model, max_slots=1, capacity=512)
    slot = rt.open_slot()
    rt.prefill_text(slot, "user", "what color is the star")
    rt.begin_response(slot)
    start = rt.slot_length(slot)
    for _ in range(3):
        rt.decode_step([slot])
    rt.truncate(slot, start + 1)  # barge-in: keep what was delivered
    with pytest.raises(RuntimeError, match="not answering"):
        rt.decode_step([slot])
    rt.end_response(slot)
    n = rt.slot_length(slot)
    assert n == start + 1 + 2  # </longcat_s> + newline close the cut reply
    # frames arriving during the next reply are buffered (sparse), not prefilled
    rt.prefill_text(slot, "user", "and now?")
    rt.begin_response(slot)
    m = rt.slot_length(slot)
    for ch in _chunks(3):
        ch.speaking = False
        rt.prefill([(slot, rt.encode_chunk(slot, ch))])
    assert rt.slot_length(slot) == m
    assert [t for t, _ in rt._slots[slot].builder.state.sparse] == [0.0, 2.0]
    out = rt.decode_step([slot])[0]
    rt.truncate(slot, rt.slot_length(slot))
    rt.end_response(slot)
    ch = _chunks(1, seed=3)[0]
    ch.start_time = 5.0
    before = rt.slot_length(slot)
    rt.prefill([(slot, rt.encode_chunk(slot, ch))])
    ids = rt.slot_token_ids(slot)
    assert len(ids) == rt.slot_length(slot)
    text = debug_model.tokenizer.hf.decode(ids[before:])
    assert text.startswith("USER:second{0.0}:<mask_118>") and "second{2.0}:" in text and "second{5.0}:" in text
    with pytest.raises(RuntimeError, match="slots are in use"):
        rt.open_slot()
    rt.close_slot(slot)
    with pytest.raises(KeyError, match="not open"):
        rt.slot_length(slot)
    with pytest.raises(ValueError, match="length must be in"):
        s = rt.open_slot()
        rt.truncate(s, 10**6)


def test_full_cache_ends_the_reply(debug_model):
    rt = RealtimeOmni(debug_model, max_slots=1, capacity=40)
    slot = rt.open_slot()
    rt.prefill_text(slot, "user", "what color is the star")
    rt.begin_response(slot)
    outs = []
    while not (outs and outs[-1].done):
        outs.append(rt.decode_step([slot])[0])
        assert len(outs) < 50
    assert rt.slot_length(slot) == 40
    with pytest.raises(ValueError, match="capacity"):
        rt.end_response(slot)  # no room for the closing tokens: a clear error
    rt.truncate(slot, 30)
    rt.end_response(slot)
    with pytest.raises(ValueError, match="capacity"):
        rt.prefill_text(slot, "user", "how many red circles and blue squares do you see")


def test_sampled_replies_are_reproducible_from_the_seed(debug_model):
    from omni.generation import GenerationOptions
    from omni.segments import TextSampling

    def reply(seed):
        opts = GenerationOptions(max_new_tokens=6, text=TextSampling(temperature=1.0, top_k=50, seed=seed))
        rt = RealtimeOmni(debug_model, max_slots=1, capacity=128, options=opts)
        slot = rt.open_slot()
        rt.prefill_text(slot, "user", "hello")
        rt.begin_response(slot)
        return [rt.decode_step([slot])[0].text_token for _ in range(6)]

    assert reply(3) == reply(3)


def _stream(seconds=3, seed=5):
    rng = np.random.default_rng(seed)
    audio = (0.1 * rng.standard_normal(int(16000 * seconds))).astype(np.float32)
    return audio


def _feed(rt, slot, audio, cuts):
    lo = 0
    for hi in list(cuts) + [len(audio)]:
        rt.prefill([(slot, rt.encode_chunk(slot, UserChunk(audio[lo:hi].copy(), [], lo / 16000)))])
        lo = hi


def test_same_audio_same_context_whatever_the_packets(debug_model):
    """1 s packets, a partial packet + the rest, uneven pieces: the same token ids
    and (streaming-encoder rounding aside) the same embeddings after the turn."""
    audio = _stream(2.7)
    got = {}
    for name, cuts in {"1s": [16000, 32000], "partial": [16000, 21000, 37000], "uneven": [3000, 27000, 30000]}.items():
        rt = RealtimeOmni(debug_model, max_slots=1, capacity=512)
        slot = rt.open_slot()
        _feed(rt, slot, audio, cuts)
        rt.begin_response(slot)
        got[name] = (rt.slot_token_ids(slot), rt.cache.kv[:, slot, : rt.slot_length(slot)].clone())
    ids, kv = got["1s"]
    assert debug_model.tokenizer.hf.decode(ids).count("second{") == 3
    for name, (ids2, kv2) in got.items():
        assert ids2 == ids, name
        # the streaming encoder's frames agree across chunkings to fp32 rounding only
        torch.testing.assert_close(kv2, kv, atol=1e-4, rtol=1e-4)


def test_rollback_after_a_partial_packet_equals_never_speculating(debug_model):
    """The server's pattern: a partial packet flushed at the pause, a speculative
    reply, rollback when the user resumes, then the rest in 1 s packets from there."""
    audio = _stream(3.1)
    cuts = [16000, 21000, 37000]
    a = RealtimeOmni(debug_model, max_slots=1, capacity=512)
    b = RealtimeOmni(debug_model, max_slots=1, capacity=512)
    sa, sb = a.open_slot("Be brief."), b.open_slot("Be brief.")
    _feed(a, sa, audio[:21000], cuts[:1])
    mark = a.slot_length(sa)
    a.begin_response(sa)
    for _ in range(4):
        a.decode_step([sa])
    a.truncate(sa, mark)
    lo = 21000
    for hi in cuts[2:] + [len(audio)]:
        a.prefill([(sa, a.encode_chunk(sa, UserChunk(audio[lo:hi].copy(), [], lo / 16000)))])
        lo = hi
    _feed(b, sb, audio, cuts)
    n = a.slot_length(sa)
    assert n == b.slot_length(sb) and a.slot_token_ids(sa) == b.slot_token_ids(sb)
    assert torch.equal(a.cache.kv[:, sa, :n], b.cache.kv[:, sb, :n])  # bitwise
    a.begin_response(sa)
    b.begin_response(sb)
    for _ in range(5):
        x, y = a.decode_step([sa])[0], b.decode_step([sb])[0]
        assert x.text_token == y.text_token and x.done == y.done
        assert (x.codec_frame is None) == (y.codec_frame is None)
        assert x.codec_frame is None or np.array_equal(x.codec_frame, y.codec_frame)
    n = a.slot_length(sa)
    assert torch.equal(a.cache.kv[:, sa, :n], b.cache.kv[:, sb, :n])


def test_frames_ready_by_bisection_matches_the_model_rule(debug_model):
    rt = RealtimeOmni(debug_model, max_slots=1, capacity=64)
    for n in [0, 399, 400, 5000, 16000, 21000, 32000, 47999, 48000, 160000 + 7]:
        assert rt._frames_ready(n) == debug_model.frames_ready(n), n

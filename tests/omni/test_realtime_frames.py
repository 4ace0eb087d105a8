"""RealtimeOmni with timed video frames: the same audio + frames give the same
context whatever the packet split, laid out as the offline builder lays them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from encoders.image_processing import preprocess_video
from omni.realtime import RealtimeOmni
from omni.realtime_api import UserChunk
from omni.sequence_av import build_av_user_turn

SR = 16000
SPLITS = {"1s": [16000, 32000], "partial": [16000, 21000, 37000], "uneven": [3000, 27000, 30000, 40000]}


def _media(seconds=2.7, seed=7, times=(0.0, 0.5, 1.0, 1.5, 2.0, 2.5)):
    rng = np.random.default_rng(seed)
    audio = (0.1 * rng.standard_normal(int(SR * seconds))).astype(np.float32)
    frames = [(t, rng.integers(0, 255, (56, 84, 3), dtype=np.uint8)) for t in times]
    return audio, frames


def _chunk(audio, frames, lo, hi, t0=0.0):
    """The packet of samples [lo, hi) with the frames whose time falls inside it."""
    a, b = t0 + lo / SR, t0 + hi / SR
    inside = [(t, f) for t, f in frames if a - 1e-9 <= t < b - 1e-9]
    return UserChunk(audio[lo:hi].copy(), [f for _, f in inside], a, True, frame_times=[t for t, _ in inside])


def _feed(rt, slot, audio, frames, cuts, t0=0.0):
    lo = 0
    for hi in list(cuts) + [len(audio)]:
        rt.prefill([(slot, rt.encode_chunk(slot, _chunk(audio, frames, lo, hi, t0)))])
        lo = hi


def _turn(model, audio, frames, cuts, t0=0.0):
    rt = RealtimeOmni(model, max_slots=1, capacity=1024)
    slot = rt.open_slot()
    _feed(rt, slot, audio, frames, cuts, t0)
    rt.begin_response(slot)
    return rt, slot


@pytest.mark.parametrize("times,t0", [((0.0, 0.5, 1.0, 1.5, 2.0, 2.5), 0.0), ((3.25, 3.75, 4.25, 5.25), 3.25)])
def test_same_frames_same_context_whatever_the_packets(debug_model, times, t0):
    """1 s packets, a partial packet + the rest, uneven pieces: identical token ids,
    identical image features, and the cache equal to fp32 rounding (the streaming
    audio encoder's frames differ in rounding only across chunkings)."""
    audio, frames = _media(times=times)
    got = {}
    for name, cuts in SPLITS.items():
        rt, slot = _turn(debug_model, audio, frames, cuts, t0)
        got[name] = (rt.slot_token_ids(slot), rt.cache.kv[:, slot, : rt.slot_length(slot)].clone())
    ids, kv = got["1s"]
    img = debug_model.tokenizer.special.image_pad
    assert ids.count(img) > 0
    for name, (ids2, kv2) in got.items():
        assert ids2 == ids, name
        torch.testing.assert_close(kv2, kv, atol=1e-4, rtol=1e-4)
    # image rows alone: the ViT features of each unit are the same whatever the split
    pos = [i for i, x in enumerate(ids) if x == img]
    for name, (_, kv2) in got.items():
        torch.testing.assert_close(kv2[:, pos[0]], kv[:, pos[0]], atol=1e-5, rtol=1e-5)


def test_layout_matches_the_offline_builder(debug_model):
    """The streamed turn (uneven packets, a pair split across them, a lone last
    frame) has the ids of `build_av_user_turn` given the pairs at their first
    frame's time."""
    audio, frames = _media(times=(0.0, 0.5, 1.0, 1.5, 2.0))
    rt, slot = _turn(debug_model, audio, frames, SPLITS["uneven"])
    ids = rt.slot_token_ids(slot)
    fmt, vis = debug_model.fmt, debug_model.config.vision
    units = [preprocess_video([f for _, f in frames[i:i + 2]], vis)[0] for i in range(0, len(frames), 2)]
    video = list(zip([frames[i][0] for i in range(0, len(frames), 2)], debug_model.encode_visual(units)))
    n_audio = ids.count(debug_model.tokenizer.special.audio_pad)
    ref = build_av_user_turn(fmt, torch.zeros(n_audio, debug_model.config.llm.hidden_size), len(audio), video,
                             frames_ready=debug_model.frames_ready, chunk_seconds=debug_model.config.chunk_seconds)
    ref_ids = ref.ids.tolist() + fmt.generation_prompt(rt.options.speech).ids.tolist()
    assert ids == ref_ids
    # 3 units: (0, .5) in second 0, (1, 1.5) in second 1, the lone 2.0 (repeated) in second 2
    text = debug_model.tokenizer.hf.decode(ids)
    assert text.count("second{") == 3
    assert [len(v) for _, v in video] and ids.count(debug_model.tokenizer.special.image_pad) == sum(
        v.shape[0] for _, v in video)


def test_rollback_keeps_the_lone_frame(debug_model):
    """A partial packet ends between the two frames of a pair: the speculative reply
    takes the lone frame alone; rolling back restores it waiting, and the rest of
    the turn pairs it exactly as a session that never speculated."""
    audio, frames = _media(seconds=3.1, times=(0.0, 0.5, 1.0, 1.5, 2.0, 2.5))
    cut = 21000  # 1.3125 s: frame 1.0 in, frame 1.5 not yet
    a = RealtimeOmni(debug_model, max_slots=1, capacity=1024)
    b = RealtimeOmni(debug_model, max_slots=1, capacity=1024)
    sa, sb = a.open_slot("Be brief."), b.open_slot("Be brief.")
    _feed(a, sa, audio[:cut], frames, [16000])
    assert a._slots[sa].builder.state.lone_frame is not None
    mark = a.slot_length(sa)
    a.begin_response(sa)
    img = debug_model.tokenizer.special.image_pad
    spec_imgs = a.slot_token_ids(sa).count(img)
    for _ in range(3):
        a.decode_step([sa])
    a.truncate(sa, mark)
    assert a._slots[sa].builder.state.lone_frame is not None
    lo = cut
    for hi in [37000, len(audio)]:
        a.prefill([(sa, a.encode_chunk(sa, _chunk(audio, frames, lo, hi)))])
        lo = hi
    _feed(b, sb, audio, frames, [16000, 32000, 48000])
    a.begin_response(sa)
    b.begin_response(sb)
    n = a.slot_length(sa)
    assert a.slot_token_ids(sa) == b.slot_token_ids(sb)
    assert b.slot_token_ids(sb).count(img) > spec_imgs
    torch.testing.assert_close(a.cache.kv[:, sa, :n], b.cache.kv[:, sb, :n], atol=1e-4, rtol=1e-4)


def test_frame_times_are_checked(debug_model):
    rt = RealtimeOmni(debug_model, max_slots=1, capacity=256)
    slot = rt.open_slot()
    bad = UserChunk(np.zeros(16000, np.float32), [np.zeros((56, 84, 3), np.uint8)] * 2, 0.0, True, frame_times=[0.0])
    with pytest.raises(ValueError, match="frame_times"):
        rt.encode_chunk(slot, bad)


def test_replies_begun_together_equal_replies_begun_alone(debug_model):
    """`begin_responses` of two slots (different turns, each with a lone frame, one with a
    forced opening) gives each the context, KV and first logits `begin_response` gives it alone,
    and the same greedy replies; a slot twice or one already answering is refused."""
    a_audio, a_frames = _media(seconds=2.7, seed=7, times=(0.0, 0.5, 1.0, 1.5, 2.0))
    b_audio, b_frames = _media(seconds=1.3, seed=8, times=(0.0, 0.5, 1.0))
    together = RealtimeOmni(debug_model, max_slots=2, capacity=1024)
    alone = RealtimeOmni(debug_model, max_slots=2, capacity=1024)
    for rt in (together, alone):
        sa, sb = rt.open_slot(), rt.open_slot("Be brief.")
        _feed(rt, sa, a_audio, a_frames, [16000])
        _feed(rt, sb, b_audio, b_frames, [])
    assert all(together._slots[s].builder.state.lone_frame is not None for s in (sa, sb))  # one ViT pass for both
    together.begin_responses([(sa, ""), (sb, "Well")])
    alone.begin_response(sa)
    alone.begin_response(sb, "Well")
    for s in (sa, sb):
        n = alone.slot_length(s)
        assert together.slot_token_ids(s) == alone.slot_token_ids(s)
        torch.testing.assert_close(together.cache.kv[:, s, :n], alone.cache.kv[:, s, :n], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(together._slots[s].reply.logits, alone._slots[s].reply.logits, atol=1e-4, rtol=1e-4)
    steps = [[(o.text_token, None if o.codec_frame is None else tuple(o.codec_frame)) for o in rt.decode_step([sa, sb])]
             for rt in (together, alone) for _ in range(4)]
    assert steps[:4] == steps[4:]
    together.end_responses([sa, sb])
    alone.end_response(sb)
    alone.end_response(sa)
    for s in (sa, sb):
        assert together.slot_token_ids(s) == alone.slot_token_ids(s)
        torch.testing.assert_close(together.cache.kv[:, s, :alone.slot_length(s)],
                                   alone.cache.kv[:, s, :alone.slot_length(s)], atol=1e-4, rtol=1e-4)
    together.end_responses([sa, sb])  # nothing left to close: a no-op
    assert [together.slot_token_ids(s) for s in (sa, sb)] == [alone.slot_token_ids(s) for s in (sa, sb)]
    together.begin_responses([(sa, ""), (sb, "")])
    with pytest.raises(RuntimeError, match="already answering"):
        together.begin_responses([(sa, "")])
    with pytest.raises(ValueError, match="twice"):
        alone.begin_responses([(sa, ""), (sa, "")])

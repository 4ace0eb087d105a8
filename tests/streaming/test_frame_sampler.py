"""FrameSampler: the dense frames picked (and their times) do not depend on where
the packets are split; slots count from the turn's start."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from streaming.frames import Frame, FrameSampler


def _jpeg(i: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((24, 32, 3), (i * 37) % 256, np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def _camera(t0: float, t1: float, fps: float, seed: int = 0) -> list[Frame]:
    """A camera with jittered frame times (about `fps`), time-ordered."""
    rng = np.random.default_rng(seed)
    base = np.arange(t0, t1, 1.0 / fps)
    times = base + rng.uniform(0, 0.4 / fps, len(base))
    return [Frame(float(t), _jpeg(i)) for i, t in enumerate(times)]


def _take_all(frames: list[Frame], origin: float, cuts: list[float], end: float, ahead: float):
    """Packets [lo, hi) in turn; before each, the frames up to `ahead` s past its end have arrived."""
    s = FrameSampler()
    s.start_turn(origin)
    todo = list(frames)
    times, rgbs, lo = [], [], origin
    for hi in cuts + [end]:
        while todo and todo[0].time < hi + ahead:
            s.add(todo.pop(0), answering=False)
        t, r = s.take_timed(lo, hi)
        assert len(t) == len(r)
        times += t
        rgbs += r
        lo = hi
    return times, rgbs


@pytest.mark.parametrize("origin", [0.0, 1.37])
@pytest.mark.parametrize("fps,ahead", [(3.0, 0.5), (7.5, 0.5), (30.0, 0.5), (30.0, 0.0)])
def test_same_frames_whatever_the_packet_split(origin, fps, ahead):
    """The camera's frames reach the server `ahead` s before the audio (0: in step;
    a slot then needs a frame between its start and the packet's end, as any
    camera of 4+ FPS gives)."""
    frames = _camera(origin - 0.3, origin + 4.0, fps, seed=int(fps))
    end = origin + 3.6
    splits = {
        "1s": [origin + 1, origin + 2, origin + 3],
        "partial": [origin + 1, origin + 1.3125, origin + 2.3125, origin + 3.3125],
        "uneven": [origin + 0.19, origin + 1.7, origin + 1.71, origin + 2.26, origin + 2.9],
    }
    ref_t, ref_rgb = _take_all(frames, origin, splits["1s"], end, ahead)
    for name, cuts in splits.items():
        t, rgb = _take_all(frames, origin, cuts, end, ahead)
        assert t == ref_t, name
        assert all(np.array_equal(a, b) for a, b in zip(rgb, ref_rgb)), name
    # one frame per 0.5 s slot: the earliest at or after the slot start
    slots = [origin + 0.5 * k for k in range(8)]
    want = []
    for s in slots:
        inside = [f.time for f in frames if s - 1e-6 <= f.time < s + 0.5 - 1e-6]
        if inside:
            want.append(min(inside))
    assert ref_t == want
    if fps >= 3:
        assert len(ref_t) >= 7  # a 3 FPS camera leaves at most the odd slot empty


def test_frames_before_the_turn_and_consumed_frames_are_not_picked():
    s = FrameSampler()
    s.start_turn(2.0)
    for t in [1.6, 1.9, 2.0, 2.2, 2.6, 3.1]:
        s.add(Frame(t, _jpeg(int(t * 10))), answering=False)
    assert s.take_timed(2.0, 2.3)[0] == [2.0]
    assert s.take_timed(2.3, 3.0)[0] == [2.6]  # 2.2 belonged to the slot at 2.0, already taken
    assert s.take_timed(3.0, 4.0)[0] == [3.1]
    assert s.take_timed(4.0, 5.0)[0] == []


def test_sparse_frames_while_answering_are_held_with_their_times():
    s = FrameSampler()
    for k in range(12):  # 3 s at 4 FPS
        s.add(Frame(10 + k / 4, _jpeg(k)), answering=True)
    times, rgbs = s.take_held_timed()
    assert times == [10.0, 12.0] and len(rgbs) == 2
    assert s.take_held_timed() == ([], [])


def test_the_closing_packet_holds_the_latest_frame_for_its_open_slot():
    """A turn cut 0.35 s into a slot, before that slot's frame came: the closing packet
    holds the frame before it (stamped with the slot), a packet of a turn that goes on
    does not, a slot already closed never does, and a stale camera is not held."""
    def sampler(times):
        s = FrameSampler()
        s.start_turn(0.2)
        for i, t in enumerate(times):
            s.add(Frame(t, _jpeg(i)), answering=False)
        s.take_timed(0.2, 2.2)  # slots 0.2 ... 1.7 taken
        return s

    camera = [0.25, 0.7, 1.15, 1.6, 2.05]  # ~2.2 FPS: the next frame, 2.5, is not there yet
    assert sampler(camera).take_timed(2.2, 2.55)[0] == []
    times, rgbs = sampler(camera).take_timed(2.2, 2.55, closing=True)
    assert times == [2.2] and len(rgbs) == 1
    want = np.asarray(Image.open(io.BytesIO(_jpeg(4))).convert("RGB"))
    assert np.array_equal(rgbs[0], want)  # the latest frame, 2.05
    # a slot that ended inside the packet had its chance: only the open one holds
    assert sampler(camera).take_timed(2.2, 2.95, closing=True)[0] == [2.7]
    # a camera that stopped more than hold_s before the slot is not held
    assert sampler([0.25, 0.7, 1.15]).take_timed(2.2, 2.55, closing=True)[0] == []
    # a frame that came in time is taken as always
    assert sampler(camera + [2.5]).take_timed(2.2, 2.55, closing=True)[0] == [2.5]

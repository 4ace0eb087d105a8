"""Chat template and the offline vs incremental audio-visual builders."""

from __future__ import annotations

import torch

from omni.sequence import ChatFormat, Tokens, format_timestamp
from omni.sequence_av import EncodedChunk, build_av_user_turn, default_frames_ready
from omni.sequence_stream import IncrementalBuilder

D = 8


def _decode_all(tok, ids):
    return tok.hf.decode(ids.tolist())


def test_timestamp_half_up():
    assert format_timestamp(0) == "second{0.0}:"
    assert format_timestamp(2.25) == "second{2.3}:"
    assert format_timestamp(12.0) == "second{12.0}:"


def test_text_chat_template(tok):
    fmt = ChatFormat(tok)
    run = fmt.render_text([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}])
    text = _decode_all(tok, run.ids)
    assert text == "SYSTEM:Be brief.</longcat_s>\nUSER:hi\nVOICE ASSISTANT:"
    assert (run.codec == 3).all() and run.codec.shape == (len(run), 4)


def test_default_audio_slots_alternate_12_13():
    counts = [default_frames_ready(16000 * (k + 1)) - default_frames_ready(16000 * k) for k in range(6)]
    assert counts == [12, 13, 12, 13, 12, 13]


def _lookahead_ready(n: int) -> int:
    # an encoder with ~200 ms of look-ahead releases frames late
    return max(0, (n - 3200) // 1280)


def _inputs(seconds=3.5, units=4, sparse=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    n_samples = int(16000 * seconds)
    n_frames = -(-n_samples // 1280)
    audio = torch.randn(n_frames, D, generator=g)
    video = [(float(k), torch.randn(3 + k, D, generator=g)) for k in range(units)]
    sparse_units = [(-4.0 + 2 * j, torch.randn(2, D, generator=g)) for j in range(sparse)]
    return n_samples, audio, video, sparse_units


def _incremental(fmt, n_samples, audio, video, sparse_units, ready):
    """Feed the same input chunk by chunk, as the streaming server does."""
    b = IncrementalBuilder(fmt)
    b.state.in_response = True  # the assistant is answering: frames arrive sparse and are buffered
    for t, f in sparse_units:
        assert len(b.add_chunk(EncodedChunk(t, torch.zeros(0, D), [f], [t], 0, speaking=False))) == 0
    b.end_response(needs_eos=False)  # (its tokens close the previous turn: not compared)
    runs, done, k = [], 0, 0
    while k * 16000 < n_samples or any(k <= t < k + 1 for t, _ in video):
        lo, hi = k * 16000, min((k + 1) * 16000, n_samples)
        num = max(0, hi - lo)
        r = min(ready(hi), audio.shape[0]) if num else done  # frames the encoder has released
        units = [(t, f) for t, f in video if k <= t < k + 1]
        runs.append(b.add_chunk(EncodedChunk(float(k), audio[done:r], [f for _, f in units], [t for t, _ in units], num)))
        done, k = r, k + 1
    runs.append(b.close_user_turn(audio[done:]))  # the encoder flush releases the rest
    return Tokens.cat(runs)


def test_offline_equals_incremental(tok):
    fmt = ChatFormat(tok)
    sp = tok.special
    for seconds, units, ready in [(3.5, 4, _lookahead_ready), (2.0, 4, default_frames_ready), (4.2, 2, default_frames_ready)]:
        n, audio, video, sparse = _inputs(seconds, units)
        off = build_av_user_turn(fmt, audio, n, video, sparse, frames_ready=ready)
        inc = _incremental(fmt, n, audio, video, sparse, ready)
        assert torch.equal(off.ids, inc.ids)
        assert torch.equal(off.codec, inc.codec)
        assert torch.equal(torch.cat(off.audio), torch.cat(inc.audio))
        assert torch.equal(torch.cat(off.image), torch.cat(inc.image))
        off.check(sp.audio_pad, sp.image_pad)
        assert int((off.ids == sp.audio_pad).sum()) == audio.shape[0]


def test_interleaved_layout_text(tok):
    fmt = ChatFormat(tok)
    n, audio, video, sparse = _inputs(2.0, 2, sparse=1)
    run = build_av_user_turn(fmt, audio, n, video, sparse)
    text = _decode_all(tok, run.ids)
    A, P, I, E = "<mask_110>", "<mask_112>", "<mask_118>", "<mask_111>"
    expected = (
        "USER:second{-4.0}:" + I * 2 + "second{0.0}:" + I * 3 + A + P * 12 + "second{1.0}:" + I * 4 + P * 13 + P * 0 + E + "\n"
    )
    assert text == expected


def test_sparse_frames_are_rate_limited_and_buffered(tok):
    fmt = ChatFormat(tok)
    b = IncrementalBuilder(fmt)
    b.state.in_response = True
    f = torch.zeros(1, D)
    for t in [0.0, 0.5, 1.0, 2.0, 3.0, 4.1]:
        assert len(b.add_chunk(EncodedChunk(t, torch.zeros(0, D), [f], [t], 16000, speaking=False))) == 0
    assert [t for t, _ in b.state.sparse] == [0.0, 2.0, 4.1]
    snap = b.snapshot()
    b.end_response(False)
    opened = b.add_chunk(EncodedChunk(5.0, torch.zeros(0, D), [], [], 16000))
    assert "second{4.1}:" in _decode_all(tok, opened.ids) and b.state.sparse == []
    b.restore(snap)
    assert len(b.state.sparse) == 3 and b.state.in_response


def _split_incremental(fmt, n_samples, audio, video, ready, cuts):
    """Feed the same stream in packets ending at `cuts` (samples); each packet
    carries the frames the encoder releases by its end and the units timed inside it."""
    b = IncrementalBuilder(fmt, frames_ready=ready)
    runs, done, lo = [b.open_user_turn()], 0, 0
    for hi in list(cuts) + [n_samples]:
        if hi <= lo:
            continue
        r = min(ready(hi), audio.shape[0])
        units = [(t, f) for t, f in video if lo / 16000 <= t < hi / 16000]
        chunk = EncodedChunk(lo / 16000, audio[done:r], [f for _, f in units], [t for t, _ in units], hi - lo)
        runs.append(b.add_chunk(chunk))
        done, lo = r, hi
    runs.append(b.close_user_turn(audio[done:]))
    return Tokens.cat(runs)


def test_layout_does_not_depend_on_packet_boundaries(tok):
    """1 s packets, a partial packet + the rest in 1 s packets, uneven pieces
    (tiny ones, ones longer than a second, images in the later part of a second):
    always the offline layout, bitwise."""
    fmt = ChatFormat(tok)
    g = torch.Generator().manual_seed(1)
    splits = {
        "1s": [16000, 32000, 48000],
        "partial+rest": [16000, 21000, 37000, 53000],
        "uneven": [700, 5000, 29000, 29001, 31999, 40000, 64000],
        "one": [],
    }
    for seconds, ready in [(3.7, default_frames_ready), (4.0, _lookahead_ready)]:
        n, audio, video, _ = _inputs(seconds, units=0)
        # two units per second, at .0 and .5: in a split second they land in different packets
        video = [(0.5 * j, torch.randn(2 + j % 3, D, generator=g)) for j in range(int(2 * seconds))]
        off = build_av_user_turn(fmt, audio, n, video, frames_ready=ready)
        for name, cuts in splits.items():
            inc = _split_incremental(fmt, n, audio, video, ready, [c for c in cuts if c < n])
            assert torch.equal(off.ids, inc.ids), (seconds, name)
            assert torch.equal(off.codec, inc.codec), (seconds, name)
            assert torch.equal(torch.cat(off.audio), torch.cat(inc.audio)), (seconds, name)
            assert torch.equal(torch.cat(off.image), torch.cat(inc.image)), (seconds, name)


def test_a_partial_second_waits_and_snapshots_carry_it(tok):
    """A packet that stops inside a second prefills nothing of that second; the
    pending second is in the snapshot, and the close of the turn emits it."""
    fmt = ChatFormat(tok)
    n, audio, _, _ = _inputs(2.0, units=0)
    b = IncrementalBuilder(fmt)
    first = b.add_chunk(EncodedChunk(0.0, audio[:12], [], [], 16000))
    assert _decode_all(tok, first.ids).startswith("USER:second{0.0}:<mask_110>")
    assert len(b.add_chunk(EncodedChunk(1.0, audio[12:16], [], [], 5000))) == 0
    snap = b.snapshot()
    closed = b.begin_response(audio[16:17])
    assert _decode_all(tok, closed.ids).startswith("second{1.0}:" + "<mask_112>" * 5 + "<mask_111>")
    b.restore(snap)  # rollback: the user went on speaking
    rest = b.add_chunk(EncodedChunk(21000 / 16000, audio[16:25], [], [], 11000))
    assert _decode_all(tok, rest.ids) == "second{1.0}:" + "<mask_112>" * 13
    assert torch.equal(torch.cat(rest.audio), audio[12:25])

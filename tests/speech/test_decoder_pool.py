"""The pooled streaming decoder (`speech.decoder_pool.DecoderPool`): one state, a row per
stream, rows reused. Every stream's audio equals the stream decoded alone (within 1e-5
fp32, sample-exact in length and emission schedule), in each mode, whatever position each
stream is at, with rows freed by flushing or by dropping the handle and reused."""

from __future__ import annotations

import gc

import pytest
import torch

from speech.decoder import CodecDecoder
from speech.decoder_pool import DecoderPool
from tests.speech.stream_helpers import ATOL, DECODERS, decode_alone, make_decoder, stream_codes


# (name, first global step, frames). With 3 rows: "E" starts after "B" and "C" are
# flushed and takes one of their rows; "F" waits for "D"'s row, freed by dropping its
# handle unflushed (a reply cut by a barge-in). C is shorter than the look-ahead.
PLAN = [("A", 0, 14), ("B", 2, 6), ("C", 1, 2), ("D", 3, 4), ("E", 9, 5), ("F", 8, 4)]
CUT = {"D": 3}  # D's handle is dropped after this many frames: no flush, no reference


@pytest.fixture(scope="module", params=DECODERS)
def dec(request) -> CodecDecoder:
    return make_decoder(request.param)


def _run(pool: DecoderPool, codes: dict[str, torch.Tensor]) -> dict[str, tuple[list, torch.Tensor | None]]:
    out: dict[str, tuple[list, torch.Tensor | None]] = {}
    handles: dict = {}
    horizon = max(start + n for _, start, n in PLAN)
    for clock in range(horizon + 1):
        for name, start, n in PLAN:
            if clock == start:
                handles[name] = pool.acquire()
                out[name] = ([], None)
        live = [(name, clock - start) for name, start, n in PLAN
                if name in handles and 0 <= clock - start < CUT.get(name, n)]
        if clock % 2:
            live.reverse()  # row order must not matter
        if live:
            pieces = pool.step([(handles[name], codes[name][:, t]) for name, t in live])
            for (name, _), piece in zip(live, pieces):
                out[name][0].append(piece.clone())
        for name, start, n in PLAN:
            if name in CUT and name in handles and clock == start + CUT[name] - 1:
                del handles[name]  # dropped: the row goes back without a flush
                gc.collect()
            elif name in handles and clock == start + n - 1:
                out[name] = (out[name][0], pool.flush(handles.pop(name)))
    return out


@torch.no_grad()
@pytest.mark.parametrize("mode", ["rows", "full"])
def test_every_row_decodes_as_its_streamdecode_alone(dec: CodecDecoder, mode: str) -> None:
    codes = {name: stream_codes(dec.cfg, n, seed=i) for i, (name, _, n) in enumerate(PLAN)}
    pool = DecoderPool(dec, rows=3, mode=mode)
    got = _run(pool, codes)
    hop, L = dec.hop_length, dec.lookahead
    for name, _, n in PLAN:
        n_fed = CUT.get(name, n)
        ref_steps, ref_tail = decode_alone(dec, codes[name][:, :n_fed])
        steps, tail = got[name]
        assert [p.shape[-1] for p in steps] == [0] * min(L, n_fed) + [hop] * max(0, n_fed - L), name
        for p, r in zip(steps, ref_steps):
            torch.testing.assert_close(p, r, atol=ATOL, rtol=0)
        if name in CUT:
            assert tail is None
            continue
        torch.testing.assert_close(tail, ref_tail, atol=ATOL, rtol=0)
        whole = torch.cat(steps + [tail])
        assert whole.shape[-1] == n * hop
        assert whole.abs().max() > 1e-4  # not trivially silent
    assert pool.in_use == 0


def test_rows_are_handed_out_and_returned(dec: CodecDecoder) -> None:
    pool = DecoderPool(dec, rows=2)
    a, b = pool.acquire(), pool.acquire()
    assert {a.row, b.row} == {0, 1} and pool.in_use == 2
    with pytest.raises(RuntimeError, match="2 rows are all in use"):
        pool.acquire()
    row = b.row
    del b
    gc.collect()
    assert pool.in_use == 1
    c = pool.acquire()
    assert c.row == row
    assert pool.flush(c).numel() == 0  # a stream that got no frame has no audio
    assert pool.in_use == 1
    with pytest.raises(ValueError, match="distinct rows"):
        pool.step([(a, torch.zeros(4, dtype=torch.long)), (a, torch.zeros(4, dtype=torch.long))])
    with pytest.raises(ValueError, match="mode must be one of"):
        DecoderPool(dec, rows=2, mode="fast")
    with pytest.raises(ValueError, match="CUDA device"):
        DecoderPool(dec, rows=2, mode="graph")


@torch.no_grad()
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU (bench/codec_batch.py checks them there too)")
def test_the_cuda_graph_pool_decodes_as_each_streamdecode_alone() -> None:
    dec = make_decoder("shipped").cuda()
    codes = {name: stream_codes(dec.cfg, n, seed=i) for i, (name, _, n) in enumerate(PLAN)}
    got = _run(DecoderPool(dec, rows=3, mode="graph"), codes)
    for name, _, n in PLAN:
        ref_steps, _ = decode_alone(dec, codes[name][:, : CUT.get(name, n)].cuda())
        for p, r in zip(got[name][0], ref_steps):
            torch.testing.assert_close(p, r, atol=1e-4, rtol=0)


@torch.no_grad()
def test_the_realtime_model_decodes_replies_in_its_pool_and_beyond_it(dec: CodecDecoder) -> None:
    """RealtimeOmni hands out pool rows, and a lone state once every row is taken; one
    `decode_audio` call serves both kinds, each stream as if decoded alone."""
    from types import SimpleNamespace

    from omni.realtime import RealtimeOmni
    from speech.decoder_pool import PoolRow

    host = SimpleNamespace(model=SimpleNamespace(codec_decoder=dec), audio_pool=DecoderPool(dec, rows=2))
    states = [RealtimeOmni.new_audio_state(host) for _ in range(3)]
    assert [isinstance(s, PoolRow) for s in states] == [True, True, False]
    codes = [stream_codes(dec.cfg, 6, seed=10 + i) for i in range(3)]
    steps: list[list] = [[], [], []]
    for t in range(6):
        pieces = RealtimeOmni.decode_audio(host, [(s, c[:, t].numpy()) for s, c in zip(states, codes)])
        for i, p in enumerate(pieces):
            steps[i].append(torch.from_numpy(p))
    for i, s in enumerate(states):
        tail = torch.from_numpy(RealtimeOmni.flush_audio(host, s))
        ref_steps, ref_tail = decode_alone(dec, codes[i])
        torch.testing.assert_close(torch.cat(steps[i] + [tail]), torch.cat(ref_steps + [ref_tail]), atol=ATOL, rtol=0)
    assert host.audio_pool.in_use == 0

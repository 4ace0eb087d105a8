"""Batched streaming decoding: `CodecDecoder.step_streams` (and `RealtimeOmni.decode_audio`
on top of it) steps many single-stream states at once; every stream's audio equals the
stream decoded alone (within 1e-5 fp32, sample-exact in length and emission schedule),
whatever position each stream is at."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from speech.decoder import CodecDecoder
from tests.speech.stream_helpers import ATOL, DECODERS, decode_alone, make_decoder, stream_codes


# (name, first global step, frames); "E" reuses "B"'s state (reset) after B is flushed,
# "F" starts fresh. C is shorter than the look-ahead (all its audio comes from flush).
PLAN = [("A", 0, 14), ("B", 2, 6), ("C", 5, 2), ("D", 1, 11), ("E", 9, 5), ("F", 12, 4)]


def _interleaved(dec: CodecDecoder, codes: dict[str, torch.Tensor], step_fn) -> dict[str, tuple[list, torch.Tensor]]:
    """Run PLAN on one clock: each global step decodes the next frame of every live stream in one call."""
    out: dict[str, tuple[list, torch.Tensor | None]] = {}
    states: dict[str, object] = {}
    horizon = max(start + n for _, start, n in PLAN)
    for clock in range(horizon + 1):
        for name, start, n in PLAN:
            if clock == start:
                if name == "E":  # B's state object, reset, carries a new response
                    states[name] = states.pop("B_done")
                    states[name].reset()
                else:
                    states[name] = dec.init_state(1)
                out[name] = ([], None)
        live = [(name, clock - start) for name, start, n in PLAN if name in states and 0 <= clock - start < n]
        if clock % 2:
            live.reverse()  # row order must not matter
        if live:
            frames = torch.stack([codes[name][:, t] for name, t in live])
            pieces = step_fn(frames, [states[name] for name, _ in live])
            assert len(pieces) == len(live)
            for (name, _), piece in zip(live, pieces):
                out[name][0].append(torch.as_tensor(piece))
        for name, start, n in PLAN:  # flush, per response, after its last frame
            if name in states and clock == start + n - 1:
                state = states.pop(name)
                out[name] = (out[name][0], dec.flush(state)[0])
                if name == "B":
                    states["B_done"] = state
    return out


def _check(dec: CodecDecoder, step_fn) -> None:
    codes = {name: stream_codes(dec.cfg, n, seed=i) for i, (name, _, n) in enumerate(PLAN)}
    got = _interleaved(dec, codes, step_fn)
    hop, L = dec.hop_length, dec.lookahead
    for name, _, n in PLAN:
        ref_steps, ref_tail = decode_alone(dec, codes[name])
        steps, tail = got[name]
        assert [p.shape[-1] for p in steps] == [r.shape[-1] for r in ref_steps], name
        assert [p.shape[-1] for p in steps] == [0] * min(L, n) + [hop] * max(0, n - L), name
        for p, r in zip(steps, ref_steps):
            torch.testing.assert_close(p, r, atol=ATOL, rtol=0)
        torch.testing.assert_close(tail, ref_tail, atol=ATOL, rtol=0)
        whole = torch.cat(steps + [tail])
        assert whole.shape[-1] == n * hop
        assert whole.abs().max() > 1e-4  # not trivially silent


@pytest.fixture(scope="module", params=DECODERS)
def dec(request) -> CodecDecoder:
    return make_decoder(request.param)


@torch.no_grad()
def test_step_streams_equals_each_streamdecode_alone(dec: CodecDecoder) -> None:
    _check(dec, dec.step_streams)


@torch.no_grad()
def test_decode_audio_equals_each_streamdecode_alone(dec: CodecDecoder) -> None:
    from omni.realtime import RealtimeOmni

    # decode_audio only reads the model's codec decoder
    host = SimpleNamespace(model=SimpleNamespace(codec_decoder=dec))

    def step_fn(frames, states):
        pieces = RealtimeOmni.decode_audio(host, [(s, f.numpy()) for s, f in zip(states, frames)])
        assert all(isinstance(p, np.ndarray) and p.dtype == np.float32 for p in pieces)
        return pieces

    _check(dec, step_fn)


@torch.no_grad()
def test_step_streams_rejects_shared_or_batched_states(dec: CodecDecoder) -> None:
    codes = torch.stack([stream_codes(dec.cfg, 1, seed=0)[:, 0]] * 2)
    s = dec.init_state(1)
    with pytest.raises(ValueError):
        dec.step_streams(codes, [s, s])
    with pytest.raises(ValueError):
        dec.step_streams(codes, [dec.init_state(2), dec.init_state(1)])

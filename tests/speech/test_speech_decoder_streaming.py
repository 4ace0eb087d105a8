"""The streaming decoder: frame-by-frame == whole sequence; look-ahead is exactly 3 frames."""

from __future__ import annotations

import pytest
import torch

from omni.config import get_flavor
from speech.decoder import CodecDecoder

# fp32: the step path uses explicit LSTM-cell and im2col-matmul kernels, the full
# path nn.LSTM and conv1d; they agree to float rounding (~1e-7 on outputs ~0.3).
ATOL = 1e-5


def _codes(cfg, batch: int, frames: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    sizes = [cfg.semantic_codebook_size] + [cfg.acoustic_codebook_size] * cfg.acoustic_codebooks
    return torch.stack([torch.randint(0, n, (batch, frames), generator=g) for n in sizes], 1)


def _stream(dec: CodecDecoder, codes: torch.Tensor) -> list[torch.Tensor]:
    state = dec.init_state(codes.shape[0])
    outs = [dec.step(codes[:, :, t], state) for t in range(codes.shape[-1])]
    return outs + [dec.flush(state)]


@pytest.fixture(scope="module")
def dec() -> CodecDecoder:
    torch.manual_seed(0)
    return CodecDecoder(get_flavor("codec", "debug")).eval()


@pytest.mark.parametrize("frames", [1, 2, 3, 4, 11])
@torch.no_grad()
def test_stream_equals_full(dec: CodecDecoder, frames: int) -> None:
    codes = _codes(dec.cfg, 2, frames, seed=frames)
    full = dec(codes)
    assert full.shape == (2, frames * dec.hop_length)
    outs = _stream(dec, codes)
    streamed = torch.cat(outs, -1)
    assert streamed.shape == full.shape
    assert full.abs().max() > 1e-3  # not trivially zero
    torch.testing.assert_close(streamed, full, atol=ATOL, rtol=0)


@torch.no_grad()
def test_prepared_decoder_equals_training_form() -> None:
    torch.manual_seed(1)
    cfg = get_flavor("codec", "default")
    ref = CodecDecoder(cfg).eval()
    fast = CodecDecoder(cfg)
    fast.load_state_dict(ref.state_dict())
    fast.prepare_inference()
    assert not any(hasattr(m, "weight_g") for m in fast.modules())  # weight norm folded
    codes = _codes(cfg, 1, 6)
    torch.testing.assert_close(torch.cat(_stream(fast, codes), -1), ref(codes), atol=ATOL, rtol=0)


@torch.no_grad()
def test_emission_schedule(dec: CodecDecoder) -> None:
    """Frame t's audio comes out of the step that receives frame t + 3."""
    codes = _codes(dec.cfg, 1, 8)
    outs = _stream(dec, codes)
    L, hop = dec.lookahead, dec.hop_length
    assert L == 3
    assert [o.shape[-1] for o in outs[:-1]] == [0] * L + [hop] * (8 - L)
    assert outs[-1].shape[-1] == L * hop


@torch.no_grad()
def test_lookahead_respected(dec: CodecDecoder) -> None:
    """Changing frames >= k leaves the audio of frames <= k - 4 untouched, and does change frame k - 3."""
    T, k = 10, 6
    a = _codes(dec.cfg, 1, T, seed=3)
    b = a.clone()
    b[:, :, k:] = _codes(dec.cfg, 1, T - k, seed=4)
    assert not torch.equal(a[:, :, k:], b[:, :, k:])
    hop = dec.hop_length
    fa, fb = dec(a), dec(b)
    cut = (k - 3) * hop
    assert torch.equal(fa[:, :cut], fb[:, :cut])  # causal beyond the 3-frame look-ahead, bit for bit
    assert (fa[:, cut : cut + hop] - fb[:, cut : cut + hop]).abs().max() > 1e-6  # the look-ahead is used
    # in streaming, everything emitted before frame k arrives is identical too
    sa, sb = dec.init_state(1), dec.init_state(1)
    for t in range(k):
        torch.testing.assert_close(dec.step(a[:, :, t], sa), dec.step(b[:, :, t], sb), atol=0, rtol=0)


@torch.no_grad()
def test_batched_streams_are_independent(dec: CodecDecoder) -> None:
    codes = _codes(dec.cfg, 3, 7, seed=5)
    both = torch.cat(_stream(dec, codes), -1)
    one = torch.cat(_stream(dec, codes[1:2]), -1)
    torch.testing.assert_close(both[1:2], one, atol=ATOL, rtol=0)


@torch.no_grad()
def test_state_reset_slot(dec: CodecDecoder) -> None:
    codes = _codes(dec.cfg, 2, 5, seed=6)
    state = dec.init_state(2)
    for t in range(5):
        dec.step(codes[:, :, t], state)
    state.reset()
    assert state.frames_in == 0 and float(state.lstm_h.abs().sum()) == 0.0
    state.lstm_h.fill_(1.0)
    state.reset_slot(0)
    assert float(state.lstm_h[:, 0].abs().sum()) == 0.0 and float(state.lstm_h[:, 1].min()) == 1.0


def test_bad_codes_give_clear_errors(dec: CodecDecoder) -> None:
    codes = _codes(dec.cfg, 1, 4)
    with pytest.raises(ValueError, match=r"codes must have shape \[B, 4, T\]"):
        dec.check_codes(codes[:, :3])
    bad = codes.clone()
    bad[0, 2, 1] = dec.cfg.acoustic_codebook_size
    with pytest.raises(ValueError, match="codebook 2 values must be in"):
        dec.check_codes(bad)
    with pytest.raises(TypeError, match="integer"):
        dec.check_codes(codes.float())

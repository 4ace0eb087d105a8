"""The Codec facade: shapes, token ranges, save/load, the shipped codec, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from speech import DEFAULT_DIR, Codec


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec.from_flavor("debug")


def _wav(batch: int, n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / 16000
    f = torch.rand(batch, 1, generator=g) * 300 + 100
    return 0.3 * torch.sin(2 * torch.pi * f * t) + 0.02 * torch.randn(batch, n, generator=g)


@pytest.mark.parametrize("n", [1, 960, 5000])
def test_roundtrip_shapes_and_ranges(codec: Codec, n: int) -> None:
    codes = codec.encode(_wav(2, n))
    frames = -(-n // codec.hop_length)
    assert codes.shape == (2, 4, frames) and codes.dtype == torch.int64
    for i, size in enumerate(codec.codebook_sizes):
        assert 0 <= int(codes[:, i].min()) and int(codes[:, i].max()) < size
    wav = codec.decode(codes)
    assert wav.shape == (2, frames * codec.hop_length) and wav.dtype == torch.float32
    assert float(wav.abs().max()) <= 1.0  # tanh output


def test_longcat_sizes(codec: Codec) -> None:
    from omni.config import get_flavor

    cfg = get_flavor("codec", "longcat")
    assert (cfg.semantic_codebook_size, cfg.acoustic_codebook_size, cfg.acoustic_codebooks) == (8192, 8100, 3)
    assert codec.hop_length == 960 and abs(codec.frame_rate - 16.6667) < 1e-3 and codec.sample_rate == 16000


def test_streaming_decoder_matches_decode(codec: Codec) -> None:
    codes = codec.encode(_wav(1, 9000, seed=1))
    dec = codec.streaming_decoder()
    state = dec.init_state(1)
    pieces = [dec.step(codes[:, :, t], state) for t in range(codes.shape[-1])] + [dec.flush(state)]
    torch.testing.assert_close(torch.cat(pieces, -1), codec.decode(codes), atol=1e-5, rtol=0)


def test_save_and_load(codec: Codec, tmp_path) -> None:
    codes = codec.encode(_wav(1, 4000, seed=2))
    codec.save_pretrained(tmp_path / "c")
    again = Codec.from_pretrained(tmp_path / "c")
    assert torch.equal(again.encode(_wav(1, 4000, seed=2)), codes)
    torch.testing.assert_close(again.decode(codes), codec.decode(codes), atol=1e-6, rtol=0)
    meta = json.loads((tmp_path / "c" / "config.json").read_text())
    meta["codec"]["decoder_dimm"] = 3
    (tmp_path / "c" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"config.json: field 'codec' is not a valid CodecConfig.*decoder_dimm"):
        Codec.from_pretrained(tmp_path / "c")
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        Codec.from_pretrained(tmp_path / "nothing")


def test_bad_inputs(codec: Codec) -> None:
    with pytest.raises(TypeError, match="float audio"):
        codec.encode(torch.zeros(1, 100, dtype=torch.int16))
    with pytest.raises(ValueError, match="NaN"):
        codec.encode(torch.full((1, 100), float("nan")))
    with pytest.raises(ValueError, match=r"codebook 0 values must be in \[0, 64\)"):
        codec.decode(torch.full((1, 4, 3), 64))


def test_shipped_default_codec() -> None:
    c = Codec.from_pretrained(DEFAULT_DIR)
    assert c.cfg.semantic_codebook_size == 1024 and c.cfg.acoustic_codebook_size == 1024
    wav = torch.from_numpy(np.sin(np.arange(16000) * 0.05).astype(np.float32) * 0.3)
    codes = c.encode(wav)
    assert codes.shape == (1, 4, 17)
    out = c.decode(codes)
    assert out.shape == (1, 17 * 960) and torch.isfinite(out).all()

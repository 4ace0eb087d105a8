"""Parameter names follow the official LongCat-Audio-Codec decoder: a state dict
built here, independently, in that layout loads with strict=True."""

from __future__ import annotations

import dataclasses

import torch

from omni.config import get_flavor
from speech.decoder import CodecDecoder


def _wn(prefix: str, c_out: int, c_in: int, k: int, transpose: bool = False) -> dict[str, torch.Tensor]:
    """Old-style weight norm (dim 0): weight_g keeps dim 0, weight_v the full kernel."""
    v = torch.randn(c_in, c_out, k) if transpose else torch.randn(c_out, c_in, k)
    return {f"{prefix}.weight_g": v.flatten(1).norm(dim=1).view(-1, 1, 1), f"{prefix}.weight_v": v, f"{prefix}.bias": torch.randn(c_out)}


def official_decoder_state(sem_tokens, sem_dim, latent, sub_size, cb_dim, n_q, channels, rates):
    """The key tree of LongCatAudioCodecDecoder (24k-style causal MemDecoder, lstm_nums=1)."""
    sd: dict[str, torch.Tensor] = {"semantic_dequantizer.dequant.weight": torch.randn(sem_tokens, sem_dim)}
    for q in range(n_q):
        p = f"acoustic_quantizer.quantizers.{q}"
        for ab in "ab":
            sd[f"{p}.codebook_{ab}.weight"] = torch.randn(sub_size, cb_dim)
            sd |= _wn(f"{p}.in_proj_{ab}", cb_dim, latent, 1)
            sd |= _wn(f"{p}.out_proj_{ab}", latent // 2, cb_dim, 1)
    H = sem_dim + latent
    for lst in ("lstm_list1", "lstm_list2"):
        p = f"decoder.mem_layers.0.{lst}.0"
        sd |= {f"{p}.weight_ih_l0": torch.randn(4 * H, H) * 0.05, f"{p}.weight_hh_l0": torch.randn(4 * H, H) * 0.05,
               f"{p}.bias_ih_l0": torch.zeros(4 * H), f"{p}.bias_hh_l0": torch.zeros(4 * H)}
    for ln in ("ln1", "ln2"):
        sd |= {f"decoder.mem_layers.0.{ln}.weight": torch.ones(H), f"decoder.mem_layers.0.{ln}.bias": torch.zeros(H)}
    sd |= _wn("decoder.model.0", channels, H, 7)
    for i, stride in enumerate(rates):
        c_in, c_out = channels // 2**i, channels // 2 ** (i + 1)
        p = f"decoder.model.{i + 1}.block"
        sd[f"{p}.0.alpha"] = torch.ones(1, c_in, 1)
        sd |= _wn(f"{p}.1", c_out, c_in, stride, transpose=True)
        for r in (2, 3, 4):  # residual units: Snake, ZeroPad, WNConv k7, Snake, WNConv k1
            sd[f"{p}.{r}.block.0.alpha"] = torch.ones(1, c_out, 1)
            sd |= _wn(f"{p}.{r}.block.2", c_out, c_out, 7)
            sd[f"{p}.{r}.block.3.alpha"] = torch.ones(1, c_out, 1)
            sd |= _wn(f"{p}.{r}.block.4", c_out, c_out, 1)
    last = channels // 2 ** len(rates)
    n = len(rates)
    sd[f"decoder.model.{n + 1}.alpha"] = torch.ones(1, last, 1)  # then ZeroPad1d (n + 2), no params
    sd |= _wn(f"decoder.model.{n + 3}", 1, last, 7)
    return sd


def test_official_layout_loads_strict_and_decodes() -> None:
    cfg = dataclasses.replace(
        get_flavor("codec", "longcat"), semantic_codebook_size=64, semantic_dim=40, codec_dimension=24,
        acoustic_subcodebook_size=9, acoustic_codebook_dim=8, decoder_dim=64,
    )
    torch.manual_seed(0)
    sd = official_decoder_state(64, 40, 24, 9, 8, 3, 64, cfg.dec_ratios)
    dec = CodecDecoder(cfg)
    assert set(dec.state_dict()) == set(sd)
    dec.load_state_dict(sd, strict=True)
    codes = torch.stack([torch.randint(0, 64, (1, 5))] + [torch.randint(0, 81, (1, 5)) for _ in range(3)], 1)
    with torch.no_grad():
        wav = dec.eval()(codes)
    assert wav.shape == (1, 5 * 960) and torch.isfinite(wav).all()


def test_longcat_flavor_shapes_match_the_release() -> None:
    """Full-size key shapes of the `longcat` flavor (built on the meta device: no memory)."""
    with torch.device("meta"):
        dec = CodecDecoder(get_flavor("codec", "longcat"))
    shapes = {k: tuple(v.shape) for k, v in dec.state_dict().items()}
    assert shapes["semantic_dequantizer.dequant.weight"] == (8192, 1280)
    assert shapes["acoustic_quantizer.quantizers.2.codebook_b.weight"] == (90, 8)
    assert shapes["acoustic_quantizer.quantizers.0.out_proj_a.weight_v"] == (512, 8, 1)
    assert shapes["decoder.mem_layers.0.lstm_list1.0.weight_ih_l0"] == (4 * 2304, 2304)
    assert shapes["decoder.model.0.weight_v"] == (1536, 2304, 7)
    assert shapes["decoder.model.1.block.1.weight_v"] == (1536, 768, 8)  # ConvTranspose, kernel = stride
    assert shapes["decoder.model.4.block.4.block.2.weight_v"] == (96, 96, 7)
    assert shapes["decoder.model.7.weight_v"] == (1, 96, 7)
    with torch.device("meta"):
        ref = official_decoder_state(8192, 1280, 1024, 90, 8, 3, 1536, (8, 6, 5, 4))
    assert {k: tuple(v.shape) for k, v in ref.items()} == shapes

"""Official checkpoint layout: synthetic files written with the release's key
names (spelled out here from the specification, not taken from our modules)
load with strict=True and land in the right parameters."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from encoders.audio import StreamingAudioEncoder
from encoders.checkpoint import (
    audio_config_from_release,
    load_audio,
    load_into,
    load_vision,
    vision_config_from_release,
)
from encoders.fbank import write_kaldi_stats
from encoders.vision import VisionEncoder
from omni.config import get_flavor


def _official_vit_keys(d: int, inner: int, layers: int) -> dict[str, tuple[int, ...]]:
    keys = {"embeddings.patch_embedding.weight": (d, 3, 2, 14, 14), "embeddings.patch_embedding.bias": (d,)}
    for i in range(layers):
        p = f"encoder.layers.{i}."
        keys.update(
            {
                p + "norm1.weight": (d,),
                p + "norm2.weight": (d,),
                p + "attn.qkv.weight": (3 * d, d),
                p + "attn.proj.weight": (d, d),
                p + "attn.proj.bias": (d,),
                p + "attn.q_norm.weight": (d,),
                p + "attn.k_norm.weight": (d,),
                p + "mlp.fc1.weight": (inner, d),
                p + "mlp.fc1.bias": (inner,),
                p + "mlp.fc3.weight": (inner, d),
                p + "mlp.fc3.bias": (inner,),
                p + "mlp.fc2.weight": (d, inner),
                p + "mlp.fc2.bias": (d,),
                p + "mlp.norm.weight": (inner,),
                p + "ls1": (d,),
                p + "ls2": (d,),
            }
        )
    return keys


def _official_vision_projector_keys(d: int, a: int, out: int) -> dict[str, tuple[int, ...]]:
    return {
        "p0.0.weight": (2 * d,),
        "p0.0.bias": (2 * d,),
        "p0.1.weight": (a, 2 * d),
        "p0.1.bias": (a,),
        "p0.3.weight": (a, a),
        "p0.3.bias": (a,),
        "proj.weight": (out, a),
        "proj.bias": (out,),
    }


def _official_audio_keys(inp, h, p, layers, right_layers, left, right, vocab) -> dict[str, tuple[int, ...]]:
    keys = {"ffn.0.weight": (h, inp), "ffn.0.bias": (h,), "ffn.2.weight": (p, h)}
    for i in range(layers):
        q = f"fsmn_layers.{i}."
        k = left + 1 + (right if i >= layers - right_layers else 0)
        keys.update(
            {
                q + "memory_ln.weight": (p,),
                q + "memory_ln.bias": (p,),
                q + "memory.weight": (p, 1, k),
                q + "ffn.0.weight": (p,),
                q + "ffn.0.bias": (p,),
                q + "ffn.1.weight": (h, p),
                q + "ffn.1.bias": (h,),
                q + "ffn.3.weight": (p, h),
                q + "ffn.3.bias": (p,),
            }
        )
    keys.update({"dnn.0.weight": (h, p), "dnn.0.bias": (h,), "dnn.2.weight": (h, h), "dnn.2.bias": (h,)})
    keys.update({"output.weight": (vocab, h), "output.bias": (vocab,)})
    return keys


def _write(path, shapes, seed):
    g = torch.Generator().manual_seed(seed)
    sd = {k: torch.randn(s, generator=g) for k, s in shapes.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(sd, path)
    return sd


def test_vision_files_load_strict(tmp_path):
    cfg = get_flavor("vision", "debug")
    vit = _write(tmp_path / "vision/vision_model.pt", _official_vit_keys(32, 64, cfg.num_layers), 0)
    proj = _write(
        tmp_path / "vision/vision_projector.pt", _official_vision_projector_keys(32, cfg.adaptor_dim, cfg.out_dim), 1
    )
    enc = VisionEncoder(cfg)
    load_vision(enc, tmp_path)
    assert torch.equal(enc.vit.encoder.layers[1].attn.qkv.weight, vit["encoder.layers.1.attn.qkv.weight"])
    assert torch.equal(enc.vit.encoder.layers[0].ls2, vit["encoder.layers.0.ls2"])
    assert torch.equal(enc.projector.p0[3].weight, proj["p0.3.weight"])
    # the RoPE table is not a checkpoint key
    assert "encoder.rotary_pos_emb.inv_freq" not in enc.vit.state_dict()
    assert len(enc.encode([np.zeros((112, 224, 3), np.uint8)])[0]) == 64


def test_longcat_vision_shapes_match_the_report():
    cfg = get_flavor("vision", "longcat")
    with torch.device("meta"):
        enc = VisionEncoder(cfg)
    shapes = {k: tuple(v.shape) for k, v in enc.vit.state_dict().items()}
    assert shapes == _official_vit_keys(1280, 3456, 32)
    n = sum(v.numel() for v in enc.vit.parameters())
    assert 630e6 < n < 645e6, n  # "637M" in the report


def test_audio_files_load_strict(tmp_path):
    cfg = get_flavor("audio", "debug")
    keys = _official_audio_keys(1200, cfg.hidden_size, cfg.proj_size, cfg.num_layers, cfg.num_right_layers,
                                cfg.left_order, cfg.right_order, cfg.ctc_vocab_size)
    enc_sd = _write(tmp_path / "audio/audio_encoder.pt", keys, 2)
    h, o = cfg.hidden_size, cfg.out_dim
    proj_sd = _write(tmp_path / "audio/audio_projector.pt", {"0.weight": (o, h), "0.bias": (o,), "2.weight": (o, o), "2.bias": (o,)}, 3)
    stats = np.stack([np.r_[np.full(80, 10.0), 10.0], np.r_[np.full(80, 40.0), 0.0]])  # mean 1, var 3
    write_kaldi_stats(tmp_path / "audio/global_cmvn", stats)
    enc = StreamingAudioEncoder(cfg)
    load_audio(enc, tmp_path)
    assert torch.equal(enc.encoder.fsmn_layers[3].memory.weight, enc_sd["fsmn_layers.3.memory.weight"])
    assert torch.equal(enc.projector[2].weight, proj_sd["2.weight"])
    torch.testing.assert_close(enc.frontend.cmvn.istd, torch.full((80,), 3**-0.5))


def test_longcat_audio_shapes_match_the_spec():
    cfg = get_flavor("audio", "longcat")
    with torch.device("meta"):
        enc = StreamingAudioEncoder(cfg)
    shapes = {k: tuple(v.shape) for k, v in enc.encoder.state_dict().items()}
    assert shapes == _official_audio_keys(1200, 6144, 1536, 22, 6, 10, 1, 5252)
    assert {k: tuple(v.shape) for k, v in enc.projector.state_dict().items()} == {
        "0.weight": (6144, 6144), "0.bias": (6144,), "2.weight": (6144, 6144), "2.bias": (6144,)
    }
    n = sum(v.numel() for v in enc.encoder.parameters())
    assert 500e6 < n < 530e6, n  # ~512M with the CTC head


def test_mismatched_file_names_the_file(tmp_path):
    cfg = get_flavor("vision", "debug")
    keys = _official_vit_keys(32, 64, cfg.num_layers)
    keys["encoder.layers.0.attn.qkv.bias"] = (96,)  # a key the release does not have
    _write(tmp_path / "vision_model.pt", keys, 0)
    with pytest.raises(ValueError, match=r"(?s)vision_model\.pt: does not match LongCatViT.*qkv\.bias"):
        load_into(VisionEncoder(cfg).vit, tmp_path / "vision_model.pt")
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"broken\.pt: not a readable torch state dict"):
        load_into(VisionEncoder(cfg).vit, tmp_path / "broken.pt")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_into(VisionEncoder(cfg).vit, tmp_path / "missing.pt")


def test_release_config_readers(tmp_path):
    v = tmp_path / "vision.json"
    v.write_text(json.dumps({"hidden_size": 64, "num_hidden_layers": 3, "num_attention_heads": 4,
                             "intermediate_size": 192, "image_mean": [0.5, 0.5, 0.5], "unknown_field": 1}))
    cfg = vision_config_from_release(v)
    assert (cfg.hidden_size, cfg.num_layers, cfg.num_heads, cfg.image_mean) == (64, 3, 4, (0.5, 0.5, 0.5))
    a = tmp_path / "audio.json"
    a.write_text(json.dumps({"input_size": 1200, "nlayer": 5, "num_right_layers": 2, "vocab_size": 99}))
    acfg = audio_config_from_release(a)
    assert (acfg.num_layers, acfg.num_right_layers, acfg.ctc_vocab_size) == (5, 2, 99)
    a.write_text(json.dumps({"input_size": 560}))
    with pytest.raises(ValueError, match="audio.json: input_size 560"):
        audio_config_from_release(a)

"""Checkpoint I/O: transformers' save_pretrained directories (sharded, per-expert
keys), fused expert keys, our own format, and errors that name the key."""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import LongcatFlashConfig, LongcatFlashForCausalLM as HFModel

from omni.config import get_llm_config
from omni.llm import from_pretrained, save_pretrained
from omni.llm.hf_compat import hf_config_dict, installed_expert_rows, to_hf_state_dict
from tests.llm.hf_reference import build_pair


@pytest.fixture(scope="module")
def pair():
    return build_pair(get_llm_config("debug"), seed=5)


IDS = torch.tensor([[1, 9, 44, 300, 2, 17]])


@torch.no_grad()
def test_load_transformers_save_pretrained_sharded(pair, tmp_path):
    hf, _ = pair
    hf.save_pretrained(tmp_path, max_shard_size="100KB")
    assert os.path.exists(tmp_path / "model.safetensors.index.json")
    m = from_pretrained(str(tmp_path))
    assert (m(IDS).logits - hf(IDS).logits).abs().max() < 1e-5


@torch.no_grad()
def test_load_fused_expert_keys(pair, tmp_path):
    hf, _ = pair
    sd = {k: v.contiguous() for k, v in hf.state_dict().items()}
    assert any(k.endswith("experts.gate_up_proj") for k in sd)  # fused, N + Z rows
    save_file(sd, str(tmp_path / "model.safetensors"))
    hf.config.to_json_file(str(tmp_path / "config.json"))
    m = from_pretrained(str(tmp_path))
    assert (m(IDS).logits - hf(IDS).logits).abs().max() < 1e-5


@torch.no_grad()
@pytest.mark.parametrize("shard", [None, 200_000])
def test_own_format_round_trip(pair, tmp_path, shard):
    _, ours = pair
    files = save_pretrained(ours, str(tmp_path), max_shard_bytes=shard)
    assert (len(files) > 2) == bool(shard)
    back = from_pretrained(str(tmp_path))
    assert back.config == ours.config
    a, b = ours.state_dict(), back.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(back(IDS).logits, ours(IDS).logits)


@torch.no_grad()
def test_save_for_transformers(pair, tmp_path):
    hf_ref, ours = pair
    save_pretrained(ours, str(tmp_path), format="hf")
    hf, info = HFModel.from_pretrained(str(tmp_path), output_loading_info=True)
    # every weight read from the file, none reinitialized, none left over
    assert {k: v for k, v in info.items() if v} == {}, info
    hf.eval()
    assert (hf(IDS).logits - ours(IDS).logits).abs().max() < 1e-5
    assert torch.equal(from_pretrained(str(tmp_path))(IDS).logits, ours(IDS).logits)


def _layout(ours, fused: bool, zero_rows: bool) -> dict[str, torch.Tensor]:
    """Our weights in one of the layouts transformers has written: per-expert or
    fused keys, with or without rows for the zero experts."""
    cfg = ours.config
    sd = {k: v.detach().clone() for k, v in ours.state_dict().items()}
    total = cfg.num_experts_total if zero_rows else cfg.n_routed_experts
    if not fused:
        return to_hf_state_dict(sd, cfg, rows=(total, total))
    out = {}
    for k, t in sd.items():
        if k.endswith(("experts.gate_up_proj", "experts.down_proj")) and zero_rows:
            pad = torch.zeros((total - t.shape[0], *t.shape[1:]), dtype=t.dtype)
            t = torch.cat([t, pad])
        out[k] = t
    return out


@torch.no_grad()
@pytest.mark.parametrize("fused", [False, True], ids=["per_expert", "fused"])
@pytest.mark.parametrize("zero_rows", [False, True], ids=["routed_rows", "with_zero_rows"])
def test_every_expert_layout_loads(pair, tmp_path, fused, zero_rows):
    _, ours = pair
    sd = _layout(ours, fused, zero_rows)
    gate_up = [t for k, t in sd.items() if "experts" in k and ("gate_up" in k or "gate_proj" in k)]
    # the layout really is the one named: fused tensors carry the rows, per-expert keys count them
    rows = ours.config.num_experts_total if zero_rows else ours.config.n_routed_experts
    assert (gate_up[0].shape[0] if fused else len(gate_up) // ours.config.num_layers) == rows
    save_file(sd, str(tmp_path / "model.safetensors"))
    with open(tmp_path / "config.json", "w") as fh:
        json.dump(hf_config_dict(ours.config), fh)
    back = from_pretrained(str(tmp_path))
    a, b = ours.state_dict(), back.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_unknown_expert_layout_names_key_and_shapes(pair, tmp_path):
    _, ours = pair
    sd = _layout(ours, fused=True, zero_rows=False)
    key = "model.layers.0.mlp.experts.gate_up_proj"
    sd[key] = torch.zeros(5, *sd[key].shape[1:])
    save_file(sd, str(tmp_path / "model.safetensors"))
    with open(tmp_path / "config.json", "w") as fh:
        json.dump(hf_config_dict(ours.config), fh)
    with pytest.raises(ValueError, match=key.replace(".", r"\.") + r" has shape \[5, 64, 64\].*expected \[8 or 12, 64, 64\]"):
        from_pretrained(str(tmp_path))


def test_installed_transformers_layout_is_what_save_writes(pair):
    _, ours = pair
    cfg = ours.config
    hf = HFModel(LongcatFlashConfig(**{k: v for k, v in hf_config_dict(cfg).items()
                                       if k not in ("architectures", "model_type")}))
    fused = hf.model.layers[0].mlp.experts
    assert installed_expert_rows(cfg) == (fused.gate_up_proj.shape[0], fused.down_proj.shape[0])


def _write_own(pair, path, mutate):
    _, ours = pair
    save_pretrained(ours, str(path))
    sd = load_file(str(path / "model.safetensors"))
    mutate(sd)
    save_file(sd, str(path / "model.safetensors"))


def test_errors_name_the_key(pair, tmp_path):
    key = "model.layers.1.self_attn.0.kv_b_proj.weight"
    _write_own(pair, tmp_path / "a", lambda sd: sd.pop(key))
    with pytest.raises(KeyError, match=r"missing 1 key\(s\): " + key.replace(".", r"\.")):
        from_pretrained(str(tmp_path / "a"))
    _write_own(pair, tmp_path / "b", lambda sd: sd.__setitem__("model.extra.weight", torch.zeros(2)))
    with pytest.raises(KeyError, match=r"unexpected 1 key\(s\): model\.extra\.weight"):
        from_pretrained(str(tmp_path / "b"))
    _write_own(pair, tmp_path / "c", lambda sd: sd.__setitem__(key, torch.zeros(3, 3)))
    with pytest.raises(ValueError, match=key.replace(".", r"\.") + r" has shape \[3, 3\]"):
        from_pretrained(str(tmp_path / "c"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        from_pretrained(str(tmp_path / "nothing"))
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ValueError, match="model_type 'llama'"):
        from_pretrained(str(tmp_path / "d"))

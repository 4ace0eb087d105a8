"""Checkpoint I/O for the backbone (safetensors, sharded or not).

`from_pretrained(path)` reads either
* our own format: `omni_llm.json` (the LLMConfig) + safetensors with our keys, or
* a transformers `LongcatFlashForCausalLM.save_pretrained` directory:
  `config.json` (model_type longcat_flash) + safetensors, per-expert or fused
  expert keys (see hf_compat).
`save_pretrained(model, path)` writes our format; `format="hf"` writes a
directory transformers loads. Every key is checked: missing, unexpected and
shape-mismatched keys raise a KeyError/ValueError naming them.
"""

from __future__ import annotations

import json
import os
from typing import Mapping

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from omni.config import LLMConfig, from_dict, to_dict
from omni.llm.hf_compat import from_hf_state_dict, hf_config_dict, llm_config_from_hf, to_hf_state_dict
from omni.llm.model import LongcatFlashForCausalLM

OMNI_CONFIG = "omni_llm.json"
HF_CONFIG = "config.json"
INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"


def read_config(path: str) -> tuple[LLMConfig, str]:
    """(config, "omni" | "hf") of a checkpoint directory."""
    if not os.path.isdir(path):
        raise FileNotFoundError(f"checkpoint directory {path!r} does not exist")
    own = os.path.join(path, OMNI_CONFIG)
    if os.path.exists(own):
        with open(own) as fh:
            data = json.load(fh)
        try:
            return from_dict(LLMConfig, data["llm"]), "omni"
        except (KeyError, ValueError, TypeError) as e:
            raise ValueError(f"{own}: invalid backbone config: {e}") from e
    hf = os.path.join(path, HF_CONFIG)
    if os.path.exists(hf):
        with open(hf) as fh:
            return llm_config_from_hf(json.load(fh), source=hf), "hf"
    raise FileNotFoundError(f"{path!r} holds neither {OMNI_CONFIG} nor {HF_CONFIG}")


def read_safetensors(path: str) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint directory (index.json shards or one file)."""
    index = os.path.join(path, INDEX)
    if os.path.exists(index):
        with open(index) as fh:
            weight_map: dict[str, str] = json.load(fh)["weight_map"]
        files = sorted(set(weight_map.values()))
    elif os.path.exists(os.path.join(path, SINGLE)):
        files = [SINGLE]
    else:
        found = sorted(f for f in os.listdir(path) if f.endswith(".safetensors"))
        if not found:
            raise FileNotFoundError(f"no .safetensors weights in {path!r}")
        files = found
    out: dict[str, torch.Tensor] = {}
    for name in files:
        full = os.path.join(path, name)
        if not os.path.exists(full):
            raise FileNotFoundError(f"{index}: shard {name!r} is listed but missing")
        with safe_open(full, framework="pt") as fh:
            for key in fh.keys():
                out[key] = fh.get_tensor(key)
    return out


def load_checked(model: torch.nn.Module, sd: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Strict load with errors that name the offending keys."""
    own = model.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} key(s): {', '.join(missing[:5])}" + (" ..." if len(missing) > 5 else ""))
        if unexpected:
            parts.append(
                f"unexpected {len(unexpected)} key(s): {', '.join(unexpected[:5])}" + (" ..." if len(unexpected) > 5 else "")
            )
        raise KeyError(f"{source}: " + "; ".join(parts))
    for key, t in sd.items():
        if tuple(t.shape) != tuple(own[key].shape):
            raise ValueError(f"{source}: {key} has shape {list(t.shape)}, the model expects {list(own[key].shape)}")
    with torch.no_grad():
        for key, p in own.items():
            p.copy_(sd[key].to(p.dtype))


def from_pretrained(
    path: str, dtype: torch.dtype | None = None, device: torch.device | str = "cpu"
) -> LongcatFlashForCausalLM:
    """Load our or transformers' checkpoint directory into a ready eval() model."""
    cfg, fmt = read_config(path)
    sd = read_safetensors(path)
    if fmt == "hf":
        sd = from_hf_state_dict(sd, cfg)
    model = LongcatFlashForCausalLM(cfg, init=False)
    load_checked(model, sd, source=path)
    if dtype is not None:
        model.to_dtype(dtype)
    return model.to(device).eval()


def save_pretrained(
    model: LongcatFlashForCausalLM, path: str, format: str = "omni", max_shard_bytes: int | None = None
) -> list[str]:
    """Write the model; returns the files written. Shards when the tensors
    exceed `max_shard_bytes` (with a transformers-style index)."""
    os.makedirs(path, exist_ok=True)
    # clone: fused projections (fusion.py) make parameters views of one buffer,
    # and safetensors refuses tensors that share storage
    sd = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}
    cfg = model.config
    if format == "omni":
        with open(os.path.join(path, OMNI_CONFIG), "w") as fh:
            json.dump({"format": "omni-llm", "version": 1, "llm": to_dict(cfg)}, fh, indent=2)
    elif format == "hf":
        sd = to_hf_state_dict(sd, cfg)
        conf = hf_config_dict(cfg)
        conf["dtype"] = str(model.dtype).replace("torch.", "")
        with open(os.path.join(path, HF_CONFIG), "w") as fh:
            json.dump(conf, fh, indent=2)
    else:
        raise ValueError(f"unknown checkpoint format {format!r}; use 'omni' or 'hf'")
    shards = _shard(sd, max_shard_bytes)
    written = []
    if len(shards) == 1:
        save_file(shards[0], os.path.join(path, SINGLE), metadata={"format": "pt"})
        return [SINGLE]
    weight_map = {}
    for i, shard in enumerate(shards):
        name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, os.path.join(path, name), metadata={"format": "pt"})
        weight_map.update({k: name for k in shard})
        written.append(name)
    total = sum(t.numel() * t.element_size() for t in sd.values())
    with open(os.path.join(path, INDEX), "w") as fh:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, fh, indent=2)
    return written + [INDEX]


def _shard(sd: dict[str, torch.Tensor], max_bytes: int | None) -> list[dict[str, torch.Tensor]]:
    if not max_bytes:
        return [sd]
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for k, t in sd.items():
        n = t.numel() * t.element_size()
        if shards[-1] and size + n > max_bytes:
            shards.append({})
            size = 0
        shards[-1][k] = t
        size += n
    return shards

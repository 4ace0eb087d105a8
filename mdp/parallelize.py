"""Parallelize functions: take a plain single-device module and a mesh, shard it in place.

* `parallelize_encoders`: HSDP (FSDP2 over a 2-D (replicate, shard) mesh) with
  full activation recomputation of every encoder block.
* `parallelize_llm`: FSDP2 (ZeRO-3 style; `reshard_after_forward=False` gives
  ZeRO-2) of the dense LLM parameters over the LLM's `dp` mesh, one unit per
  decoder layer plus the embeddings and heads. Expert parameters are left to
  expert parallelism (`mdp.ep`): they are excluded from FSDP and synchronized
  over `dp_rest` by `sync_expert_grads`.

Model code is untouched: these functions only call `fully_shard` / `checkpoint`
on submodules found by type and attribute names.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

try:  # composable activation checkpointing keeps parameter names unchanged
    from torch.distributed._composable import checkpoint as _ac
except ImportError:  # pragma: no cover - older layouts
    _ac = None


def mp_policy(param_dtype: torch.dtype | None) -> MixedPrecisionPolicy:
    """bf16 compute with fp32 gradient reduction (or plain fp32 when None)."""
    if param_dtype is None:
        return MixedPrecisionPolicy()
    return MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32)


def _blocks(module: nn.Module) -> list[nn.Module]:
    """The repeated blocks of an encoder: children of its largest ModuleList/ModuleDict."""
    best: list[nn.Module] = []
    for m in module.modules():
        if isinstance(m, nn.ModuleList) and len(m) > len(best):
            best = list(m)
        elif isinstance(m, nn.ModuleDict) and len(m) > len(best):
            best = list(m.values())
    return best


def parallelize_encoders(
    encoders: dict[str, nn.Module] | nn.ModuleDict,
    mesh: DeviceMesh,
    recompute: bool = True,
    param_dtype: torch.dtype | None = None,
) -> None:
    """HSDP over mesh ("replicate", "shard") + full activation recompute per block."""
    if mesh.ndim != 2:
        raise ValueError(f"encoder mesh must be 2-D (replicate, shard) for HSDP, got {mesh.mesh_dim_names}")
    policy = mp_policy(param_dtype)
    for name, enc in encoders.items():
        blocks = _blocks(enc)
        if not blocks:
            raise ValueError(f"encoder {name!r} has no ModuleList of blocks to shard")
        for b in blocks:
            if recompute:
                if _ac is None:
                    raise RuntimeError("activation checkpointing (torch.distributed._composable.checkpoint) missing")
                _ac(b)
            fully_shard(b, mesh=mesh, mp_policy=policy)
        fully_shard(enc, mesh=mesh, mp_policy=policy)


def parallelize_llm(
    units: list[nn.Module],
    dp_mesh: DeviceMesh,
    expert_params: set[nn.Parameter],
    param_dtype: torch.dtype | None = None,
    reshard_after_forward: bool = True,
) -> None:
    """FSDP2 over the LLM's dp mesh; `units` are the modules this rank holds
    (decoder layers of its pipeline stage, embeddings, heads), sharded one unit each."""
    policy = mp_policy(param_dtype)
    for u in units:
        owned = {p for p in u.parameters()}
        if not owned - expert_params:
            continue  # nothing dense to shard
        fully_shard(
            u,
            mesh=dp_mesh,
            mp_policy=policy,
            reshard_after_forward=reshard_after_forward,
            ignored_params=owned & expert_params or None,
        )

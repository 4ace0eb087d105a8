"""Inference-time fusion of projections that read the same input.

At batch-1 decode every matrix is a memory-bound GEMV plus a kernel launch, so
two GEMVs over the same input cost more than one over the stacked weights.
`fuse_projections_(model)` stacks
* the dense MLPs' gate_proj and up_proj  -> `gate_up_fused` [2F, H]
* MLA's q_a_proj and kv_a_proj_with_mqa  -> `qkv_a_fused`  [q_lora + kv_lora + rope, H]
into one buffer each, and re-points the original parameters at views of it:
no memory is duplicated, parameter names and the state dict are unchanged, and
loading new weights into the parameters updates the fused buffer too. The
fused path is taken only with gradients disabled (it bypasses the Parameters).
Call it after the final `.to(device)` / `to_dtype` (those re-allocate).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from omni.nn import SwiGLU as _BaseSwiGLU


class SwiGLU(_BaseSwiGLU):
    """omni.nn.SwiGLU with an optional fused gate/up weight."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__(dim, hidden)
        self.register_buffer("gate_up_fused", None, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gate_up_fused is not None and not torch.is_grad_enabled():
            gate, up = F.linear(x, self.gate_up_fused).chunk(2, dim=-1)
            return self.down_proj(F.silu(gate) * up)
        return super().forward(x)


@torch.no_grad()
def _stack_as_views(*linears: torch.nn.Linear) -> torch.Tensor:
    fused = torch.cat([lin.weight for lin in linears], dim=0)
    start = 0
    for lin in linears:
        n = lin.weight.shape[0]
        lin.weight.data = fused[start : start + n]
        start += n
    return fused


def fuse_projections_(model: torch.nn.Module) -> int:
    """Fuse every SwiGLU (gate/up) and MLA (q_a/kv_a) of `model`; returns how many."""
    from omni.llm.attention import MLA

    n = 0
    for mod in model.modules():
        if isinstance(mod, SwiGLU) and mod.gate_up_fused is None:
            mod.gate_up_fused = _stack_as_views(mod.gate_proj, mod.up_proj)
            n += 1
        elif isinstance(mod, MLA) and mod.qkv_a_fused is None:
            mod.qkv_a_fused = _stack_as_views(mod.q_a_proj, mod.kv_a_proj_with_mqa)
            n += 1
    return n

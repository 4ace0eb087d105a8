"""Grouped computation of the FFN experts (SwiGLU each), zero experts excluded.

Weights are stored fused, as transformers does: gate_up_proj [N, 2I, H]
(gate rows first) and down_proj [N, H, I].

Dispatch is sort-based and static-shaped (no host sync, CUDA-graph safe):
the M*K (token, expert) pairs are stably sorted by expert; pairs that chose
a zero-computation expert sort past the last real group and are never fed to
any GEMM (they only land in a trash row). Each real expert's rows are padded
to a multiple of `align` so grouped GEMM groups start aligned.

Backends:
* "grouped_mm": torch._grouped_mm over the permuted rows, one call for
  gate/up and one for down. Used wherever a tiny probe call succeeds for the
  device and dtype (CUDA sm90+ bf16; CPU in recent torch).
* "triton": per-pair GEMV kernels (moe_triton.py) that read only the chosen
  experts' weights; "auto" picks them on CUDA, without autograd, when a
  step has at most N pairs (decode) and a probe run matched the reference.
* "bmm": the fallback. Experts are bucketed to a common capacity C = the
  largest group (one host sync), then two torch.bmm calls over [N, C, H].
  No Python loop over experts; not CUDA-graph capturable (the sync).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from omni.llm.moe_triton import triton_experts, triton_moe_available

_PROBE: dict[tuple[str, torch.dtype], bool] = {}


def grouped_mm_available(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether torch._grouped_mm runs for this device type and dtype (cached)."""
    key = (device.type, dtype)
    if key not in _PROBE:
        ok = hasattr(torch, "_grouped_mm")
        if ok:
            try:
                a = torch.ones(16, 16, device=device, dtype=dtype)
                b = torch.ones(2, 16, 16, device=device, dtype=dtype).transpose(-2, -1)
                offs = torch.tensor([8, 16], device=device, dtype=torch.int32)
                out = torch._grouped_mm(a, b, offs=offs)
                ok = bool(torch.isfinite(out).all().item()) and float(out[0, 0]) == 16.0
            except Exception:  # unsupported device / dtype / build
                ok = False
        _PROBE[key] = ok
    return _PROBE[key]


def choose_backend(is_cuda: bool, num_pairs: int, num_experts: int, grad: bool, triton_ok, grouped_ok,
                   grouped_syncs: bool = False) -> str:
    """The "auto" policy. The Triton kernels have no backward, so they serve
    only gradient-free calls (inference) with at most one pair per expert on
    average (decode); grouped_mm serves the rest where it runs, else bmm.
    `grouped_syncs`: grouped_mm would copy its offsets to the host here (CUDA in
    fp32), a sync per layer that a CUDA graph cannot capture, so the kernels take
    every gradient-free call (they are exact for any number of pairs).
    triton_ok / grouped_ok are callables (probes run only when needed)."""
    if is_cuda and not grad and (num_pairs <= num_experts or grouped_syncs) and triton_ok():
        return "triton"
    return "grouped_mm" if grouped_ok() else "bmm"


@dataclass
class DispatchPlan:
    dest: torch.Tensor  # [P] row of each (token, k) pair in the permuted buffer
    offs: torch.Tensor  # [N] int32 cumulative end row of each expert group
    rows: int  # buffer rows (static), last one is the trash row
    real: torch.Tensor  # [P] bool pair goes to a real expert
    order: torch.Tensor  # [P] the pairs sorted by expert (stable); real pairs first
    counts: torch.Tensor  # [N] pairs per real expert (before padding)


def plan_dispatch(indices: torch.Tensor, num_real: int, align: int = 1, capacity: int | None = None) -> DispatchPlan:
    """Permutation of the (token, k) pairs into expert-contiguous rows.

    With `capacity`, every expert gets exactly `capacity` rows (bucketed
    layout for the bmm fallback); otherwise groups are packed, each padded
    to a multiple of `align`.
    """
    flat = indices.reshape(-1)
    p = flat.numel()
    real = flat < num_real
    key = torch.where(real, flat, torch.full_like(flat, num_real))
    counts = torch.zeros(num_real + 1, dtype=torch.long, device=flat.device)
    counts = counts.scatter_add_(0, key, torch.ones_like(key))[:num_real]
    order = torch.argsort(key, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    if capacity is not None:
        padded = torch.full_like(counts, capacity)
        rows = num_real * capacity + 1
        # the cumsum of a constant, written out: inductor 2.11 failed to compile cumsum(full(...))
        # with a symbolic fill value (its post-grad rewrite of that very pattern)
        pends = torch.arange(1, num_real + 1, dtype=counts.dtype, device=counts.device) * capacity
    else:
        padded = (counts + (align - 1)) // align * align
        rows = p + num_real * (align - 1) + 1
        pends = torch.cumsum(padded, 0)
    pstarts = pends - padded
    skey = key[order]
    sk = skey.clamp(max=num_real - 1)
    rank = torch.arange(p, device=flat.device) - starts[sk]
    dest_sorted = torch.where(skey < num_real, pstarts[sk] + rank, torch.full_like(rank, rows - 1))
    dest = torch.empty_like(dest_sorted).scatter_(0, order, dest_sorted)
    return DispatchPlan(dest=dest, offs=pends.to(torch.int32), rows=rows, real=real, order=order, counts=counts)


def gather_pairs(rows_out: torch.Tensor, plan: DispatchPlan, weights: torch.Tensor) -> torch.Tensor:
    """Back from expert-contiguous rows: sum_k weights[m, k] * rows_out[dest of (m, k)] over
    the real pairs, fp32 [M, H]. Rows of zero-expert pairs (the trash row) may hold garbage:
    they are masked, never weighted."""
    m, k = weights.shape
    pair_out = rows_out.index_select(0, plan.dest)  # [P, H]
    w = torch.where(plan.real, weights.reshape(-1).float(), 0.0)
    pair_out = torch.where(plan.real[:, None], pair_out.float(), 0.0) * w[:, None]
    return pair_out.view(m, k, rows_out.shape[-1]).sum(1)


class GroupedExperts(nn.Module):
    """N SwiGLU experts evaluated together. `impl`: "auto" | "grouped_mm" | "triton" | "bmm"."""

    def __init__(self, num_experts: int, hidden: int, inner: int) -> None:
        super().__init__()
        self.num_experts = num_experts
        self.hidden = hidden
        self.inner = inner
        self.gate_up_proj = nn.Parameter(torch.empty(num_experts, 2 * inner, hidden))
        self.down_proj = nn.Parameter(torch.empty(num_experts, hidden, inner))
        self.impl = "auto"

    def backend(self, x: torch.Tensor, num_pairs: int, num_experts: int | None = None) -> str:
        if self.impl != "auto":
            return self.impl
        # in fp32 (the default model served on a GPU at its own precision) CUDA's grouped_mm
        # copies its offsets to the host: the decode step's graph capture failed on it
        syncs = x.is_cuda and x.dtype == torch.float32 and not torch.is_autocast_enabled(x.device.type)
        return choose_backend(
            x.is_cuda, num_pairs, num_experts or self.num_experts, torch.is_grad_enabled(),
            lambda: triton_moe_available(x.device, x.dtype), lambda: grouped_mm_available(x.device, x.dtype),
            grouped_syncs=syncs,
        )

    def forward(self, x: torch.Tensor, indices: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """x [M, H], indices/weights [M, K] (any expert ids; ids >= N are ignored).

        Returns sum_k weights[m, k] * expert_{indices[m, k]}(x[m]) over real
        experts, fp32, shape [M, H]."""
        return self.compute(x, indices, weights, self.gate_up_proj, self.down_proj)

    def compute(self, x: torch.Tensor, indices: torch.Tensor, weights: torch.Tensor,
                w_gate_up: torch.Tensor, w_down: torch.Tensor) -> torch.Tensor:
        """`forward` with the expert weights given: [E, 2I, H] and [E, H, I] for any E
        (expert parallelism passes a rank's local shard; ids >= E are ignored)."""
        m, k = indices.shape
        n = w_gate_up.shape[0]
        backend = self.backend(x, m * k, n)
        if backend == "triton":
            return triton_experts(x, indices, weights, w_gate_up, w_down, n)
        if backend == "grouped_mm":
            align = 8 if x.is_cuda else 1
            plan = plan_dispatch(indices, n, align=align)
        elif backend == "bmm":
            counts = torch.bincount(indices.reshape(-1).clamp(max=n), minlength=n + 1)
            cap = max(1, int(counts[:n].max()))  # host sync: fallback only
            plan = plan_dispatch(indices, n, capacity=cap)
        else:
            raise ValueError(f"unknown expert backend {backend!r}")
        if backend == "grouped_mm" and torch.is_autocast_enabled(x.device.type):
            # autocast leaves torch._grouped_mm alone; cast as it casts a matmul (in fp32,
            # CUDA's grouped_mm takes a fallback that copies the offsets to the host)
            dt = torch.get_autocast_dtype(x.device.type)
            x, w_gate_up, w_down = x.to(dt), w_gate_up.to(dt), w_down.to(dt)
        token = torch.arange(m, device=x.device).repeat_interleave(k)
        buf = x.new_zeros(plan.rows, self.hidden)
        # Zero-expert pairs land on the trash row, which lies outside every
        # grouped_mm group: its output and its input gradient are never
        # written (uninitialized memory). Masking the source keeps that garbage
        # out of x's gradient; `gather_pairs` masks the output.
        src = torch.where(plan.real[:, None], x.index_select(0, token), 0)
        buf.index_copy_(0, plan.dest, src)
        if backend == "grouped_mm":
            h = torch._grouped_mm(buf, w_gate_up.transpose(-2, -1), offs=plan.offs)
            gate, up = h.split(self.inner, dim=-1)
            h = F.silu(gate) * up
            out = torch._grouped_mm(h, w_down.transpose(-2, -1), offs=plan.offs)
        else:
            cap = (plan.rows - 1) // n
            bx = buf[:-1].view(n, cap, self.hidden)
            h = torch.bmm(bx, w_gate_up.transpose(-2, -1))
            gate, up = h.split(self.inner, dim=-1)
            h = F.silu(gate) * up
            out = torch.bmm(h, w_down.transpose(-2, -1)).reshape(-1, self.hidden)
            out = torch.cat([out, out.new_zeros(1, self.hidden)])
        return gather_pairs(out, plan, weights)

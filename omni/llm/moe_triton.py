"""Triton kernels for the routed experts at small batch (decode).

At decode time a step has only M*K (token, expert) pairs, a few per expert.
A grouped GEMM pads every group to a matrix tile and runs far below memory
bandwidth there; these kernels instead compute each pair as two GEMVs that
read exactly the weight rows of the pair's expert:

    act[p] = silu(x[t_p] @ Wg[e_p]^T) * (x[t_p] @ Wu[e_p]^T)      kernel 1, grid (P, I / BN)
    out[p] = w_p * (act[p] @ Wd[e_p]^T)                           kernel 2, grid (P, H / BN)
    y[m]   = sum_k out[m * K + k]                                 (torch, fixed order)

Pairs routed to zero-computation experts are masked: their programs load
nothing and write zeros. Static shapes, no host sync: graph-capturable and
traceable by torch.compile. Used for small batches when a probe run on the
device matches the torch reference (`triton_moe_available`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

try:
    import triton
    import triton.language as tl

    HAVE_TRITON = True
except ImportError:  # CPU-only installs
    HAVE_TRITON = False

_PROBE: dict[tuple[str, torch.dtype], bool] = {}


@dataclass(frozen=True)
class KernelConfig:
    """Launch shape of one of the two kernels: BLOCK_N output rows per program, BLOCK_K
    weights per row per loop step, and Triton's warps and pipeline stages per program."""

    block_n: int = 16
    block_k: int = 256
    num_warps: int = 4
    num_stages: int = 3  # (4, 3): Triton's own defaults, what the kernels launched with before

    def launch(self, length: int | None = None) -> dict:
        """The launch keywords. Triton's defaults (4 warps, 3 stages) are left out. `length`: how
        many weights each row sums over (the kernel's H or I): a loop step no longer than its next
        power of two, so a model narrower than the tuned a1b (the shipped `mini` model: 256 wide) does not
        load mostly masked weights."""
        step = self.block_k if length is None else min(self.block_k, triton.next_power_of_2(int(length)))
        kw = {"BLOCK_N": self.block_n, "BLOCK_K": step}
        if (self.num_warps, self.num_stages) != (4, 3):
            kw.update(num_warps=self.num_warps, num_stages=self.num_stages)
        return kw


# (gate/up, down) launch shapes: the fastest at decode batch 1 of `bench/expert_kernels.py` on
# 1x H100 80GB (`bench/results/expert_kernels_h100.json`): 4 rows per program read a whole row of
# the a1b width in one step. Against the first shapes (16 rows, 256 a step, KernelConfig()):
# gate/up 40.8 -> 24.3 us (1.65 -> 2.76 TB/s), down 14.8 -> 12.8 us; within 1 % of each kernel's
# fastest at batch 8 too
CONFIGS = (KernelConfig(block_n=4, block_k=2048, num_warps=2), KernelConfig(block_n=4, block_k=512, num_warps=2))

if HAVE_TRITON:

    @triton.jit
    def _gate_up_kernel(x_ptr, w_ptr, tok_ptr, exp_ptr, act_ptr, H, I,
                        BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
        p = tl.program_id(0)
        nb = tl.program_id(1)
        e = tl.load(exp_ptr + p)
        valid = e >= 0
        e = tl.maximum(e, 0).to(tl.int64)
        t = tl.load(tok_ptr + p).to(tl.int64)
        offs_n = nb * BLOCK_N + tl.arange(0, BLOCK_N)
        mask_n = (offs_n < I) & valid
        rows_g = w_ptr + e * (2 * I * H) + offs_n.to(tl.int64)[:, None] * H
        rows_u = rows_g + I * H
        acc_g = tl.zeros([BLOCK_N], dtype=tl.float32)
        acc_u = tl.zeros([BLOCK_N], dtype=tl.float32)
        for k0 in range(0, H, BLOCK_K):
            offs_k = k0 + tl.arange(0, BLOCK_K)
            mask_k = offs_k < H
            xv = tl.load(x_ptr + t * H + offs_k, mask=mask_k & valid, other=0.0).to(tl.float32)
            m2 = mask_n[:, None] & mask_k[None, :]
            g = tl.load(rows_g + offs_k[None, :], mask=m2, other=0.0).to(tl.float32)
            u = tl.load(rows_u + offs_k[None, :], mask=m2, other=0.0).to(tl.float32)
            acc_g += tl.sum(g * xv[None, :], axis=1)
            acc_u += tl.sum(u * xv[None, :], axis=1)
        act = acc_g / (1.0 + tl.exp(-acc_g)) * acc_u
        tl.store(act_ptr + p.to(tl.int64) * I + offs_n, act.to(act_ptr.dtype.element_ty), mask=offs_n < I)

    @triton.jit
    def _down_kernel(act_ptr, w_ptr, exp_ptr, wt_ptr, out_ptr, H, I,
                     BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
        p = tl.program_id(0)
        nb = tl.program_id(1)
        e = tl.load(exp_ptr + p)
        valid = e >= 0
        e = tl.maximum(e, 0).to(tl.int64)
        offs_n = nb * BLOCK_N + tl.arange(0, BLOCK_N)
        mask_n = (offs_n < H) & valid
        rows = w_ptr + e * (H * I) + offs_n.to(tl.int64)[:, None] * I
        acc = tl.zeros([BLOCK_N], dtype=tl.float32)
        for k0 in range(0, I, BLOCK_K):
            offs_k = k0 + tl.arange(0, BLOCK_K)
            mask_k = offs_k < I
            a = tl.load(act_ptr + p.to(tl.int64) * I + offs_k, mask=mask_k & valid, other=0.0).to(tl.float32)
            w = tl.load(rows + offs_k[None, :], mask=mask_n[:, None] & mask_k[None, :], other=0.0).to(tl.float32)
            acc += tl.sum(w * a[None, :], axis=1)
        scale = tl.load(wt_ptr + p)
        out = tl.where(valid, acc * scale, 0.0)
        tl.store(out_ptr + p.to(tl.int64) * H + offs_n, out, mask=offs_n < H)


def triton_experts(
    x: torch.Tensor,
    indices: torch.Tensor,
    weights: torch.Tensor,
    gate_up: torch.Tensor,
    down: torch.Tensor,
    num_real: int,
    configs: tuple[KernelConfig, KernelConfig] | None = None,
) -> torch.Tensor:
    """x [M, H]; indices/weights [M, K]; gate_up [N, 2I, H]; down [N, H, I]
    (contiguous). Returns the real experts' weighted sum [M, H] in fp32. `configs`:
    the (gate/up, down) launch shapes (None: `CONFIGS`)."""
    m, k = indices.shape
    h = x.shape[1]
    inner = down.shape[2]
    p = m * k
    x = x.contiguous()
    exp = torch.where(indices < num_real, indices, -1).reshape(-1).to(torch.int32)
    tok = torch.arange(m, device=x.device, dtype=torch.int32).repeat_interleave(k)
    wt = weights.reshape(-1).float().contiguous()
    act = torch.empty(p, inner, device=x.device, dtype=x.dtype)
    out = torch.empty(p, h, device=x.device, dtype=torch.float32)
    gu_cfg, dn_cfg = CONFIGS if configs is None else configs
    _gate_up_kernel[(p, triton.cdiv(inner, gu_cfg.block_n))](x, gate_up, tok, exp, act, h, inner, **gu_cfg.launch(h))
    _down_kernel[(p, triton.cdiv(h, dn_cfg.block_n))](act, down, exp, wt, out, h, inner, **dn_cfg.launch(inner))
    return out.view(m, k, h).sum(1)


def reference_experts(x, indices, weights, gate_up, down, num_real) -> torch.Tensor:
    """Plain torch definition (for probes and tests)."""
    m, k = indices.shape
    inner = down.shape[2]
    out = torch.zeros(m, x.shape[1], dtype=torch.float32, device=x.device)
    for i in range(m):
        for j in range(k):
            e = int(indices[i, j])
            if e >= num_real:
                continue
            gu = gate_up[e].float() @ x[i].float()
            a = (torch.nn.functional.silu(gu[:inner]) * gu[inner:]).to(x.dtype).float()
            out[i] += float(weights[i, j]) * (down[e].float() @ a)
    return out


def triton_moe_available(device: torch.device, dtype: torch.dtype) -> bool:
    """Triton present, the kernels compile and run on this device and agree
    with the torch reference on a small random problem (cached)."""
    key = (device.type, dtype)
    if key not in _PROBE:
        ok = HAVE_TRITON and device.type == "cuda"
        if ok:
            try:
                g = torch.Generator(device="cpu").manual_seed(0)
                n, h, inner, m, k = 5, 96, 80, 3, 3
                x = torch.randn(m, h, generator=g).to(device, dtype)
                gu = (0.1 * torch.randn(n, 2 * inner, h, generator=g)).to(device, dtype)
                dn = (0.1 * torch.randn(n, h, inner, generator=g)).to(device, dtype)
                idx = torch.tensor([[0, 6, 3], [4, 4, 1], [5, 2, 0]], device=device)
                w = torch.rand(m, k, generator=g).to(device)
                got = triton_experts(x, idx, w, gu, dn, n)
                ref = reference_experts(x, idx, w, gu, dn, n)
                ok = bool(((got - ref).abs().max() <= 2e-2 * ref.abs().max() + 1e-3).item())
            except Exception:  # no compiler / unsupported GPU / old triton
                ok = False
        _PROBE[key] = ok
    return _PROBE[key]

"""A Triton kernel for the router's choice at small batch (decode).

After the router's logits (one GEMM, left to cuBLAS), the torch path launches a
softmax, the bias add, a top-k, a gather, the scaling and, for the identity
experts, a compare, a select and a sum: eight small kernels per MoE layer and
step, each a few microseconds on a GPU whatever the batch. This kernel does all
of it in one launch, one program per token:

    scores   = softmax(logits)                          over the N + Z experts
    chosen   = K times: argmax(scores + bias), then masked out
    weights  = scores[chosen] * routed_scaling_factor
    identity = sum of the weights of chosen zero-computation experts (ids >= N)

Ties break toward the lower expert id; the chosen ids come in descending order of
`scores + bias` (torch.topk(sorted=False) promises no order, and no caller
depends on one). Static shapes, no host sync: graph-capturable. Used for
gradient-free calls on CUDA when a probe run matches the torch reference
(`triton_router_available`); tests run it in Triton's CPU interpreter.
"""

from __future__ import annotations

import torch

try:
    import triton
    import triton.language as tl

    HAVE_TRITON = True
except ImportError:  # CPU-only installs
    HAVE_TRITON = False

_PROBE: dict[str, bool] = {}

if HAVE_TRITON:

    @triton.jit
    def _route_kernel(logits_ptr, bias_ptr, idx_ptr, w_ptr, idw_ptr, E, N_REAL, scale,
                      K: tl.constexpr, BLOCK_E: tl.constexpr):
        m = tl.program_id(0).to(tl.int64)
        offs = tl.arange(0, BLOCK_E)
        mask = offs < E
        logit = tl.load(logits_ptr + m * E + offs, mask=mask, other=-float("inf")).to(tl.float32)
        ex = tl.exp(logit - tl.max(logit, axis=0))
        scores = ex / tl.sum(ex, axis=0)
        bias = tl.load(bias_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        choice = tl.where(mask, scores + bias, -float("inf"))
        identity = tl.sum(tl.zeros([BLOCK_E], dtype=tl.float32), axis=0)
        for k in tl.static_range(K):
            j = tl.argmax(choice, axis=0)
            w = tl.sum(tl.where(offs == j, scores, 0.0), axis=0) * scale
            tl.store(idx_ptr + m * K + k, j.to(tl.int64))
            tl.store(w_ptr + m * K + k, w)
            identity += tl.where(j >= N_REAL, w, 0.0)
            choice = tl.where(offs == j, -float("inf"), choice)
        tl.store(idw_ptr + m, identity)


def triton_route(logits: torch.Tensor, bias: torch.Tensor, k: int, num_real: int,
                 scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """logits [M, E] fp32, bias [E] -> (indices [M, K] long, weights [M, K] fp32,
    identity weight [M] fp32)."""
    m, e = logits.shape
    logits = logits.contiguous()
    idx = torch.empty(m, k, dtype=torch.long, device=logits.device)
    w = torch.empty(m, k, dtype=torch.float32, device=logits.device)
    idw = torch.empty(m, dtype=torch.float32, device=logits.device)
    if m:
        _route_kernel[(m,)](logits, bias.float().contiguous(), idx, w, idw, e, num_real, float(scale),
                            K=k, BLOCK_E=triton.next_power_of_2(e))
    return idx, w, idw


def reference_route(logits: torch.Tensor, bias: torch.Tensor, k: int, num_real: int,
                    scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The torch definition (the Router's own ops), ids in descending order of choice."""
    scores = logits.float().softmax(dim=-1)
    idx = torch.topk(scores + bias.float(), k=k, dim=-1, sorted=True).indices
    w = scores.gather(1, idx) * scale
    return idx, w, torch.where(idx < num_real, 0.0, w).sum(-1)


def triton_router_available(device: torch.device) -> bool:
    """Triton present, the kernel compiles and runs on this CUDA device and agrees
    with the torch reference on a small random problem (cached)."""
    if device.type not in _PROBE:
        ok = HAVE_TRITON and device.type == "cuda"
        if ok:
            try:
                g = torch.Generator(device="cpu").manual_seed(0)
                logits = torch.randn(5, 24, generator=g).to(device)
                bias = (0.01 * torch.randn(24, generator=g)).to(device)
                got = triton_route(logits, bias, 4, 16, 2.0)
                ref = reference_route(logits, bias, 4, 16, 2.0)
                ok = bool(torch.equal(got[0], ref[0])) and all(
                    bool(torch.allclose(a, b, atol=1e-6, rtol=1e-5)) for a, b in zip(got[1:], ref[1:]))
            except Exception:  # no compiler / unsupported GPU / old triton
                ok = False
        _PROBE[device.type] = ok
    return _PROBE[device.type]

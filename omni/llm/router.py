"""Top-k router over real (FFN) and zero-computation (identity) experts.

transformers' semantics, which the LongCat-Flash release shares:
    logits  = x @ W^T in fp32                        [M, N + Z]
    scores  = softmax(logits) over all N + Z experts
    chosen  = top-k of (scores + e_score_correction_bias)    (the bias only chooses)
    weights = scores[chosen] * routed_scaling_factor  (un-normalized; identity experts included)
Experts 0..N-1 are FFN experts, N..N+Z-1 zero-computation experts.

Aux-loss-free load balancing: `update_correction_bias` nudges the bias of real
experts toward equal load (zero experts' biases never change), and
`Routing.real_experts_per_token` is LongCat-Flash's dynamic-compute statistic.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from omni.config import LLMConfig
from omni.llm.router_triton import triton_route, triton_router_available


@dataclass
class Routing:
    """Routing decision for M tokens."""

    logits: torch.Tensor  # [M, N + Z] fp32
    weights: torch.Tensor  # [M, K] fp32, already x routed_scaling_factor
    indices: torch.Tensor  # [M, K] long
    num_real: int  # N
    identity: torch.Tensor | None = None  # [M] identity_weight(), when the router computed it already

    @property
    def real_mask(self) -> torch.Tensor:
        return self.indices < self.num_real

    def real_experts_per_token(self) -> torch.Tensor:
        """[M] number of FFN experts each token activates (0..K)."""
        return self.real_mask.sum(-1)

    def identity_weight(self) -> torch.Tensor:
        """[M] fp32 summed weight of the chosen zero-computation experts."""
        if self.identity is not None:
            return self.identity
        return torch.where(self.real_mask, 0.0, self.weights).sum(-1)

    def expert_load(self) -> torch.Tensor:
        """[N + Z] fp32 number of (token, slot) assignments per expert."""
        flat = self.indices.reshape(-1)
        out = torch.zeros(self.logits.shape[-1], dtype=torch.float32, device=flat.device)
        return out.scatter_add_(0, flat, torch.ones_like(flat, dtype=torch.float32))


class Router(nn.Module):
    # router_triton.py's one-launch routing, opt-in: on 1x H200 (a1b, bf16, batch-1 CUDA-graph
    # decode) it bought 3.6 % (232 -> 240 tok/s), but its greedy tokens left the torch ops'
    # within 128 steps (its softmax and the order of the chosen experts round apart from
    # theirs; bench/results/backbone_h200.json): too little to let serving answer differently
    FUSED_KERNEL_DEFAULT = False

    def __init__(self, cfg: LLMConfig) -> None:
        super().__init__()
        self.num_real = cfg.n_routed_experts
        self.num_experts = cfg.num_experts_total
        self.top_k = cfg.moe_topk
        self.scaling = cfg.routed_scaling_factor
        if not 1 <= self.top_k <= self.num_experts:
            raise ValueError(f"moe_topk={self.top_k} must be in [1, {self.num_experts}] (real + zero experts)")
        self.classifier = nn.Linear(cfg.hidden_size, self.num_experts, bias=False)
        self.register_buffer("e_score_correction_bias", torch.zeros(self.num_experts, dtype=torch.float32))
        self.fused_kernel = self.FUSED_KERNEL_DEFAULT

    def forward(self, x: torch.Tensor) -> Routing:
        """x [M, hidden] -> Routing."""
        logits = F.linear(x.float(), self.classifier.weight.float())
        if self.fused_kernel and x.is_cuda and not torch.is_grad_enabled() and triton_router_available(x.device):
            # decode: softmax, bias, top-k, weights and the identity share in one kernel
            indices, weights, identity = triton_route(logits, self.e_score_correction_bias, self.top_k,
                                                      self.num_real, self.scaling)
            return Routing(logits=logits, weights=weights, indices=indices, num_real=self.num_real, identity=identity)
        scores = logits.softmax(dim=-1)
        with torch.no_grad():
            choice = scores + self.e_score_correction_bias.float()
            indices = torch.topk(choice, k=self.top_k, dim=-1, sorted=False).indices
        weights = scores.gather(1, indices) * self.scaling
        return Routing(logits=logits, weights=weights, indices=indices, num_real=self.num_real)

    @torch.no_grad()
    def update_correction_bias(self, load: torch.Tensor, rate: float, mode: str = "sign") -> torch.Tensor:
        """Aux-loss-free balancing step for the real experts only.

        load: [N + Z] (or [N]) assignment counts accumulated over a step (a
        trainer sums them over data-parallel ranks first). Under-loaded real
        experts get their bias raised, over-loaded ones lowered:
          sign:         b_i += rate * sign(mean - load_i)
          proportional: b_i += rate * (mean - load_i) / mean
        Zero experts keep their bias, so the share of zero-computation
        assignments is governed by the learned router alone. Returns the delta.
        """
        real = load[: self.num_real].float().to(self.e_score_correction_bias.device)
        if real.numel() != self.num_real:
            raise ValueError(f"load has {load.numel()} entries, need at least {self.num_real} real experts")
        mean = real.mean()
        if mode == "sign":
            delta = rate * torch.sign(mean - real)
        elif mode == "proportional":
            delta = rate * (mean - real) / mean.clamp_min(1e-9)
        else:
            raise ValueError(f"unknown bias update mode {mode!r}; use 'sign' or 'proportional'")
        self.e_score_correction_bias[: self.num_real] += delta
        return delta

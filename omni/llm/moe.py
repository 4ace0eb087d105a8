"""The shortcut-connected MoE of LongCat-Flash: router + grouped FFN experts +
zero-computation (identity) experts.

The MoE is split into stages so that expert parallelism can be swapped in from
outside (the training package replaces `dispatch_compute` with an all-to-all
version, or overrides `start` / `finish` to overlap the exchange with the
layer's second half):

    routing = moe.route(x)                  # fp32 router, top-k over N + Z experts
    y_real  = moe.dispatch_compute(x, routing)   # FFN experts only
    y       = moe.combine(x, routing, y_real)    # + identity experts, cast back

`start(x)` returns an opaque pending object and `finish(pending)` the output;
the decoder layer calls `start` right after its first attention and `finish`
at its very end (the ScMoE shortcut).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from omni.config import LLMConfig
from omni.llm.experts import GroupedExperts
from omni.llm.router import Router, Routing


class MoE(nn.Module):
    def __init__(self, cfg: LLMConfig) -> None:
        super().__init__()
        self.router = Router(cfg)
        self.num_real = cfg.n_routed_experts
        self.experts = (
            GroupedExperts(cfg.n_routed_experts, cfg.hidden_size, cfg.expert_ffn_hidden_size)
            if cfg.n_routed_experts > 0
            else None
        )
        # Load statistics for aux-loss-free balancing; accumulated while `track_load`.
        self.track_load = False
        self.register_buffer("load_acc", torch.zeros(cfg.num_experts_total), persistent=False)
        self.register_buffer("real_per_token_acc", torch.zeros(2), persistent=False)  # (sum, tokens)

    # --- stages ------------------------------------------------------------

    def route(self, x: torch.Tensor) -> Routing:
        routing = self.router(x)
        if self.track_load:
            with torch.no_grad():
                self.load_acc += routing.expert_load().to(self.load_acc.dtype)
                n_real = routing.real_experts_per_token().float()
                self.real_per_token_acc += torch.stack([n_real.sum(), n_real.new_tensor(float(n_real.numel()))])
        return routing

    def dispatch_compute(self, x: torch.Tensor, routing: Routing) -> torch.Tensor:
        """FFN experts only: [M, H] fp32. Zero experts are never dispatched."""
        if self.experts is None:
            return torch.zeros(x.shape, dtype=torch.float32, device=x.device)
        return self.experts(x, routing.indices, routing.weights)

    def combine(self, x: torch.Tensor, routing: Routing, y_real: torch.Tensor) -> torch.Tensor:
        """Add the identity experts (x times their summed weight) and cast back."""
        return (y_real + x.float() * routing.identity_weight()[:, None]).to(x.dtype)

    def start(self, x: torch.Tensor) -> Any:
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        routing = self.route(x2)
        return self.combine(x2, routing, self.dispatch_compute(x2, routing)).view(shape)

    def finish(self, pending: Any) -> torch.Tensor:
        return pending

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.finish(self.start(x))

    # --- balancing -----------------------------------------------------------

    def reset_stats(self) -> None:
        self.load_acc.zero_()
        self.real_per_token_acc.zero_()

    def mean_real_experts_per_token(self) -> float:
        s, n = self.real_per_token_acc.tolist()
        return s / n if n else float("nan")

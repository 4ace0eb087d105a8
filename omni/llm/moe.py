"""The shortcut-connected MoE of LongCat-Flash: router + grouped FFN experts +
zero-computation (identity) experts.

The MoE runs in three calls that the decoder layer spreads over its body (the
ScMoE shortcut: the MoE's input is ready after the first attention, its output
is needed only at the layer's end):

    pending = moe.start(y)     # right after the first attention: route, dispatch
    moe.advance(pending)       # after the first dense MLP: the layer's midpoint
    s = moe.finish(pending)    # at the layer's end: combine (+ identity experts)

Where the tokens go is the job of a token dispatcher, a sibling of the experts
(`moe.dispatcher`). The default `LocalDispatcher` computes every expert on this
device in `start` (the grouped kernels of omni/llm/experts.py) and leaves the
other two calls with nothing to do. Expert parallelism (mdp/ep.py) swaps in a
dispatcher that sends tokens to the rank holding their expert by all-to-all in
`start`, computes the local experts with the same grouped kernels in `advance`
and waits for the results in `finish`, so both exchanges hide behind the
layer's dense half. The layer's code is the same either way.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import nn

from omni.config import LLMConfig
from omni.llm.experts import GroupedExperts
from omni.llm.router import Router, Routing


class Pending(NamedTuple):
    """One MoE call between `start` and `finish`."""

    shape: torch.Size
    x: torch.Tensor  # [M, H] the routed tokens
    routing: Routing
    work: Any  # the dispatcher's own state


class LocalDispatcher(nn.Module):
    """Every expert lives here: computed at once, in `start`."""

    def start(self, moe: "MoE", x: torch.Tensor, routing: Routing) -> torch.Tensor:
        return moe.dispatch_compute(x, routing)

    def advance(self, moe: "MoE", work: torch.Tensor) -> None:
        pass

    def finish(self, moe: "MoE", work: torch.Tensor) -> torch.Tensor:
        return work


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
        self.dispatcher: nn.Module = LocalDispatcher()
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

    def start(self, x: torch.Tensor) -> Pending:
        x2 = x.reshape(-1, x.shape[-1])
        routing = self.route(x2)
        return Pending(x.shape, x2, routing, self.dispatcher.start(self, x2, routing))

    def advance(self, pending: Pending) -> None:
        self.dispatcher.advance(self, pending.work)

    def finish(self, pending: Pending) -> torch.Tensor:
        y_real = self.dispatcher.finish(self, pending.work)
        return self.combine(pending.x, pending.routing, y_real).view(pending.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pending = self.start(x)
        self.advance(pending)
        return self.finish(pending)

    # --- balancing -----------------------------------------------------------

    def reset_stats(self) -> None:
        self.load_acc.zero_()
        self.real_per_token_acc.zero_()

    def mean_real_experts_per_token(self) -> float:
        s, n = self.real_per_token_acc.tolist()
        return s / n if n else float("nan")

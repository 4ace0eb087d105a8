"""The fused routing kernel (omni/llm/router_triton.py), run by Triton's CPU interpreter,
chooses the experts the Router's torch ops choose, with the same weights and identity share."""

from __future__ import annotations

import torch

from tests.llm.triton_interpreter import run_in_interpreter

CHECK = r"""
import torch
from omni.llm.router_triton import reference_route, triton_route

g = torch.Generator().manual_seed(0)
zero_experts_chosen = False
for m, e, k, n_real in [(7, 96, 8, 64), (1, 24, 4, 16), (3, 13, 5, 10), (0, 96, 8, 64)]:
    logits = 3 * torch.randn(m, e, generator=g)
    for bias in (torch.zeros(e), 0.05 * torch.randn(e, generator=g), torch.linspace(-0.2, 0.2, e)):
        got = triton_route(logits, bias, k, n_real, 6.0)
        ref = reference_route(logits, bias, k, n_real, 6.0)
        assert torch.equal(got[0], ref[0]), (m, e, got[0], ref[0])
        torch.testing.assert_close(got[1], ref[1], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(got[2], ref[2], atol=1e-6, rtol=1e-5)
        zero_experts_chosen |= bool((got[2] > 0).any())
assert zero_experts_chosen, "no case exercised the identity share"
print("ok")
"""


def test_fused_routing_in_the_interpreter_matches_the_torch_router() -> None:
    run_in_interpreter(CHECK)


def test_the_reference_is_the_routers_own_choice() -> None:
    """reference_route (what the kernel is checked against) chooses what Router.forward does."""
    from omni.config import get_llm_config
    from omni.llm.router import Router
    from omni.llm.router_triton import reference_route

    cfg = get_llm_config("debug")
    torch.manual_seed(0)
    router = Router(cfg)
    router.e_score_correction_bias.copy_(torch.linspace(-0.1, 0.1, cfg.num_experts_total))
    x = torch.randn(9, cfg.hidden_size)
    with torch.no_grad():
        r = router(x)
        idx, w, idw = reference_route(r.logits, router.e_score_correction_bias, cfg.moe_topk, cfg.n_routed_experts,
                                      cfg.routed_scaling_factor)
    order = r.indices.sort(dim=-1).indices
    assert torch.equal(r.indices.gather(1, order), idx.sort(dim=-1).values)
    torch.testing.assert_close(r.weights.gather(1, order), w.gather(1, idx.sort(dim=-1).indices))
    torch.testing.assert_close(r.identity_weight(), idw)
    assert (idx >= cfg.n_routed_experts).any(), "the case should route some tokens to zero experts"

"""The expert backends give training the same gradients: grouped_mm against bmm.

The grouped_mm path (`omni.llm.experts`) sends the (token, expert) pairs that chose
a zero-computation expert to a trash row outside every grouped_mm group; nothing
writes that row's output or its input gradient. These tests compare every
parameter gradient (and the input gradient) of one MoE layer and of a small
backbone under both backends, with many pairs on zero experts, and once more with
the trash row and the out-of-group gradient deliberately filled with garbage
(1e33 and NaN), as uninitialized memory may hold.

Tolerances: fp32 `rtol=1e-4, atol=1e-5` (the two backends sum in different
orders); bf16 autocast (as on CUDA) `rtol=atol=5e-2`.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from omni.config import get_llm_config
from omni.llm.experts import grouped_mm_available
from omni.llm.model import LongcatFlashForCausalLM
from omni.llm.moe import MoE

CPU = torch.device("cpu")
FP32_TOL = dict(rtol=1e-4, atol=1e-5)
BF16_TOL = dict(rtol=5e-2, atol=5e-2)

pytestmark = pytest.mark.skipif(
    not grouped_mm_available(CPU, torch.float32), reason="torch._grouped_mm unavailable on CPU in this torch"
)


def _moe(seed: int = 0) -> tuple[object, MoE]:
    cfg = get_llm_config("debug")
    torch.manual_seed(seed)
    moe = MoE(cfg)
    with torch.no_grad():
        moe.router.classifier.weight.normal_(0, 0.5)
        # a bias that pushes many tokens onto the zero experts (ids >= n_routed_experts)
        moe.router.e_score_correction_bias.copy_(torch.linspace(-0.05, 0.3, cfg.num_experts_total))
        moe.experts.gate_up_proj.normal_(0, 0.2)
        moe.experts.down_proj.normal_(0, 0.2)
    return cfg, moe


def _moe_grads(moe: MoE, x: torch.Tensor, backend: str, autocast: bool = False) -> dict[str, torch.Tensor]:
    moe.experts.impl = backend
    moe.zero_grad(set_to_none=True)
    xi = x.clone().requires_grad_(True)
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else torch.autocast("cpu", enabled=False)
    with ctx:
        y = moe(xi)
    # a loss that weighs every output element differently
    (y.float() * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
    grads = {n: p.grad.detach().clone() for n, p in moe.named_parameters() if p.grad is not None}
    grads["input"] = xi.grad.detach().clone()
    return grads


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], tol: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.isfinite(a[name]).all(), f"{name}: non-finite gradient"
        torch.testing.assert_close(a[name], b[name], **tol, msg=lambda m, n=name: f"{n}: {m}")


def _zero_pairs(moe: MoE, x: torch.Tensor) -> int:
    with torch.no_grad():
        return int((moe.router(x).indices >= moe.num_real).sum())


def test_moe_layer_parameter_gradients_agree():
    cfg, moe = _moe()
    x = torch.randn(96, cfg.hidden_size, generator=torch.Generator().manual_seed(1))
    assert _zero_pairs(moe, x) > 20  # the case that once went wrong is exercised
    g_mm = _moe_grads(moe, x, "grouped_mm")
    g_bmm = _moe_grads(moe, x, "bmm")
    assert {"experts.gate_up_proj", "experts.down_proj", "router.classifier.weight", "input"} <= g_mm.keys()
    _assert_same(g_mm, g_bmm, FP32_TOL)


def test_moe_layer_gradients_agree_under_bf16_autocast():
    if not grouped_mm_available(CPU, torch.bfloat16):
        pytest.skip("torch._grouped_mm in bf16 unavailable on CPU in this torch")
    cfg, moe = _moe()
    x = torch.randn(96, cfg.hidden_size, generator=torch.Generator().manual_seed(2))
    g_mm = _moe_grads(moe, x, "grouped_mm", autocast=True)
    g_bmm = _moe_grads(moe, x, "bmm", autocast=True)
    assert g_mm["experts.gate_up_proj"].dtype == torch.float32
    _assert_same(g_mm, g_bmm, BF16_TOL)


class _GarbageOutsideGroups(torch.autograd.Function):
    """torch._grouped_mm(a [R, K], b [N, K, O], offs) whose rows past the last group
    hold garbage, forward and backward: what uninitialized memory may contain."""

    @staticmethod
    def forward(ctx, a, b, offs, fill):  # type: ignore[override]
        ctx.save_for_backward(a, b, offs)
        ctx.fill = fill
        out = _ORIG_GROUPED_MM(a, b, offs=offs)
        out[int(offs[-1]) :] = fill
        return out

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        a, b, offs = ctx.saved_tensors
        with torch.enable_grad():
            a2, b2 = a.detach().requires_grad_(True), b.detach().requires_grad_(True)
            ga, gb = torch.autograd.grad(_ORIG_GROUPED_MM(a2, b2, offs=offs), (a2, b2), g)
        ga = ga.clone()
        ga[int(offs[-1]) :] = ctx.fill
        return ga, gb, None, None


_ORIG_GROUPED_MM = torch._grouped_mm


@pytest.mark.parametrize("fill", [1e33, float("nan")])
def test_garbage_in_the_trash_row_reaches_no_gradient(monkeypatch, fill):
    cfg, moe = _moe()
    x = torch.randn(96, cfg.hidden_size, generator=torch.Generator().manual_seed(3))
    g_bmm = _moe_grads(moe, x, "bmm")
    monkeypatch.setattr(torch, "_grouped_mm", lambda a, b, offs: _GarbageOutsideGroups.apply(a, b, offs, fill))
    g_mm = _moe_grads(moe, x, "grouped_mm")
    _assert_same(g_mm, g_bmm, FP32_TOL)


def test_small_backbone_parameter_gradients_agree():
    cfg = dataclasses.replace(get_llm_config("debug"), num_layers=3)
    ids = torch.randint(0, cfg.vocab_size, (3, 24), generator=torch.Generator().manual_seed(4))
    grads = {}
    for backend in ("grouped_mm", "bmm"):
        torch.manual_seed(0)
        model = LongcatFlashForCausalLM(cfg)
        with torch.no_grad():
            for layer in model.model.layers:
                layer.mlp.router.e_score_correction_bias.copy_(torch.linspace(-0.05, 0.3, cfg.num_experts_total))
        model.set_expert_backend(backend)
        logits = model(ids).logits
        F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1)).backward()
        grads[backend] = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    assert any("experts" in n for n in grads["bmm"])
    _assert_same(grads["grouped_mm"], grads["bmm"], FP32_TOL)

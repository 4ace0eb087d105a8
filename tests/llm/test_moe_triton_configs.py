"""The decode experts' Triton kernels (omni/llm/moe_triton.py) give the torch reference's
result for any launch shape `bench/expert_kernels.py` may choose, run by Triton's CPU
interpreter: rows per program that do not divide the widths, loop steps longer than a row."""

from __future__ import annotations

from tests.llm.triton_interpreter import run_in_interpreter

CHECK = r"""
import torch
from omni.llm.moe_triton import CONFIGS, KernelConfig, reference_experts, triton_experts

g = torch.Generator().manual_seed(0)
n, h, inner, m, k = 5, 48, 40, 3, 3
x = torch.randn(m, h, generator=g)
gu = 0.1 * torch.randn(n, 2 * inner, h, generator=g)
dn = 0.1 * torch.randn(n, h, inner, generator=g)
idx = torch.tensor([[0, 6, 3], [4, 4, 1], [5, 2, 0]])  # 5 and 6: zero-computation experts
w = torch.rand(m, k, generator=g)
ref = reference_experts(x, idx, w, gu, dn, n)
shapes = [CONFIGS, (KernelConfig(4, 16, 2, 1), KernelConfig(8, 32, 4, 2)),
          (KernelConfig(32, 64, 8, 4), KernelConfig(16, 128, 4, 3))]
for cfgs in shapes:
    got = triton_experts(x, idx, w, gu, dn, n, configs=cfgs)
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)
print("ok")
"""


def test_every_launch_shape_gives_the_reference() -> None:
    run_in_interpreter(CHECK)


def test_a_loop_step_is_never_longer_than_the_row() -> None:
    import pytest

    pytest.importorskip("triton")
    from omni.llm.moe_triton import KernelConfig

    cfg = KernelConfig(block_n=4, block_k=2048, num_warps=2)
    assert cfg.launch(256)["BLOCK_K"] == 256  # the shipped mini model's width
    assert cfg.launch(200)["BLOCK_K"] == 256  # a power of two, masked past the row
    assert cfg.launch(6144)["BLOCK_K"] == 2048 and cfg.launch()["BLOCK_K"] == 2048
    assert cfg.launch(256)["num_warps"] == 2 and "num_warps" not in KernelConfig().launch(64)

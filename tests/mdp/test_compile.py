"""`numerics.compile`: the trainer's decoder layers compiled (torch.compile, one graph every
layer reuses) train as the eager ones do, within bf16 rounding."""

from __future__ import annotations

import pytest

from mdp.launch import spawn
from mdp.recipes import get_recipe


def _train(rank: int, world: int, out: str, compile_layers: bool) -> list[float]:
    from mdp.train import run

    r = get_recipe("debug").override(["steps=2", "numerics.bf16=on", "plot=false", f"out_dir={out}",
                                      f"numerics.compile={compile_layers}"])
    return [rec["loss"] for rec in run(r, resume=False)]


def _refused(rank: int, world: int, out: str) -> str:
    import torch

    from mdp.trainer import Trainer

    r = get_recipe("debug").override(["numerics.compile=true", "numerics.bf16=off",
                                      "numerics.expert_backend=grouped_mm", f"out_dir={out}"])
    try:
        Trainer(r, torch.device("cpu"))
    except ValueError as e:
        return str(e)
    return ""


@pytest.mark.slow
def test_compiled_layers_train_as_eager_ones(tmp_path) -> None:
    eager = spawn(_train, 1, str(tmp_path / "eager"), False)
    compiled = spawn(_train, 1, str(tmp_path / "compiled"), True)
    assert len(eager) == len(compiled) == 2
    for a, b in zip(eager, compiled):  # bf16 autocast: the compiled kernels round differently
        assert abs(a - b) <= 2e-3 * abs(a), (eager, compiled)


def test_compile_with_grouped_mm_in_fp32_is_refused(tmp_path) -> None:
    assert "numerics.compile with grouped_mm experts needs numerics.bf16" in spawn(_refused, 1, str(tmp_path))

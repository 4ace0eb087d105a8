"""Tiny splits of the synthetic world, built once per test session (a few seconds)."""

from __future__ import annotations

import shutil

import pytest

from omni.synth.build import build_split
from omni.synth.evalsets import write_eval_sets
from omni.synth.plan import build_plan

TINY = {"train": 5, "heldout": 4}

def _tiny_plan(split: str, seed: int = 0):
    return build_plan(
        seed, split, TINY[split], questions_per_scene=3, speech_ratio=0.5, renderings_per_text=2, video_fraction=0.6
    )


@pytest.fixture(scope="session")
def tiny_plan():
    """plan(split, seed=0): the plan of the tiny splits."""
    return _tiny_plan


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> dict:
    """{"train": Path, "heldout": Path}: tiny splits written to disk, eval sets included."""
    if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        pytest.skip("espeak-ng and sox (Debian packages) are required to synthesize speech")
    root = tmp_path_factory.mktemp("synth")
    out = {}
    for split in TINY:
        out[split] = root / split
        build_split(out[split], _tiny_plan(split), workers=2, progress=False)
        write_eval_sets(out[split])
    return out

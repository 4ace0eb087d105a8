"""A tiny synthetic-world pack (6 scenes, ~22 samples) shared by the default-model tests."""

from __future__ import annotations

import importlib.util
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="session")
def mini_pack(tmp_path_factory):
    from omni.synth.build import build_split
    from omni.synth.packing import write_pack
    from omni.synth.plan import build_plan

    root = tmp_path_factory.mktemp("world")
    plan = build_plan(0, "train", 6, questions_per_scene=3, speech_ratio=0.3, renderings_per_text=1, video_fraction=0.4)
    build_split(root / "train", plan, workers=1, progress=False)
    # no `omni data codes`: the bridge tokenizes the answers with the shipped codec itself
    write_pack(root / "train", root / "train.pack.npz", max_mb=None, progress=False)
    return root / "train.pack.npz"


@pytest.fixture
def load_bench():
    """bench/NAME.py as a module (bench/ holds scripts, not a package)."""
    def load(name: str):
        spec = importlib.util.spec_from_file_location(f"bench_{name}", os.path.join(ROOT, "bench", f"{name}.py"))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod

    return load

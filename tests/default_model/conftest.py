"""Tiny synthetic-world packs shared by the default-model tests: 6 scenes (~22 samples), and 4
scenes with requests for the world's tool."""

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


@pytest.fixture(scope="session")
def tool_world(tmp_path_factory):
    """A tiny split with as many requests for the world's tool as visual questions, its
    answer codes (and the codec's silent frame) and its pack: (root, plan, codec)."""
    from omni.synth.build import build_split
    from omni.synth.codes import encode_answers, load_codec
    from omni.synth.evalsets import write_eval_sets
    from omni.synth.packing import write_pack
    from omni.synth.plan import build_plan

    root = tmp_path_factory.mktemp("tool_world")
    plan = build_plan(0, "train", 4, questions_per_scene=2, speech_ratio=0.2, renderings_per_text=1, tool_ratio=1.0)
    build_split(root / "train", plan, workers=1, progress=False)
    write_eval_sets(root / "train")
    codec = load_codec()
    encode_answers(root / "train", codec, progress=False)
    write_pack(root / "train", root / "train.pack.npz", max_mb=None, progress=False)
    return root, plan, codec


@pytest.fixture
def load_bench():
    """bench/NAME.py as a module (bench/ holds scripts, not a package)."""
    def load(name: str):
        spec = importlib.util.spec_from_file_location(f"bench_{name}", os.path.join(ROOT, "bench", f"{name}.py"))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod

    return load

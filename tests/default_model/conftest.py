"""A tiny synthetic-world pack (6 scenes, ~22 samples) shared by the default-model tests."""

from __future__ import annotations

import pytest


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

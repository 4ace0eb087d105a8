"""bench/default_model.py runs end to end on a checkpoint directory (random weights:
the numbers are meaningless, the report's structure and counts are checked)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch


def test_bench_default_model_on_pack(tmp_path, mini_pack):
    from omni.config import get_omni_config
    from omni.model import OmniModel

    torch.manual_seed(0)
    OmniModel(get_omni_config("mini")).save_pretrained(tmp_path / "model")
    out = tmp_path / "report.json"
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    res = subprocess.run(
        [sys.executable, os.path.join(root, "bench", "default_model.py"), "--model", str(tmp_path / "model"),
         "--pack", str(mini_pack), "--limit", "3", "--max-steps", "8", "--threads", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=240, env=dict(os.environ, PYTHONPATH=root),
    )
    assert res.returncode == 0, res.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["source"] == "pack" and report["text"]["all"]["n"] == 3
    assert sum(v["n"] for k, v in report["text"].items() if k != "all") == 3
    assert len(report["samples"]) == 3 and all("text_ok" in s for s in report["samples"])
    assert "family" in res.stdout and "bars" in res.stdout


def test_partial_credit_measures():
    from omni.synth import heldout as m

    assert m.word_accuracy("what color is the square", "what color is the square") == 1.0
    assert m.word_accuracy("what color is the square", "what color the star") == 1 - 2 / 5  # one deletion, one swap
    assert m.word_accuracy("a b", "x y z w") == 0.0  # floored
    ref = "red circle top, blue star left"
    assert m.caption_f1(ref, "blue star left, red circle top") == 1.0  # order does not matter
    assert m.caption_f1(ref, "red circle top") == 2 * 1 / 3
    assert m.caption_f1(ref, "green square center") == 0.0


def test_bench_probes_transcribe_and_caption(tmp_path, mini_pack):
    from omni.config import get_omni_config
    from omni.model import OmniModel
    from omni.synth.pack import Pack

    torch.manual_seed(0)
    OmniModel(get_omni_config("mini")).save_pretrained(tmp_path / "model")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    pack = Pack(mini_pack)
    for question in ("transcribe", "caption"):
        out = tmp_path / f"{question}.json"
        res = subprocess.run(
            [sys.executable, os.path.join(root, "bench", "default_model.py"), "--model", str(tmp_path / "model"),
             "--pack", str(mini_pack), "--limit", "3", "--max-steps", "6", "--threads", "1", "--question", question,
             "--out", str(out)],
            capture_output=True, text=True, timeout=240, env=dict(os.environ, PYTHONPATH=root),
        )
        assert res.returncode == 0, res.stderr[-2000:]
        report = json.loads(out.read_text())
        part = report["partial_credit"]
        assert part["measure"] == ("word accuracy" if question == "transcribe" else "object F1")
        assert part["all"]["n"] == 3 and 0.0 <= part["all"]["mean"] <= 1.0
        refs = {s["reference"] for s in report["samples"]}
        if question == "transcribe":
            assert refs <= {pack.question_text(i) for i in range(len(pack))}
        else:  # one row per distinct scene, its caption the reference
            assert len(refs) == 3 and all(r.count(" ") >= 2 for r in refs)

"""bench/speech_follows_text.py: the forced text is what the reply's text stream carries, and the
report runs end to end on a checkpoint (random weights: the rates are meaningless, the structure
and the forcing are checked)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _bench():
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    try:
        import speech_follows_text
    finally:
        sys.path.pop(0)
    return speech_follows_text


def test_forced_text_replaces_the_first_tokens_then_lets_the_model_choose():
    from omni.segments import TextSampling

    sample = _bench().forced_text([7, 9])
    logits = torch.zeros(1, 16)
    logits[0, 3] = 1.0  # the model's own choice
    got = [int(sample(logits, TextSampling())[0]) for _ in range(4)]
    assert got == [7, 9, 3, 3]
    assert int(_bench().forced_text(None)(logits, TextSampling())[0]) == 3  # free


def test_bench_runs_and_forces_the_other_answer(tmp_path, mini_pack):
    from omni.config import get_omni_config
    from omni.model import OmniModel

    torch.manual_seed(0)
    OmniModel(get_omni_config("mini")).save_pretrained(tmp_path / "model")
    out = tmp_path / "report.json"
    res = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bench", "speech_follows_text.py"), "--model", str(tmp_path / "model"),
         "--data", str(mini_pack.parent / "train"), "-n", "8", "--max-steps", "12", "--threads", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=300, env=dict(os.environ, PYTHONPATH=ROOT),
    )
    assert res.returncode == 0, res.stderr[-2000:]
    report = json.loads(out.read_text())
    rows = report["rows"]
    assert rows and set(report["summary"]) == {"free", "own", "other"}
    assert report["summary"]["other"]["heard_other"]["all"]["n"] == len(rows)
    for r in rows:
        assert r["other_answer"] != r["answer"]
        # the forced answer is what the text stream starts with (the model may add to it)
        assert r["other"]["text"].startswith(r["other_answer"]) and r["own"]["text"].startswith(r["answer"])
    assert "heard = right answer" in res.stdout

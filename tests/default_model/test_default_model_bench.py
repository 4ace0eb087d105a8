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

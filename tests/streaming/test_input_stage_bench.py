"""bench/input_stage.py: a smoke run of the input stage's benchmark, its variants and loads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_input_stage_bench_smoke_run(tmp_path: Path):
    cmd = [sys.executable, str(ROOT / "bench" / "input_stage.py"), "--sessions", "1,3", "--seconds", "1",
           "--variants", "process,thread,before", "--load", "none,launches", "--switch-interval-ms", "1", "--out-dir", str(tmp_path), "--tag", "smoke"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    data = json.loads((tmp_path / "input_stage_smoke.json").read_text())
    assert (tmp_path / "input_stage_smoke.png").stat().st_size > 0
    rows = data["results"]
    names = ["process", "thread", "before"]
    assert [(x["sessions"], x["load"], x["variant"]) for x in rows] == [
        (n, load, v) for n in (1, 3) for load in ("none", "launches") for v in names]
    assert data["load_steps_per_s_alone"]["launches"] > 0 and data["switch_interval_ms"] == 1.0
    assert [x["load_share"] is None for x in rows] == [x["load"] == "none" for x in rows]
    assert [(x["stage"], x["gather_ms"] > 0) for x in rows[:3]] == [("process", True), ("thread", True), ("thread", False)]
    # every chunk came back: 25 per second per microphone (the last one may fall on the edge)
    for x in rows:
        assert 25 * x["sessions"] <= x["chunks"] <= 26 * x["sessions"], x
        assert x["latency_ms"]["p50"] > 0 and x["mean_batch"] >= 1 and x["worker_busy_share"] > 0
    assert "keeps up" in r.stdout


def test_the_baseline_resampler_gives_the_same_audio():
    """The bench's baseline is the resampler before its per-phase kernels: same outputs."""
    import importlib.util

    import numpy as np

    spec = importlib.util.spec_from_file_location("input_stage_bench", ROOT / "bench" / "input_stage.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    x = np.random.default_rng(0).standard_normal(5000).astype(np.float32)
    outs = []
    for make in mod.RESAMPLERS.values():
        r = make()(24000, 16000)
        outs.append(np.concatenate([r.process(x[i:i + 960]) for i in range(0, len(x), 960)] + [r.flush()]))
    np.testing.assert_allclose(outs[0], outs[1], atol=1e-6)

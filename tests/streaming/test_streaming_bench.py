"""A smoke run of bench/streaming.py with its clients in processes of their own, both input
stages side by side, and its report mode redrawing the table and plot from the JSON it wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_streaming_bench_with_client_processes_and_report(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "streaming.py"), "--flavor", "debug", "--sessions", "2", "--turns", "1",
         "--max-steps", "6", "--client-procs", "2", "--silence", "0.9", "--spread", "0.2",
         "--input-stage", "process,thread", "--out-dir", str(tmp_path),
         "--tag", "smoke"], capture_output=True, text=True, timeout=400, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    data = json.loads((tmp_path / "streaming_smoke.json").read_text())
    assert data["clients"] == "2 processes of their own"
    assert [(r["sessions"], r["speculative"], r["input_stage"], r["switch_interval_ms"]) for r in data["results"]] == [
        (2, spec, stage, 5.0) for spec in (True, False) for stage in ("process", "thread")]
    assert "input process / thread = " in run.stdout
    for r in data["results"]:
        # every session's reply came back from the client processes, with the server's path
        assert r["failed"] == [] and r["responses"] == 2
        assert r["first_audio_path_ms"]["total"]["n"] == 2
        assert r["first_audio_after_speech_end_ms"]["p50"] >= 600  # the VAD endpoint comes first
    (tmp_path / "streaming_smoke.png").unlink()
    rep = subprocess.run([sys.executable, str(ROOT / "bench" / "streaming.py"), "--report",
                          str(tmp_path / "streaming_smoke.json")], capture_output=True, text=True, timeout=120, env=env)
    assert rep.returncode == 0, rep.stderr[-3000:]
    assert "first-audio critical path" in rep.stdout and (tmp_path / "streaming_smoke.png").stat().st_size > 0


def test_begin_batch_bench_runs(tmp_path):
    """bench/begin_batch.py on a random `debug` model: both paths timed at every level."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = tmp_path / "begin.json"
    res = subprocess.run([sys.executable, os.path.join(root, "bench", "begin_batch.py"), "--flavor", "debug",
                          "--slots", "1,2", "--repeats", "1", "--threads", "1", "--out", str(out)],
                         capture_output=True, text=True, timeout=300, env=dict(os.environ, PYTHONPATH=root))
    assert res.returncode == 0, res.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert [r["slots"] for r in rows] == [1, 2]
    assert all(r[f"{w}_{p}_ms"] > 0 for r in rows for w in ("begin", "close") for p in ("one_by_one", "together"))
    assert "together ms" in res.stdout
    # the phases: a ViT pass for each turn's waiting camera frame and one prefill of every reply prompt
    assert all(set(r["begin_phases_ms"]) == {"camera frames", "audio flush", "prefill", "turn-end head"} for r in rows)
    assert all(r["begin_phases_ms"]["prefill"] > 0 and r["begin_phases_ms"]["camera frames"] > 0 for r in rows)
    assert rows[0]["begin_prefill_positions"] > 0
    assert rows[1]["begin_prefill_positions"] == 2 * rows[0]["begin_prefill_positions"]  # the same prompt each
    assert "by phase" in res.stdout

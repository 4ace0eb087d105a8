"""bench/train_throughput.py: every option has help, and a tiny CPU run of both paths
works with the modules the GPU image lacks made unimportable (what
bench/train_throughput_gpu.sh runs there must not need them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Python modules of what the GPU image lacks (espeak-ng is a program: phonemizer drives it)
MISSING_ON_GPU = ("av", "pocketsphinx", "silero_vad", "gradio", "websockets", "phonemizer", "espeakng")

_RUN_BLOCKED = """
import importlib.abc, runpy, sys
BLOCK = set(sys.argv[1].split(","))
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in BLOCK:
            raise ImportError(f"{name} is not installed on the GPU machine")
        return None
sys.meta_path.insert(0, Block())
sys.argv = ["bench/train_throughput.py"] + sys.argv[2:]
runpy.run_path("bench/train_throughput.py", run_name="__main__")
"""


def test_every_option_has_help(load_bench, capsys):
    mod = load_bench("train_throughput")
    with pytest.raises(SystemExit):
        mod.main(["--help"])
    text = capsys.readouterr().out
    for opt in ("--pack", "--stage", "--batch", "--paths", "--steps", "--warmup", "--breakdown", "--workers",
                "--prefetch", "--window", "--no-augment", "--compile", "--compile-mode", "--length-buckets",
                "--profile", "--top", "--trace-dir", "--samples", "--threads", "--device", "--out"):
        assert opt in text
    assert text.count("\n  --") >= 21


@pytest.mark.slow
def test_both_paths_run_without_the_gpu_images_missing_modules(mini_pack, tmp_path):
    out = tmp_path / "tt.json"
    env = dict(os.environ, PYTHONPATH=ROOT, HF_HUB_OFFLINE="1", MASTER_PORT="29941")
    res = subprocess.run(
        [sys.executable, "-c", _RUN_BLOCKED, ",".join(MISSING_ON_GPU), "--pack", str(mini_pack), "--device", "cpu",
         "--stage", "dialogue", "--batch", "2", "--steps", "1", "--warmup", "0", "--breakdown", "1", "--workers", "0",
         "--window", "2", "--threads", "1", "--paths", "loader,device_legacy,device", "--profile", "--top", "3",
         "--trace-dir", str(tmp_path / "traces"), "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    rep = json.loads(out.read_text())
    rows = {r["path"]: r for r in rep["rows"]}
    assert set(rows) == {"loader", "device", "device_legacy"} and not any("error" in r for r in rows.values()), rows
    dev, old = rows["device"], rows["loader"]
    assert dev["host_reads"] == 0  # inside a device step: no read of a tensor's value
    assert old["host_reads"] > 0  # the loader path's step reads several
    assert set(dev["phases_ms"]) == {"data", "encoders", "llm", "optimizer"}
    assert dev["llm_positions_per_step"] <= old["llm_positions_per_step"]
    assert "dialogue@2" in rep["speedup_device_over_loader"]
    assert "dialogue@2:device_legacy" in rep["speedup_device_over_loader"]
    # what the legacy arm sets back, and one profiled step per case (no kernels on CPU)
    assert dev["attention"] and dev["lengths_per_octave"] > 0
    assert rows["device_legacy"]["attention"] == [] and rows["device_legacy"]["lengths_per_octave"] == 0
    for r in rows.values():
        prof = r["profile"]
        assert prof["host_ops"] > 0 and len(prof["top_host_ops"]) == 3 and prof["wall_ms"] > 0
    assert len(list((tmp_path / "traces").glob("*.json.gz"))) == 3


@pytest.mark.slow
def test_attention_probe_runs_on_cpu(tmp_path):
    """bench/train_throughput_sdpa.py (the GPU script's first part) in its CPU smoke form."""
    out = tmp_path / "sdpa.json"
    res = subprocess.run([sys.executable, "bench/train_throughput_sdpa.py", "--device", "cpu", "--calls", "2",
                          "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert res.returncode == 0, res.stderr[-3000:]
    rep = json.loads(out.read_text())
    cases = {(c["case"], c["mode"]) for c in rep["cases"]}
    assert ("vit_masked", "default") in cases and ("llm_causal", "no_cudnn") in cases
    assert all(c["backend"] in ("flash", "efficient", "math", "cudnn") for c in rep["cases"])

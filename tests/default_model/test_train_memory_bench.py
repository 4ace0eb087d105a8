"""bench/train_memory.py: every option has help, and a tiny CPU run, with the modules the GPU
image lacks made unimportable, measures less kept with the layers recomputed and the same loss."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from test_train_throughput_bench import MISSING_ON_GPU, ROOT, _RUN_BLOCKED


def test_every_option_has_help(load_bench, capsys):
    mod = load_bench("train_memory")
    with pytest.raises(SystemExit):
        mod.main(["--help"])
    text = capsys.readouterr().out
    for opt in ("--pack", "--batch", "--scale-to", "--window", "--threads", "--device", "--out"):
        assert opt in text


@pytest.mark.slow
def test_recomputed_layers_keep_less_for_the_same_loss(mini_pack, tmp_path):
    out = tmp_path / "mem.json"
    env = dict(os.environ, PYTHONPATH=ROOT, HF_HUB_OFFLINE="1", MASTER_PORT="29947")
    script = _RUN_BLOCKED.replace("bench/train_throughput.py", "bench/train_memory.py")
    res = subprocess.run(
        [sys.executable, "-c", script, ",".join(MISSING_ON_GPU), "--pack", str(mini_pack), "--device", "cpu",
         "--batch", "4", "--window", "2", "--threads", "1", "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    rep = json.loads(out.read_text())
    kept, recomputed = rep["rows"]
    assert not kept["recompute"] and recomputed["recompute"]
    assert abs(kept["loss"] - recomputed["loss"]) <= 1e-5 * abs(kept["loss"])
    layers = [k for k in kept["parts"] if k.startswith("decoder layer")]
    assert len(layers) == 4 and "vision encoder" in kept["parts"] and "audio encoder" in kept["parts"]
    # what a recomputed layer keeps is its input: far less than its activations
    assert sum(recomputed["parts"].get(k, 0) for k in layers) < 0.1 * sum(kept["parts"][k] for k in layers)
    assert recomputed["kept_bytes"] < kept["kept_bytes"] and rep["kept_ratio"] < 0.6
    assert "recomputed / kept" in res.stdout

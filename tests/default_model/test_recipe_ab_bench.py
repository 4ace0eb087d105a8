"""bench/recipe_ab.py: arm parsing, the paired statistics and a two-arm smoke run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_parse_arm_keeps_commas_and_colons_in_values(load_bench):
    ab = load_bench("recipe_ab")
    assert ab.parse_arm("pre: encoder_steps=vision:600,audio:0; caption_weight=0") == (
        "pre", ["encoder_steps=vision:600,audio:0", "caption_weight=0"])
    assert ab.parse_arm("base: encoder_steps=") == ("base", ["encoder_steps="])
    assert ab.parse_arm("plain:") == ("plain", [])
    for bad in ("no colon", ": x=1", "a b: x=1", "arm: notakeyvalue"):
        with pytest.raises(ValueError):
            ab.parse_arm(bad)


def test_mcnemar_exact_values(load_bench):
    ab = load_bench("recipe_ab")
    assert ab.mcnemar_p(0, 0) == 1.0
    assert ab.mcnemar_p(3, 3) == 1.0
    # 0 vs 6 discordant: 2 * (1/64)
    assert ab.mcnemar_p(0, 6) == pytest.approx(2 / 64)
    assert ab.mcnemar_p(6, 0) == ab.mcnemar_p(0, 6)
    # 2 vs 10: 2 * sum_{i<=2} C(12, i) / 2^12 = 2 * 79 / 4096
    assert ab.mcnemar_p(2, 10) == pytest.approx(2 * 79 / 4096)


def test_paired_counts_and_refuses_different_samples(load_bench):
    ab = load_bench("recipe_ab")
    a = [{"id": i, "text_ok": ok} for i, ok in enumerate([1, 1, 0, 0, 1])]
    b = [{"id": i, "text_ok": ok} for i, ok in enumerate([1, 0, 1, 1, 1])]
    assert ab.paired(a, b) == {"only_first": 1, "only_this": 2, "mcnemar_p": 1.0}
    with pytest.raises(ValueError, match="different samples"):
        ab.paired(a, b[:4])


def test_two_arm_smoke_run(tmp_path, mini_pack):
    import socket

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    out = tmp_path / "ab.json"
    res = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bench", "recipe_ab.py"), "--train", str(mini_pack), "--heldout",
         str(mini_pack), "--recipe", "omni-mini-smoke", "--common", "stage_steps=speech:1,vision:1,dialogue:1",
         "--common", "stage_samples=8", "--arm", "base: encoder_steps=", "--arm", "pre: encoder_steps=vision:2,audio:0",
         "--limit", "4", "--work", str(tmp_path / "work"), "--out", str(out)],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
        # as left by an in-process run earlier in the session: its port is taken
        env=dict(os.environ, RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(busy.getsockname()[1])),
    )
    busy.close()
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    rep = json.loads(out.read_text())
    assert list(rep["arms"]) == ["base", "pre"] and rep["samples"] == 4
    assert "encoders" not in rep["arms"]["base"]
    assert rep["arms"]["pre"]["encoders"]["vision"]["steps"] == 2
    cmp = rep["arms"]["pre"]["vs_base"]
    assert cmp["only_first"] + cmp["only_this"] <= 4 and 0 <= cmp["mcnemar_p"] <= 1
    assert (tmp_path / "ab.png").stat().st_size > 1000
    assert "McNemar" in res.stdout

    # --reuse: the unchanged arm is evaluated again without training; the changed one trains
    res = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bench", "recipe_ab.py"), "--train", str(mini_pack), "--heldout",
         str(mini_pack), "--recipe", "omni-mini-smoke", "--common", "stage_steps=speech:1,vision:1,dialogue:1",
         "--common", "stage_samples=8", "--arm", "base: encoder_steps=", "--arm", "pre: encoder_steps=vision:1,audio:0",
         "--limit", "4", "--work", str(tmp_path / "work"), "--out", str(out), "--reuse"],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    rep2 = json.loads(out.read_text())
    assert rep2["arms"]["base"]["reused"] and not rep2["arms"]["pre"]["reused"]
    assert rep2["arms"]["base"]["train_s"] == rep["arms"]["base"]["train_s"]
    assert rep2["arms"]["pre"]["encoders"]["vision"]["steps"] == 1
    assert "base: reusing" in res.stdout and "pre: training" in res.stdout

"""Checkpoint/resume: a torchrun job (2 ranks, FSDP2 over dp 2) killed with SIGKILL
mid-run resumes from its last complete distributed checkpoint and then produces
bitwise the same losses as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from mdp.recipes import get_recipe
from mdp.synth import synthesize
from mdp.trainer import build_config

STEPS = 6


def _cmd(out_dir: str, manifest: str) -> list[str]:
    return [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone",
        "-m", "mdp.train", "--recipe", "debug", "--manifest", manifest, "--out-dir", out_dir,
        "--set", f"steps={STEPS}", "--set", "save_every=1", "--set", "keep_checkpoints=3",
        "--set", "dp=2", "--set", "seq_len=48", "--set", "plot=false",
    ]


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", CUDA_VISIBLE_DEVICES="")
    env["PYTHONPATH"] = os.getcwd() + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _losses(out_dir: str) -> dict[int, float]:
    with open(os.path.join(out_dir, "loss.json")) as fh:
        return {r["step"]: r["loss"] for r in json.load(fh)}


@pytest.mark.dist
@pytest.mark.slow
def test_resume_after_kill9_gives_identical_losses(tmp_path) -> None:
    manifest = synthesize(str(tmp_path / "data"), build_config(get_recipe("debug")), 12, 48, seed=5)
    full, cut = str(tmp_path / "full"), str(tmp_path / "cut")
    subprocess.run(_cmd(full, manifest), env=_env(), check=True, timeout=240, capture_output=True)

    proc = subprocess.Popen(_cmd(cut, manifest), env=_env(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpts = os.path.join(cut, "checkpoints")
    deadline = time.time() + 240
    while not os.path.isdir(os.path.join(ckpts, "step-1")):
        assert proc.poll() is None, "training exited before its second checkpoint"
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both ranks, no cleanup
    proc.wait(timeout=30)
    done = sorted(int(n.split("-")[1]) for n in os.listdir(ckpts) if n.startswith("step-") and "." not in n)
    assert done and max(done) < STEPS - 1, f"job was not interrupted mid-run (checkpoints {done})"

    subprocess.run(_cmd(cut, manifest), env=_env(), check=True, timeout=240, capture_output=True)
    a, b = _losses(full), _losses(cut)
    assert sorted(a) == sorted(b) == list(range(STEPS))
    resumed = range(max(done) + 1, STEPS)
    assert len(resumed) >= 1
    assert [b[s] for s in resumed] == [a[s] for s in resumed], "resumed losses differ from the uninterrupted run"

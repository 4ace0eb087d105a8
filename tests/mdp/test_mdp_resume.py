"""Checkpoint/resume: a 2-rank job (FSDP2 over dp 2, encoders sharded) killed with
SIGKILL mid-run resumes from its last complete distributed checkpoint and then
produces bitwise the same losses as an uninterrupted run.

The ranks run `mdp.train.run`, what torchrun's `-m mdp.train` calls, in processes of
`mdp.launch` (a fork server keeps start-up short on 2 cores).
"""

from __future__ import annotations

import json
import os
import time

import pytest

from mdp.launch import spawn, start
from mdp.recipes import get_recipe
from mdp.synth import synthesize
from mdp.trainer import build_config

STEPS = 4


def _recipe(out_dir: str, manifest: str, save_every: int):
    return get_recipe("debug").override([
        f"steps={STEPS}", f"save_every={save_every}", "keep_checkpoints=3", "dp=2", "enc_shard=2",
        "seq_len=48", "plot=false", f"out_dir={out_dir}", f"manifest={manifest}",
    ])


def _train(rank: int, world: int, out_dir: str, manifest: str, save_every: int = 1) -> list[float]:
    from mdp.train import run

    return [r["loss"] for r in run(_recipe(out_dir, manifest, save_every))]


def _losses(out_dir: str) -> dict[int, float]:
    with open(os.path.join(out_dir, "loss.json")) as fh:
        return {r["step"]: r["loss"] for r in json.load(fh)}


@pytest.mark.dist
@pytest.mark.slow
def test_resume_after_kill9_gives_identical_losses(tmp_path) -> None:
    manifest = synthesize(str(tmp_path / "data"), build_config(get_recipe("debug")), 12, 48, seed=5)
    full, cut = str(tmp_path / "full"), str(tmp_path / "cut")
    spawn(_train, 2, full, manifest, 0)  # uninterrupted, no checkpoints

    job = start(_train, 2, cut, manifest)
    ckpts = os.path.join(cut, "checkpoints")
    deadline = time.time() + 120
    while not os.path.isdir(os.path.join(ckpts, "step-1")):
        assert all(p.is_alive() for p in job.procs), "training exited before its second checkpoint"
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    job.kill()
    done = sorted(int(n.split("-")[1]) for n in os.listdir(ckpts) if n.startswith("step-") and "." not in n)
    assert done and max(done) < STEPS - 1, f"job was not interrupted mid-run (checkpoints {done})"

    resumed_losses = spawn(_train, 2, cut, manifest)  # resumes from the newest complete step
    a, b = _losses(full), _losses(cut)
    assert sorted(a) == sorted(b) == list(range(STEPS))
    resumed = list(range(max(done) + 1, STEPS))
    assert len(resumed_losses) == len(resumed) >= 1
    assert [b[s] for s in resumed] == [a[s] for s in resumed], "resumed losses differ from the uninterrupted run"


def test_fresh_start_in_a_used_directory_discards_the_earlier_steps(tmp_path, monkeypatch) -> None:
    """`--no-resume` over an earlier run's directory: saving its steps must not collide
    with the old ones (it once failed: 'Directory not empty'), and a later resume must
    continue this run, not the earlier run's newer step."""
    from mdp.train import init_distributed, run

    manifest = synthesize(str(tmp_path / "data"), build_config(get_recipe("debug")), 6, 48, seed=5)
    out = str(tmp_path / "run")

    def recipe(steps: int):
        return get_recipe("debug").override([f"steps={steps}", "save_every=1", "keep_checkpoints=2", "seq_len=48",
                                             "plot=false", f"out_dir={out}", f"manifest={manifest}"])

    import torch.distributed as dist

    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)  # a one-process group of its own, its variables undone after
    init_distributed()
    try:
        ckpts = os.path.join(out, "checkpoints")
        run(recipe(3))
        assert sorted(os.listdir(ckpts)) == ["step-1", "step-2"]
        run(recipe(3), resume=False, stop_after=1)  # afresh, stopped after step 0
        assert sorted(os.listdir(ckpts)) == ["step-0"]
        records = run(recipe(3))  # resumes this run at step 1
        assert [r["step"] for r in records] == [1, 2]
    finally:
        dist.destroy_process_group()

"""Distributed checkpoints with torch.distributed.checkpoint (DCP).

Each save writes `<dir>/step-<N>` through a temporary directory that rank 0
renames only after every rank finished writing, so a job killed at any instant
(`kill -9` included) leaves either a complete checkpoint or none: `latest_step`
never returns a half-written one.

What is saved: the model and optimizer state (`get_state_dict`, so FSDP2 /
DTensor shards, expert-parallel shards and pipeline stages each write their own
part under the model's fully-qualified names), the LR scheduler, non-parameter
training state (expert biases live in the model as buffers and come along), the
step, and the RNG states. The data order is a pure function of (seed, step), so
no iterator state is needed to resume the same stream.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_state_dict,
)
from torch.distributed.checkpoint.stateful import Stateful

_STEP = re.compile(r"^step-(\d+)$")


class _TrainState(Stateful):
    """Model + optimizer + scheduler + step, in one DCP-stateful object."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler, extra: dict) -> None:
        self.model, self.optimizer, self.scheduler, self.extra = model, optimizer, scheduler, extra

    def state_dict(self) -> dict:
        msd, osd = get_state_dict(self.model, self.optimizer, options=StateDictOptions(strict=False))
        return {"model": msd, "optim": osd, "sched": self.scheduler.state_dict(), "extra": dict(self.extra)}

    def load_state_dict(self, sd: dict) -> None:
        set_state_dict(
            self.model,
            self.optimizer,
            model_state_dict=sd["model"],
            optim_state_dict=sd["optim"],
            options=StateDictOptions(strict=False),
        )
        self.scheduler.load_state_dict(sd["sched"])
        self.extra.clear()
        self.extra.update(sd["extra"])


def latest_step(ckpt_dir: str) -> int | None:
    """Highest complete step under ckpt_dir, or None."""
    if not os.path.isdir(ckpt_dir):
        return None
    steps = [int(m.group(1)) for n in os.listdir(ckpt_dir) if (m := _STEP.match(n))]
    return max(steps) if steps else None


def discard(ckpt_dir: str) -> int:
    """Remove every step under ckpt_dir (one rank), saying so. For a run that starts afresh in a
    used directory: a later resume takes the newest step, which must be its own, and the
    pruning of old steps must not keep an earlier run's. Returns how many were removed."""
    if not os.path.isdir(ckpt_dir):
        return 0
    names = [n for n in os.listdir(ckpt_dir) if _STEP.match(n) or n.endswith(".tmp")]
    for n in names:
        shutil.rmtree(os.path.join(ckpt_dir, n), ignore_errors=True)
    if names:
        print(f"starting afresh: removed {len(names)} earlier checkpoint(s) from {ckpt_dir}", file=sys.stderr)
    return len(names)


def save(ckpt_dir: str, step: int, model, optimizer, scheduler, extra: dict, keep: int = 2) -> str:
    """Collective: every rank calls it. Returns the final directory."""
    final = os.path.join(ckpt_dir, f"step-{step}")
    tmp = final + ".tmp"
    if dist.get_rank() == 0:
        os.makedirs(ckpt_dir, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
    dist.barrier()
    state = _TrainState(model, optimizer, scheduler, extra)
    dcp.save({"train": state, "rng": _rng_state()}, checkpoint_id=tmp)
    dist.barrier()
    if dist.get_rank() == 0:
        os.replace(tmp, final)  # atomic: the step becomes visible only when complete
        old = sorted((int(m.group(1)) for n in os.listdir(ckpt_dir) if (m := _STEP.match(n))))
        for s in old[:-keep] if keep > 0 else []:
            shutil.rmtree(os.path.join(ckpt_dir, f"step-{s}"), ignore_errors=True)
    dist.barrier()
    return final


def save_step(ckpt_dir: str, step: int, trainer, extra: dict, keep: int) -> None:
    """Collective: the checkpoint of the state after `step` (a trainer's model, optimizer, scheduler)."""
    extra["step"] = step
    save(ckpt_dir, step, trainer.model, trainer.optimizer, trainer.scheduler, extra, keep=keep)


def load(ckpt_dir: str, step: int, model, optimizer, scheduler, extra: dict) -> None:
    """Collective: restore everything `save` wrote at `step` into the live objects."""
    path = os.path.join(ckpt_dir, f"step-{step}")
    if not os.path.isdir(path):
        raise FileNotFoundError(f"checkpoint {path} does not exist (complete steps: {latest_step(ckpt_dir)})")
    state = _TrainState(model, optimizer, scheduler, extra)
    rng = {"rng": _rng_state()}
    # partial load is for optimizer state only: a model key the checkpoint lacks (a
    # parameter the architecture gained since, e.g. the ViT's absolute position table)
    # would silently keep its fresh initialization
    saved = dcp.FileSystemReader(path).read_metadata().state_dict_metadata
    lost = [k for k in get_model_state_dict(model, options=StateDictOptions(strict=False))
            if f"train.model.{k}" not in saved]
    if lost:
        raise ValueError(f"checkpoint {path} has no value for {len(lost)} model key(s): {', '.join(lost[:5])}"
                         f"{' ...' if len(lost) > 5 else ''} (written by a model without them: train afresh, "
                         "or build the model with the configuration it was trained with)")
    # partial: parameters that never received a gradient (e.g. the audio encoder's CTC
    # head) have no optimizer state at save time, while a fresh optimizer lists them
    dcp.load({"train": state, **rng}, checkpoint_id=path, planner=DefaultLoadPlanner(allow_partial_load=True))
    _set_rng_state(rng["rng"])


def _rng_state() -> dict:
    # per-rank RNG: saved under a rank-specific key so each rank restores its own
    r = dist.get_rank()
    out = {f"cpu_{r}": torch.get_rng_state()}
    if torch.cuda.is_available():
        out[f"cuda_{r}"] = torch.cuda.get_rng_state()
    return out


def _set_rng_state(state: dict) -> None:
    r = dist.get_rank()
    torch.set_rng_state(state[f"cpu_{r}"])
    if torch.cuda.is_available() and f"cuda_{r}" in state:
        torch.cuda.set_rng_state(state[f"cuda_{r}"])

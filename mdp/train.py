"""Training entry point: `torchrun --nproc-per-node N -m mdp.train --recipe NAME`.

Also runs without torchrun as a single process (world size 1). Resumes from the
newest complete checkpoint in the recipe's checkpoint directory, logs the loss
to out_dir/loss.csv + loss.json every step and plots out_dir/loss.png at the end.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import socket
import sys
import time

import torch
import torch.distributed as dist

from mdp import checkpoint
from mdp.dims import device_for_rank
from mdp.loss import STAT_NAMES
from mdp.recipes import RECIPES, Recipe, get_recipe


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipe", default="debug", choices=sorted(RECIPES), help="named recipe (default: debug)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a recipe field, e.g. --set steps=10 --set pp=2 (repeatable)")
    p.add_argument("--steps", type=int, default=None, help="total steps (shortcut for --set steps=N)")
    p.add_argument("--out-dir", default=None, help="logs, plot and (default) checkpoints go here")
    p.add_argument("--manifest", default=None, help="JSON-lines manifest of interleaved samples")
    p.add_argument("--no-resume", action="store_true",
                   help="start afresh: remove the earlier checkpoints (and omni-mini stage sample lists) first")


def recipe_from_args(args: argparse.Namespace) -> Recipe:
    r = get_recipe(args.recipe).override(args.overrides)
    if args.steps is not None:
        r = r.override([f"steps={args.steps}"])
    if args.out_dir:
        r = r.override([f"out_dir={args.out_dir}"])
    if args.manifest:
        r = r.override([f"manifest={args.manifest}"])
    return r


def init_distributed() -> None:
    """From torchrun's environment, or a one-process group when run directly."""
    if dist.is_initialized():
        return
    if "RANK" not in os.environ:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)


def prepare_data(recipe: Recipe) -> str:
    """The recipe's manifest, or a synthetic one made by rank 0."""
    if recipe.manifest:
        return recipe.manifest
    from mdp.synth import synthesize
    from mdp.trainer import build_config

    data_dir = os.path.join(recipe.out_dir, "data")
    path = os.path.join(data_dir, "manifest.jsonl")
    if dist.get_rank() == 0 and not os.path.isfile(path):
        synthesize(data_dir, build_config(recipe), recipe.synthetic_samples, recipe.seq_len, recipe.seed,
                   tuple(m for m in recipe.modalities.split(",") if m))
    dist.barrier()
    return path


def run(recipe: Recipe, resume: bool = True, stop_after: int | None = None) -> list[dict]:
    """Train (collective on every rank); returns the per-step records of this invocation."""
    from mdp.trainer import Trainer

    device = device_for_rank()
    trainer = Trainer(recipe, device)
    trainer.attach_data(prepare_data(recipe))
    rank0 = dist.get_rank() == 0
    ckpt_dir = recipe.checkpoint_dir
    start = 0
    extra: dict = {"step": -1}
    if not resume:
        if rank0:
            checkpoint.discard(ckpt_dir)
        dist.barrier()
    last = checkpoint.latest_step(ckpt_dir) if resume else None
    if last is not None:
        checkpoint.load(ckpt_dir, last, trainer.model, trainer.optimizer, trainer.scheduler, extra)
        start = last + 1
    log = _Log(recipe.out_dir, start) if rank0 else None
    bar = None
    if rank0:
        from tqdm import tqdm

        bar = tqdm(total=recipe.steps, initial=start, desc=f"train {recipe.name}", unit="step", file=sys.stderr)
    records = []
    end = recipe.steps if stop_after is None else min(recipe.steps, stop_after)
    for step in range(start, end):
        records.append(logged_step(trainer, step, log if rank0 else None, bar if rank0 else None))
        if save_due(recipe, step):
            save_step(ckpt_dir, step, trainer, extra, recipe.keep_checkpoints)
    if rank0:
        bar.close()
        if recipe.plot:
            log.plot()
    return records


def logged_step(trainer, step: int, log: "_Log | None", bar) -> dict:
    """One training step, timed; rank 0 passes its log and progress bar."""
    t0 = time.perf_counter()
    rec = trainer.step(step)
    rec["seconds"] = time.perf_counter() - t0
    if log is not None:
        log.write(rec)
    if bar is not None:
        bar.update(1)
        bar.set_postfix(loss=f"{rec['loss']:.4f}")
    return rec


def save_due(recipe: Recipe, step: int) -> bool:
    """A periodic checkpoint after `step` (every `save_every` steps and at the last)."""
    return recipe.save_every > 0 and ((step + 1) % recipe.save_every == 0 or step + 1 == recipe.steps)


def save_step(ckpt_dir: str, step: int, trainer, extra: dict, keep: int) -> None:
    """Collective: the checkpoint of the state after `step`."""
    extra["step"] = step
    checkpoint.save(ckpt_dir, step, trainer.model, trainer.optimizer, trainer.scheduler, extra, keep=keep)


class _Log:
    """loss.csv / loss.json in out_dir; on resume, entries past the checkpoint are dropped."""

    FIELDS = ("step", "loss", "grad_norm", "lr", "llm_tokens", "seconds")

    def __init__(self, out_dir: str, start: int) -> None:
        os.makedirs(out_dir, exist_ok=True)
        self.json_path = os.path.join(out_dir, "loss.json")
        self.csv_path = os.path.join(out_dir, "loss.csv")
        self.png_path = os.path.join(out_dir, "loss.png")
        self.rows: list[dict] = []
        if start > 0 and os.path.isfile(self.json_path):
            with open(self.json_path) as fh:
                self.rows = [r for r in json.load(fh) if r["step"] < start]
        self._flush()

    def write(self, rec: dict) -> None:
        self.rows.append({k: rec[k] for k in self.FIELDS + STAT_NAMES if k in rec})
        self._flush()

    def _flush(self) -> None:
        with open(self.json_path, "w") as fh:
            json.dump(self.rows, fh, indent=1)
        # the per-term columns exist when the trainer measured them (not with pipeline stages)
        fields = self.FIELDS + tuple(k for k in STAT_NAMES if self.rows and k in self.rows[-1])
        with open(self.csv_path, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore", restval="")
            w.writeheader()
            w.writerows(self.rows)

    def plot(self) -> None:
        if not self.rows:
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot([r["step"] for r in self.rows], [r["loss"] for r in self.rows], marker=".")
        ax.set_xlabel("step")
        ax.set_ylabel("stage-1 loss")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(self.png_path, dpi=100)
        plt.close(fig)


def main(args: argparse.Namespace | None = None) -> int:
    if args is None:
        p = argparse.ArgumentParser(prog="python -m mdp.train", description=__doc__.splitlines()[0])
        add_arguments(p)
        args = p.parse_args()
    recipe = recipe_from_args(args)
    init_distributed()
    try:
        if recipe.curriculum:  # staged recipes (omni-mini) run their own stage loop
            from mdp.omni_mini import run_curriculum

            run_curriculum(recipe, resume=not args.no_resume)
        else:
            run(recipe, resume=not args.no_resume)
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Training entry point: `torchrun --nproc-per-node N -m mdp.train --recipe NAME`.

Also runs without torchrun as a single process (world size 1). Resumes from the
newest complete checkpoint in the recipe's checkpoint directory, logs the loss
to out_dir/loss.csv + loss.json every step and plots out_dir/loss.png at the end.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys

import torch
import torch.distributed as dist

from mdp import checkpoint
from mdp.dims import device_for_rank
from mdp.log import TrainLog, logged_step
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
    log = TrainLog(recipe.out_dir, start) if rank0 else None
    bar = None
    if rank0:
        from tqdm import tqdm

        bar = tqdm(total=recipe.steps, initial=start, desc=f"train {recipe.name}", unit="step", file=sys.stderr)
    records = []
    end = recipe.steps if stop_after is None else min(recipe.steps, stop_after)
    for step in range(start, end):
        records.append(logged_step(trainer, step, log if rank0 else None, bar if rank0 else None))
        if checkpoint.save_due(recipe, step):
            checkpoint.save_step(ckpt_dir, step, trainer, extra, recipe.keep_checkpoints)
    if rank0:
        bar.close()
        if recipe.plot:
            log.plot()
    return records


def main(args: argparse.Namespace | None = None) -> int:
    if args is None:
        p = argparse.ArgumentParser(prog="python -m mdp.train", description=__doc__.splitlines()[0])
        add_arguments(p)
        args = p.parse_args()
    recipe = recipe_from_args(args)
    init_distributed()
    try:
        if recipe.curriculum:  # staged recipes (omni-mini) run their own stage loop
            from mdp.curriculum.run import run_curriculum

            run_curriculum(recipe, resume=not args.no_resume)
        else:
            run(recipe, resume=not args.no_resume)
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())

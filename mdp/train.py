"""Training entry point: `torchrun --nproc-per-node N -m mdp.train --recipe NAME`.

Also runs without torchrun as a single process (world size 1). Resumes from the
newest complete checkpoint in the recipe's checkpoint directory; the steps run in
`mdp.loop.TrainLoop` (loss to out_dir/loss.csv + loss.json every step, out_dir/loss.png
at the end, checkpoints every `output.save_every` steps, stop at `budget.time_s`).
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
from mdp.loop import TrainLoop, deadline_after
from mdp.recipes import RECIPES, SECTIONS, Recipe, get_recipe


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipe", default="debug", choices=sorted(RECIPES), help="named recipe (default: debug)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a recipe field (repeatable): --set steps=10, --set parallel.pp=2, "
                        "--set curriculum.stage_steps.speech=300, --set heldout.pack=none; sections: "
                        + ", ".join(SECTIONS) + " (mdp/recipes.py)")
    p.add_argument("--steps", type=int, default=None, help="total steps (shortcut for --set steps=N)")
    p.add_argument("--out-dir", default=None, help="logs, plot and (default) checkpoints go here")
    p.add_argument("--manifest", default=None, help="JSON-lines manifest of interleaved samples")
    p.add_argument("--no-resume", action="store_true",
                   help="start afresh: remove the earlier checkpoints (and omni-mini stage sample lists) first")


def recipe_from_args(args: argparse.Namespace) -> Recipe:
    r = get_recipe(args.recipe).override(args.overrides)
    if args.steps is not None:
        r = r.replace(steps=args.steps)
    if args.out_dir:
        r = r.replace(output={"out_dir": args.out_dir})
    if args.manifest:
        r = r.replace(data={"manifest": args.manifest})
    return r


def _one_process_env() -> None:
    """The environment of a one-process group on a free local port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))


def init_distributed() -> None:
    """From torchrun's environment, or a one-process group when run directly."""
    if dist.is_initialized():
        return
    if "RANK" not in os.environ:
        _one_process_env()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)


def init_one_process(device: str) -> torch.device:
    """A one-process group for work on `device` ("cuda", "cuda:N" or "cpu": gloo on the CPU, also
    on a machine with a GPU), as the benchmarks run a trainer; returns the device (cuda:0 for
    "cuda")."""
    dev = torch.device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", dev.index or 0)
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        _one_process_env()
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", rank=0, world_size=1)
    return dev


def prepare_data(recipe: Recipe) -> str:
    """The recipe's manifest, or a synthetic one made by rank 0."""
    if recipe.data.manifest:
        return recipe.data.manifest
    from mdp.synth import synthesize
    from mdp.trainer import build_config

    data_dir = os.path.join(recipe.output.out_dir, "data")
    path = os.path.join(data_dir, "manifest.jsonl")
    if dist.get_rank() == 0 and not os.path.isfile(path):
        synthesize(data_dir, build_config(recipe), recipe.data.synthetic_samples, recipe.seq_len, recipe.seed,
                   recipe.data.modalities)
    dist.barrier()
    return path


def run(recipe: Recipe, resume: bool = True, stop_after: int | None = None) -> list[dict]:
    """Train (collective on every rank); returns the per-step records of this invocation."""
    from mdp.trainer import Trainer

    device = device_for_rank()
    trainer = Trainer(recipe, device)
    trainer.attach_data(prepare_data(recipe))
    ckpt_dir = recipe.checkpoint_dir
    start = 0
    extra: dict = {"step": -1}
    if not resume:
        if dist.get_rank() == 0:
            checkpoint.discard(ckpt_dir)
        dist.barrier()
    last = checkpoint.latest_step(ckpt_dir) if resume else None
    if last is not None:
        checkpoint.load(ckpt_dir, last, trainer.model, trainer.optimizer, trainer.scheduler, extra)
        start = last + 1
    out = recipe.output
    loop = TrainLoop(trainer, name=recipe.name, out_dir=out.out_dir, ckpt_dir=ckpt_dir, start=start,
                     steps=recipe.steps, save_every=out.save_every, keep_checkpoints=out.keep_checkpoints,
                     extra=extra, plot=out.plot, stop_after=stop_after, deadline=deadline_after(recipe.budget.time_s))
    loop.run()
    return loop.records


def main(args: argparse.Namespace | None = None) -> int:
    if args is None:
        p = argparse.ArgumentParser(prog="python -m mdp.train", description=__doc__.splitlines()[0])
        add_arguments(p)
        args = p.parse_args()
    recipe = recipe_from_args(args)
    init_distributed()
    try:
        if recipe.curriculum.kind:  # staged recipes (omni-mini) run their own stage loop
            from mdp.curriculum.run import run_curriculum

            run_curriculum(recipe, resume=not args.no_resume)
        else:
            run(recipe, resume=not args.no_resume)
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())

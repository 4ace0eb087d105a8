"""`omni train`: modality-decoupled parallel training (launches torchrun when N > 1).

    omni train --recipe debug --nproc-per-node 2 --set dp=2
    omni train --recipe debug --nproc-per-node 4 --set pp=2 --set ep=2 --set bridge_chunks=4

With --nproc-per-node 1 (the default) it trains in this process; with N > 1 it
runs `python -m torch.distributed.run --standalone --nproc-per-node N -m mdp.train ...`
(multi-node jobs call torchrun with `-m mdp.train` directly).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from omni.commands.argtypes import positive_int

from mdp import train


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nproc-per-node", type=positive_int, default=1, help="processes (GPUs, or CPU ranks with gloo)")
    train.add_arguments(p)


def _forward_args(args: argparse.Namespace) -> list[str]:
    out = ["--recipe", args.recipe]
    for o in args.overrides:
        out += ["--set", o]
    if args.steps is not None:
        out += ["--steps", str(args.steps)]
    if args.out_dir:
        out += ["--out-dir", args.out_dir]
    if args.manifest:
        out += ["--manifest", args.manifest]
    if args.no_resume:
        out.append("--no-resume")
    return out


def main(args: argparse.Namespace) -> int:
    try:  # validate the recipe before starting processes
        recipe = train.recipe_from_args(args)
    except (KeyError, ValueError) as e:
        raise argparse.ArgumentTypeError(e.args[0] if isinstance(e, KeyError) and e.args else str(e)) from None
    if recipe.data.manifest and not recipe.curriculum.kind and not os.path.isfile(recipe.data.manifest):
        raise argparse.ArgumentTypeError(f"argument --manifest: no such file: {recipe.data.manifest}")
    if args.nproc_per_node == 1:
        return train.main(args)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc-per-node={args.nproc_per_node}", "-m", "mdp.train", *_forward_args(args)]
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")  # N ranks share the cores
    return subprocess.call(cmd, env=env)

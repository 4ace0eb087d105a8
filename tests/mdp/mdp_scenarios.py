"""Run the distributed trainer under several parallel layouts inside one process group.

Each layout trains a few steps from the same seed on the same manifest and
returns its losses and its step-0 gradients gathered to full tensors on rank 0.
Reusing one spawned group for several layouts keeps the suite fast on 2 cores.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor

from mdp.recipes import Recipe
from mdp.trainer import Trainer


def full_grads(model) -> dict[str, torch.Tensor]:
    out = {}
    for n, p in model.named_parameters():
        if p.grad is None:
            continue
        g = p.grad.full_tensor() if isinstance(p.grad, DTensor) else p.grad
        out[n] = g.detach().clone().cpu()
    return out


def run_layouts(rank: int, world: int, base: Recipe, layouts: list[dict], manifest: str) -> list[dict]:
    results = []
    for lay in layouts:
        r = base.override([f"{k}={v}" for k, v in lay.items()])
        tr = Trainer(r, torch.device("cpu"))
        tr.attach_data(manifest)
        grads: dict = {}
        losses = []
        for step in range(r.steps):
            hook = (lambda m: grads.update(full_grads(m))) if step == 0 else None
            losses.append(tr.step(step, grad_hook=hook)["loss"])
        parts: list = [None] * world
        dist.all_gather_object(parts, grads)
        merged: dict = {}
        for part in parts:
            merged.update(part)
        results.append({"layout": lay, "losses": losses, "grads": merged, "backend": tr.expert_backend})
        del tr
    return results

"""Shared setup of the distributed tests: the recipe, a synthetic manifest, the reference run.

Tolerances (fp32, CPU): losses rel 1e-5 over all steps; step-0 gradients rel 1e-4 /
abs 1e-6 per tensor. Sharding changes reduction order, so layouts are not bitwise
equal to the reference; bitwise equality is asserted where only data movement
or scheduling changes (ModalityBridge chunks, EP overlap on/off, resume).
"""

from __future__ import annotations

import torch

from mdp.recipes import get_recipe
from mdp.synth import synthesize
from mdp.trainer import build_config

from mdp_reference import reference_run

BASE = get_recipe("debug").override(["steps=3", "global_batch=4", "seq_len=48", "expert_backend=bmm"])


def make_data_and_reference(tmp_dir: str):
    manifest = synthesize(tmp_dir, build_config(BASE), 12, BASE.seq_len, seed=3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ref = reference_run(BASE, manifest)
    finally:
        torch.set_num_threads(threads)
    return manifest, ref


def check_layout(res: dict, ref) -> None:
    ref_losses, ref_grads = ref
    lay = res["layout"]
    assert len(res["losses"]) == BASE.steps and len(ref_grads) > 50
    torch.testing.assert_close(
        torch.tensor(res["losses"]), torch.tensor(ref_losses), rtol=1e-5, atol=0, msg=lambda m: f"{lay}: losses {m}"
    )
    missing = set(ref_grads) - set(res["grads"])
    assert not missing, f"{lay}: no gradient for {sorted(missing)[:5]}"
    for n, g in ref_grads.items():
        torch.testing.assert_close(res["grads"][n], g, rtol=1e-4, atol=1e-6, msg=lambda m: f"{lay} {n}: {m}")

"""Each parallel layout of the trainer vs the single-process reference (CPU, gloo).

Tolerances (fp32): losses rel 1e-5 over all steps; step-0 gradients
rel 1e-4 / abs 1e-6 per tensor. Sharding changes the reduction order, so
equality is not bitwise across layouts; it is bitwise where only the data
movement changes (ModalityBridge chunk count, checked below and in test_bridge).
"""

from __future__ import annotations

import pytest
import torch

from mdp.launch import spawn
from mdp.recipes import get_recipe
from mdp.synth import synthesize
from mdp.trainer import build_config

from .reference import reference_run
from .scenarios import run_layouts

BASE = get_recipe("debug").override(["steps=3", "global_batch=4", "seq_len=48", "expert_backend=bmm"])

WORLD2 = [
    {"dp": 2, "enc_shard": 2},  # FSDP2 LLM over dp 2, encoders sharded over both ranks
    {"dp": 2, "ep": 2},  # dp x ep
    {"pp": 2, "microbatches": 2, "bridge_chunks": 1},  # pipeline, ModalityBridge over inner-DP 2
    {"pp": 2, "microbatches": 4, "bridge_chunks": 3},  # same, other chunking and more micro-batches
]
WORLD4 = [
    {"pp": 2, "dp": 2, "microbatches": 2, "enc_shard": 2},  # pp x dp, encoders HSDP (2 x 2)
    {"dp": 4, "ep": 2, "enc_shard": 4},  # dp_rest 2 x ep 2, encoders fully sharded
]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("mdp_data")
    manifest = synthesize(str(d), build_config(BASE), 12, BASE.seq_len, seed=3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ref = reference_run(BASE, manifest)
    finally:
        torch.set_num_threads(threads)
    return manifest, ref


def _check(res: dict, ref) -> None:
    ref_losses, ref_grads = ref
    lay = res["layout"]
    torch.testing.assert_close(
        torch.tensor(res["losses"]), torch.tensor(ref_losses), rtol=1e-5, atol=0, msg=lambda m: f"{lay}: losses {m}"
    )
    missing = set(ref_grads) - set(res["grads"])
    assert not missing, f"{lay}: no gradient for {sorted(missing)[:5]}"
    for n, g in ref_grads.items():
        torch.testing.assert_close(res["grads"][n], g, rtol=1e-4, atol=1e-6, msg=lambda m: f"{lay} {n}: {m}")


@pytest.mark.dist
def test_world2_layouts_match_reference(setup) -> None:
    manifest, ref = setup
    results = spawn(run_layouts, 2, BASE, WORLD2, manifest)
    for res in results:
        _check(res, ref)
    # the bridge and the micro-batch split only move data: pipeline runs with 1 and 3
    # chunks differ only in their micro-batching, so compare chunks via test_bridge;
    # here: the two pipeline layouts agree to fp32 rounding of the micro-batch sums
    torch.testing.assert_close(torch.tensor(results[2]["losses"]), torch.tensor(results[3]["losses"]), rtol=1e-6, atol=0)


@pytest.mark.dist
@pytest.mark.slow
def test_world4_layouts_match_reference(setup) -> None:
    manifest, ref = setup
    for res in spawn(run_layouts, 4, BASE, WORLD4, manifest):
        _check(res, ref)

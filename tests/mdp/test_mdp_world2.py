"""Two gloo ranks, one spawned group for everything (process start-up dominates on CPU):

* ModalityBridge round trip, bitwise equal for 1, 3 and 16 chunks;
* one ScMoE layer at EP = 2 vs the single-device layer, overlap on/off bitwise;
* the trainer under four layouts vs the single-process reference (see common.py):
  FSDP2 dp 2 with the encoders sharded over both ranks (HSDP 1 x 2), dp 2 x ep 2,
  and pipeline pp 2 (1F1B) with the bridge over inner-DP 2 at two micro-batch /
  chunk settings; and dp 2 once more with the trainer's default expert backend
  (grouped_mm where it runs) against the same bmm reference.
"""

from __future__ import annotations

import pytest
import torch

from mdp.launch import spawn

from mdp_common import BASE, check_layout, make_data_and_reference
from mdp_ep_check import ep_layer_check
from mdp_scenarios import run_layouts
from test_mdp_bridge import round_trip

LAYOUTS = [
    {"dp": 2, "enc_shard": 2},
    {"dp": 2, "ep": 2},
    {"pp": 2, "microbatches": 2, "bridge_chunks": 1},
    {"pp": 2, "microbatches": 4, "bridge_chunks": 3},
    {"dp": 2, "enc_shard": 2, "expert_backend": "auto"},
]


def _all(rank: int, world: int, manifest: str) -> dict:
    return {
        "bridge": round_trip(rank, world),
        "ep": ep_layer_check(rank, world),
        "layouts": run_layouts(rank, world, BASE, LAYOUTS, manifest),
    }


@pytest.fixture(scope="module")
def world2(tmp_path_factory):
    manifest, ref = make_data_and_reference(str(tmp_path_factory.mktemp("mdp2")))
    return spawn(_all, 2, manifest), ref


@pytest.mark.dist
def test_bridge_round_trip_bitwise_for_any_chunk_count(world2) -> None:
    res = world2[0]["bridge"]
    assert torch.equal(res[1], res[3]) and torch.equal(res[1], res[16])


@pytest.mark.dist
def test_ep2_layer_matches_single_device_and_overlap_is_bitwise(world2) -> None:
    assert world2[0]["ep"]["ok"]


@pytest.mark.dist
@pytest.mark.parametrize("i", range(len(LAYOUTS)), ids=[str(l) for l in LAYOUTS])
def test_layout_matches_reference(world2, i: int) -> None:
    results, ref = world2
    check_layout(results["layouts"][i], ref)


@pytest.mark.dist
def test_default_expert_backend_is_the_grouped_gemm_on_cpu(world2) -> None:
    from omni.llm.experts import grouped_mm_available

    want = "grouped_mm" if grouped_mm_available(torch.device("cpu"), torch.float32) else "bmm"
    assert world2[0]["layouts"][-1]["backend"] == want

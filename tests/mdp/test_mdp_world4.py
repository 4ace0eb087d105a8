"""Four gloo ranks: every parallelism at once vs the single-process reference.

pp 2 x dp 2 (1F1B, FSDP2) with ep 2 borrowed from dp, encoders HSDP (replicate 2 x
shard 2, so encoder and LLM sharding differ), ModalityBridge over inner-DP 2 in 2 chunks.
"""

from __future__ import annotations

import pytest

from mdp.launch import spawn

from mdp_common import BASE, check_layout, make_data_and_reference
from mdp_scenarios import run_layouts

LAYOUT = {"pp": 2, "dp": 2, "ep": 2, "microbatches": 2, "enc_shard": 2, "bridge_chunks": 2}


@pytest.mark.dist
@pytest.mark.slow
def test_pp_dp_ep_hsdp_matches_reference(tmp_path) -> None:
    manifest, ref = make_data_and_reference(str(tmp_path))
    (res,) = spawn(run_layouts, 4, BASE, [LAYOUT], manifest)
    check_layout(res, ref)

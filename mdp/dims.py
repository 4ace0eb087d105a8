"""Parallel dimensions and the named device meshes of modality-decoupled training.

The LLM and the encoders are parallelized differently over the same ranks:

* LLM:      world = dp x pp x cp; expert parallelism `ep` borrows from dp
            (dp = dp_rest x ep), as in torchtitan; ``inner_dp = pp x cp``.
* Encoders: world = enc_replicate x enc_shard (HSDP), every rank a distinct
            encoder data-parallel rank.

Rank layout is row-major over (dp, pp, cp): the ranks of one LLM DP group (one
`inner_dp` group) are contiguous, so encoder DP rank r belongs to LLM DP rank
r // inner_dp: the encoders of a DP group produce exactly the modality
embeddings that group's LLM consumes (the spec's one-to-one matching).

Context parallelism: `cp` is part of the layout and of `inner_dp`, but CP
attention (ring / all-gather KV over the cp group) and the hidden-split scatter of
the ModalityBridge to CP ranks are not implemented; `validate` rejects cp > 1 with
an error that says so (see the README section for exactly what is missing).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh


class ParallelConfigError(ValueError):
    """An impossible combination of parallel degrees."""


@dataclass(frozen=True)
class ParallelDims:
    world_size: int
    dp: int | None = None  # None: whatever is left after pp x cp
    pp: int = 1
    cp: int = 1
    ep: int = 1
    enc_shard: int | None = None  # HSDP shard group of the encoders; None: = inner_dp
    pp_microbatches: int = 0  # 0: = pp (the 1F1B minimum)

    def resolved(self) -> "ParallelDims":
        """Fill the unset (None) fields and check everything; raises ParallelConfigError."""
        w, pp, cp = self.world_size, self.pp, self.cp
        for name in ("world_size", "pp", "cp", "ep"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ParallelConfigError(f"parallel dim {name}={v!r} must be an int >= 1")
        if w % (pp * cp):
            raise ParallelConfigError(
                f"world_size={w} is not divisible by inner_dp = pp x cp = {pp} x {cp}"
            )
        dp = self.dp if self.dp is not None else w // (pp * cp)
        if dp < 1 or dp * pp * cp != w:
            raise ParallelConfigError(
                f"dp x pp x cp = {dp} x {pp} x {cp} = {dp * pp * cp} != world_size={w}"
            )
        if dp % self.ep:
            raise ParallelConfigError(
                f"ep={self.ep} must divide dp={dp}: expert parallelism borrows ranks from data parallelism"
            )
        if cp != 1:
            raise ParallelConfigError(
                f"cp={cp}: context parallelism is not implemented (ring attention over the cp group "
                "and the ModalityBridge hidden-split scatter are missing); use cp=1"
            )
        shard = self.enc_shard if self.enc_shard is not None else pp * cp
        if shard < 1 or w % shard:
            raise ParallelConfigError(f"enc_shard={shard} must be >= 1 and divide world_size={w}")
        mb = self.pp_microbatches or pp
        if pp > 1 and mb < pp:
            raise ParallelConfigError(
                f"pp_microbatches={mb} < pp={pp}: a 1F1B schedule needs at least one micro-batch per stage"
            )
        return ParallelDims(w, dp, pp, cp, self.ep, shard, mb)

    @property
    def inner_dp(self) -> int:
        return self.pp * self.cp

    @property
    def dp_rest(self) -> int:
        return self.dp // self.ep

    @property
    def enc_replicate(self) -> int:
        return self.world_size // self.enc_shard


class Meshes:
    """Named DeviceMeshes of one job (built once, collectives reuse their groups).

    llm:      ("dp_rest", "ep", "pp", "cp")
    dp:       1-D, the LLM data-parallel group (dp_rest x ep flattened)
    inner_dp: 1-D, pp x cp: the ranks sharing one LLM DP rank (ModalityBridge group)
    encoders: ("replicate", "shard") HSDP mesh over all ranks
    """

    def __init__(self, dims: ParallelDims, device_type: str) -> None:
        self.dims = dims = dims.resolved()
        self.device_type = device_type
        if dist.get_world_size() != dims.world_size:
            raise ParallelConfigError(
                f"process group has {dist.get_world_size()} ranks but ParallelDims.world_size={dims.world_size}"
            )
        self.llm: DeviceMesh = init_device_mesh(
            device_type,
            (dims.dp_rest, dims.ep, dims.pp, dims.cp),
            mesh_dim_names=("dp_rest", "ep", "pp", "cp"),
        )
        self.encoders: DeviceMesh = init_device_mesh(
            device_type,
            (dims.enc_replicate, dims.enc_shard),
            mesh_dim_names=("replicate", "shard"),
        )

    @cached_property
    def dp(self) -> DeviceMesh:
        return self.llm["dp_rest", "ep"]._flatten("dp")

    @cached_property
    def inner_dp(self) -> DeviceMesh:
        return self.llm["pp", "cp"]._flatten("inner_dp")

    @property
    def rank(self) -> int:
        return dist.get_rank()

    @property
    def dp_rank(self) -> int:
        return self.dp.get_local_rank()

    @property
    def inner_rank(self) -> int:
        return self.inner_dp.get_local_rank()

    @property
    def pp_rank(self) -> int:
        return self.llm.get_local_rank("pp")

    @property
    def ep_rank(self) -> int:
        return self.llm.get_local_rank("ep")

    def group(self, name: str) -> dist.ProcessGroup:
        if name == "dp":
            return self.dp.get_group()
        if name == "inner_dp":
            return self.inner_dp.get_group()
        return self.llm.get_group(name)


def device_for_rank() -> torch.device:
    """cuda:LOCAL_RANK when CUDA is present, else CPU (gloo)."""
    if torch.cuda.is_available():
        import os

        idx = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(idx)
        return torch.device("cuda", idx)
    return torch.device("cpu")

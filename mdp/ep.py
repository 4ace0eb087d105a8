"""Expert parallelism for the ScMoE layer, with the shortcut overlap.

`apply_expert_parallel(layer, ep_mesh, overlap)` shards the layer's FFN experts
over the `ep` mesh (DTensor Shard(0): rank r holds experts [r*E/ep, (r+1)*E/ep))
and gives its MoE an `AllToAllDispatcher` (omni/llm/moe.py: the MoE's token
dispatcher is a swappable sibling of its experts; the layer's code is untouched):

    start   route (fp32, local) -> plan_dispatch sorts the (token, slot) pairs by
            expert; pairs that chose a zero-computation expert stay here
            (identity x weight, added by the MoE's combine) -> dispatch all-to-all
    advance wait -> the local experts, by the same grouped kernels as one device
            (GroupedExperts.compute on this rank's shard) -> combine all-to-all
    finish  wait -> weighted sum over each token's slots (gather_pairs)

With `overlap=True` the exchanges hide behind the layer's other branch, as the
shortcut allows (LongCat's ScMoE / SGLang's single-batch overlap):

    x += MLA0(x);  y = norm(x)
    start: dispatch(y)         || x += MLP0(y)
    advance: experts, combine  || x += MLA1(x); x += MLP1(x)
    finish: x += wait combine

Backward overlaps the same way (see `mdp.ep_comm`). With `overlap=False` every
exchange is waited right away, in `start`: the same operations in the same order
on the same data, so outputs and gradients are bitwise identical on and off.

Gradients: expert parameters are not FSDP-managed; `sync_expert_grads` sums
their gradients over the `dp_rest` ranks that hold the same experts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import DTensor, Shard, distribute_tensor

from mdp.ep_comm import all_to_all_start, all_to_all_wait, exchange_counts
from omni.llm.experts import DispatchPlan, gather_pairs, plan_dispatch
from omni.llm.moe import MoE
from omni.llm.router import Routing


@dataclass
class _Exchange:
    """One MoE call of one rank between `start` and `finish`."""

    plan: DispatchPlan  # this rank's pairs sorted by global expert
    weights: torch.Tensor  # [M, K] routing weights
    pairs: torch.Tensor  # [n_sent] (token * K + slot) ids of the real pairs, in expert order
    in_splits: list[int]  # rows sent to each rank
    out_splits: list[int]  # rows received from each rank
    recv_expert: torch.Tensor  # [n_recv] local expert of each received row
    token: torch.Tensor | None = None  # the all-to-all in flight
    handle: object = None
    done: torch.Tensor | None = None  # combine received (overlap off: filled in `start`)


class AllToAllDispatcher(nn.Module):
    """Tokens go to the rank that holds their expert and come back (module doc)."""

    def __init__(self, group: dist.ProcessGroup, size: int, overlap: bool) -> None:
        super().__init__()
        self.group, self.size, self.overlap = group, size, overlap

    def start(self, moe: MoE, x: torch.Tensor, routing: Routing) -> _Exchange:
        k = routing.indices.shape[1]
        plan = plan_dispatch(routing.indices, moe.num_real)
        recv = exchange_counts(plan.counts, self.group)  # [ep * E_local] per source rank, per local expert
        per = moe.num_real // self.size
        sent, got = torch.stack([plan.counts, recv]).view(2, self.size, per).sum(-1).tolist()  # one host sync
        # received rows are source-major, expert-minor: each row's local expert
        local = torch.arange(per, device=x.device).repeat(self.size)
        recv_expert = local.repeat_interleave(recv, output_size=sum(got))
        pairs = plan.order[: sum(sent)]
        send = x.index_select(0, pairs // k)  # zero-expert pairs never leave the rank
        token, handle = all_to_all_start(send, self.group, sent, got)
        ex = _Exchange(plan, routing.weights, pairs, sent, got, recv_expert, token, handle)
        if not self.overlap:
            self._experts(moe, ex)
            ex.done = all_to_all_wait(ex.token, ex.handle)
        return ex

    def advance(self, moe: MoE, ex: _Exchange) -> None:
        if self.overlap:
            self._experts(moe, ex)

    def finish(self, moe: MoE, ex: _Exchange) -> torch.Tensor:
        got = ex.done if ex.done is not None else all_to_all_wait(ex.token, ex.handle)  # [n_sent, H], `pairs` order
        rows = F.pad(got, (0, 0, 0, ex.plan.rows - got.shape[0]))  # expert-major, as plan_dispatch laid them out
        return gather_pairs(rows, ex.plan, ex.weights)

    def _experts(self, moe: MoE, ex: _Exchange) -> None:
        recv = all_to_all_wait(ex.token, ex.handle)
        ex_mod = moe.experts
        ones = torch.ones(recv.shape[0], 1, dtype=torch.float32, device=recv.device)
        y = ex_mod.compute(recv, ex.recv_expert[:, None], ones, ex_mod.gate_up_proj.to_local(), ex_mod.down_proj.to_local())
        ex.token, ex.handle = all_to_all_start(y.to(recv.dtype), self.group, ex.out_splits, ex.in_splits)


def apply_expert_parallel(layer: nn.Module, ep_mesh: DeviceMesh, overlap: bool = True) -> None:
    """Shard `layer.mlp.experts` over ep_mesh and give the MoE the all-to-all dispatcher."""
    moe = layer.mlp
    ex = moe.experts
    ep = ep_mesh.size()
    if ex is None:
        raise ValueError("expert parallelism needs FFN experts (n_routed_experts > 0)")
    if ex.num_experts % ep:
        raise ValueError(f"n_routed_experts={ex.num_experts} is not divisible by ep={ep}")
    for name in ("gate_up_proj", "down_proj"):
        p = getattr(ex, name)
        if not isinstance(p, DTensor):
            setattr(ex, name, nn.Parameter(distribute_tensor(p.detach(), ep_mesh, [Shard(0)])))
    moe.dispatcher = AllToAllDispatcher(ep_mesh.get_group(), ep, overlap)


def expert_parameters(module: nn.Module) -> list[nn.Parameter]:
    """The expert-parallel parameters under `module`, in module order (the same on every rank)."""
    out: list[nn.Parameter] = []
    for m in module.modules():
        if isinstance(m, MoE) and isinstance(m.dispatcher, AllToAllDispatcher):
            out.extend(m.experts.parameters())
    return out


def sync_expert_grads(params: list[nn.Parameter], dp_rest_group: dist.ProcessGroup | None, divide: int) -> None:
    """Sum expert gradients over the ranks holding the same experts, then divide
    (the trainer scales the loss by dp so that FSDP's mean becomes a sum)."""
    for p in params:  # same order on every rank: the all-reduces must pair up
        if p.grad is None:
            continue
        g = p.grad.to_local() if isinstance(p.grad, DTensor) else p.grad
        if dp_rest_group is not None and dist.get_world_size(dp_rest_group) > 1:
            dist.all_reduce(g, group=dp_rest_group)
        if divide != 1:
            g.div_(divide)

"""BalanceData and ModalityBridge: moving modality work and embeddings across inner-DP ranks.

One LLM data-parallel rank spans `inner_dp = pp x cp` devices, but only inner rank 0
(pipeline stage 0) embeds the LLM input. Encoders, however, run on every device:

* BalanceData (phase 2) spreads the modality items that inner rank 0 loaded over
  all inner-DP ranks, balancing an estimated cost (greedy longest-processing-time,
  deterministic tie-breaks so every rank computes the same plan).
* ModalityBridge gathers the encoder outputs back to inner rank 0 (phase 2) and
  scatters their gradients back (phase 4), as a custom autograd Function. Transfers
  run in `num_chunks` slices of the hidden dimension, so the communication buffers
  hold 1/num_chunks of the embeddings at a time. The bridge only copies, so the
  result is bitwise identical for any chunk count.

The embeddings of all items are stored rank-major after the gather and then put
back into item order with global offsets (a differentiable index), so the LLM sees
items in the order of its sequence regardless of where they were encoded.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class BalancePlan:
    """Which inner-DP rank encodes which item (item ids ascending within a rank)."""

    assignment: tuple[tuple[int, ...], ...]  # [inner_rank] -> item ids
    costs: tuple[float, ...]  # per item

    def load(self, rank: int) -> float:
        return sum(self.costs[i] for i in self.assignment[rank])

    @property
    def max_load(self) -> float:
        return max(self.load(r) for r in range(len(self.assignment)))


def balance(costs: list[float], num_ranks: int) -> BalancePlan:
    """Greedy LPT: largest item first onto the currently least-loaded rank."""
    if num_ranks < 1:
        raise ValueError(f"balance: num_ranks={num_ranks} must be >= 1")
    if any(c < 0 for c in costs):
        raise ValueError("balance: item costs must be >= 0")
    loads = [0.0] * num_ranks
    buckets: list[list[int]] = [[] for _ in range(num_ranks)]
    for i in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        r = min(range(num_ranks), key=lambda r: (loads[r], r))
        loads[r] += costs[i]
        buckets[r].append(i)
    return BalancePlan(tuple(tuple(sorted(b)) for b in buckets), tuple(float(c) for c in costs))


class BalanceData:
    """Spread the items that inner rank 0 loaded over the inner-DP group."""

    def __init__(self, group: dist.ProcessGroup | None) -> None:
        self.group = group
        self.size = 1 if group is None else dist.get_world_size(group)
        self.rank = 0 if group is None else dist.get_rank(group)

    def distribute(self, items: list | None, costs: list[float] | None) -> tuple[BalancePlan, list]:
        """Inner rank 0 passes (items, costs); the others pass (None, None).

        Returns the plan (same on every rank) and this rank's items, in plan order.
        """
        if self.size == 1:
            assert items is not None and costs is not None
            return balance(costs, 1), list(items)
        if self.rank == 0:
            if items is None or costs is None or len(items) != len(costs):
                raise ValueError("BalanceData.distribute: inner rank 0 must pass items and one cost per item")
            plan = balance(costs, self.size)
            payload = [(plan, [items[i] for i in plan.assignment[r]]) for r in range(self.size)]
        else:
            payload = None
        out: list = [None]
        dist.scatter_object_list(out, payload, src=dist.get_global_rank(self.group, 0), group=self.group)
        plan, mine = out[0]
        return plan, mine


class _Gather(torch.autograd.Function):
    """local [n_r, H] on each inner rank -> [sum n_r, H] (rank-major) on inner rank 0."""

    @staticmethod
    def forward(ctx, local: torch.Tensor, counts: tuple[int, ...], group, num_chunks: int):  # type: ignore[override]
        ctx.counts, ctx.group, ctx.num_chunks = counts, group, num_chunks
        return _gather(local, counts, group, num_chunks)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return _scatter(grad.contiguous(), ctx.counts, ctx.group, ctx.num_chunks), None, None, None


def _chunks(hidden: int, num_chunks: int) -> list[tuple[int, int]]:
    step = -(-hidden // num_chunks)
    return [(lo, min(lo + step, hidden)) for lo in range(0, hidden, step)]


def _gather(local: torch.Tensor, counts, group, num_chunks: int) -> torch.Tensor:
    size, rank = dist.get_world_size(group), dist.get_rank(group)
    root = dist.get_global_rank(group, 0)
    hidden, n_max = local.shape[1], max(counts)
    offsets = [sum(counts[:r]) for r in range(size)]
    out = local.new_empty((sum(counts), hidden)) if rank == 0 else local.new_empty((0, hidden))
    for lo, hi in _chunks(hidden, num_chunks):
        send = local.new_zeros((n_max, hi - lo))
        send[: counts[rank]] = local[:, lo:hi]
        recv = [torch.empty_like(send) for _ in range(size)] if rank == 0 else None
        dist.gather(send, recv, dst=root, group=group)
        if rank == 0:
            for r in range(size):
                out[offsets[r] : offsets[r] + counts[r], lo:hi] = recv[r][: counts[r]]
        del send, recv  # only one chunk's buffers are alive at a time
    return out


def _scatter(grad: torch.Tensor, counts, group, num_chunks: int) -> torch.Tensor:
    size, rank = dist.get_world_size(group), dist.get_rank(group)
    root = dist.get_global_rank(group, 0)
    hidden, n_max = grad.shape[1], max(counts)
    offsets = [sum(counts[:r]) for r in range(size)]
    out = grad.new_empty((counts[rank], hidden))
    for lo, hi in _chunks(hidden, num_chunks):
        recv = grad.new_empty((n_max, hi - lo))
        send = None
        if rank == 0:
            send = []
            for r in range(size):
                buf = grad.new_zeros((n_max, hi - lo))
                buf[: counts[r]] = grad[offsets[r] : offsets[r] + counts[r], lo:hi]
                send.append(buf)
        dist.scatter(recv, send, src=root, group=group)
        out[:, lo:hi] = recv[: counts[rank]]
        del recv, send
    return out


class ModalityBridge:
    """Gather encoder outputs to inner rank 0 and scatter gradients back, in chunks."""

    def __init__(self, group: dist.ProcessGroup | None, num_chunks: int = 1) -> None:
        if num_chunks < 1:
            raise ValueError(f"ModalityBridge: num_chunks={num_chunks} must be >= 1")
        self.group = group
        self.num_chunks = num_chunks
        self.size = 1 if group is None else dist.get_world_size(group)
        self.rank = 0 if group is None else dist.get_rank(group)

    def gather(self, local: torch.Tensor, plan: BalancePlan, item_tokens: list[int]) -> torch.Tensor:
        """local: [tokens of my items, H] (items in plan order, each item's tokens contiguous).

        Returns, on inner rank 0, all items' tokens in item order [sum tokens, H];
        elsewhere an empty [0, H] tensor that still carries the autograd edge, so a
        `backward` on it takes part in the gradient scatter.
        """
        counts = tuple(sum(item_tokens[i] for i in plan.assignment[r]) for r in range(self.size))
        if local.dim() != 2 or local.shape[0] != counts[self.rank]:
            raise ValueError(
                f"ModalityBridge.gather: local embeddings {tuple(local.shape)} do not match the "
                f"{counts[self.rank]} tokens this rank's items have"
            )
        if self.size == 1:
            stacked = local
        else:
            stacked = _Gather.apply(local.contiguous(), counts, self.group, self.num_chunks)
        if self.rank != 0:
            return stacked
        # rank-major storage -> item order, using the global offset of every item
        src_offset, starts = 0, {}
        for r in range(self.size):
            for i in plan.assignment[r]:
                starts[i] = src_offset
                src_offset += item_tokens[i]
        index = torch.cat(
            [torch.arange(starts[i], starts[i] + item_tokens[i]) for i in range(len(item_tokens))]
        ) if item_tokens else torch.zeros(0, dtype=torch.long)
        return stacked.index_select(0, index.to(stacked.device))

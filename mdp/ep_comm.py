"""All-to-all token dispatch/combine for expert parallelism, as autograd-aware async pieces.

An all-to-all is split into two autograd Functions around a shared handle:

    buf = A2AStart.apply(x, h)    # launches all_to_all_single(async_op=True)
    ...independent compute...
    y   = A2AWait.apply(buf, h)   # waits

Backward mirrors it: A2AWait.backward launches the reverse all-to-all of the
gradient and returns at once; A2AStart.backward waits for it. The autograd
engine runs nodes in reverse creation order, so the compute recorded between
Start and Wait in the forward also runs between them in the backward: the
exchange overlaps with that compute in both directions. With NCCL the transfer
runs on NCCL's stream; with gloo on its worker thread. The data path is a copy,
so results are bitwise identical whether anything is overlapped or not.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


class A2AHandle:
    """Split sizes and the in-flight work of one all-to-all (forward and backward)."""

    def __init__(self, group: dist.ProcessGroup, in_splits: list[int], out_splits: list[int]) -> None:
        self.group, self.in_splits, self.out_splits = group, in_splits, out_splits
        self.work = None
        self.buf: torch.Tensor | None = None

    def launch(self, x: torch.Tensor, in_splits: list[int], out_splits: list[int]) -> torch.Tensor:
        out = x.new_empty((sum(out_splits),) + tuple(x.shape[1:]))
        self.work = dist.all_to_all_single(out, x.contiguous(), out_splits, in_splits, group=self.group, async_op=True)
        self.buf = out
        return out

    def wait(self) -> torch.Tensor:
        assert self.work is not None and self.buf is not None, "all-to-all waited before launch"
        self.work.wait()
        out, self.work, self.buf = self.buf, None, None
        return out


class A2AStart(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, h: A2AHandle) -> torch.Tensor:  # type: ignore[override]
        ctx.h = h
        h.launch(x, h.in_splits, h.out_splits)
        # placeholder output: carries the autograd edge; A2AWait returns the real data
        return x.new_empty((0,))

    @staticmethod
    def backward(ctx, _grad: torch.Tensor):  # type: ignore[override]
        return ctx.h.wait(), None


class A2AWait(torch.autograd.Function):
    @staticmethod
    def forward(ctx, token: torch.Tensor, h: A2AHandle) -> torch.Tensor:  # type: ignore[override]
        ctx.h = h
        return h.wait()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        h = ctx.h
        h.launch(grad, h.out_splits, h.in_splits)  # reverse direction
        return grad.new_empty((0,)), None


def all_to_all_start(x: torch.Tensor, group, in_splits: list[int], out_splits: list[int]) -> tuple[torch.Tensor, A2AHandle]:
    h = A2AHandle(group, in_splits, out_splits)
    return A2AStart.apply(x, h), h


def all_to_all_wait(token: torch.Tensor, h: A2AHandle) -> torch.Tensor:
    return A2AWait.apply(token, h)


def exchange_counts(counts: torch.Tensor, group) -> torch.Tensor:
    """counts [ep * E_local] tokens I send per global expert -> [ep * E_local] tokens each
    source rank sends to each of my local experts (source-major)."""
    out = torch.empty_like(counts)
    dist.all_to_all_single(out, counts, group=group)
    return out

"""Row-wise ragged tensor helpers for batched streaming.

A batch of streams is kept as a padded tensor [B, T, ...] plus a Python list of
valid lengths per row (Python ints: planning costs no device sync). Rows are
left-aligned; what lies past a row's length is unspecified and never read as
data. When every row has the same length the helpers fall back to plain slices.
"""

from __future__ import annotations

import torch


def _gather_time(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """x [B, T, *rest], idx [B, L] -> x[b, idx[b, l]]."""
    shape = idx.shape + x.shape[2:]
    return x.gather(1, idx.view(*idx.shape, *([1] * (x.dim() - 2))).expand(shape))


def concat_rows(a: torch.Tensor, a_len: list[int], b: torch.Tensor, b_len: list[int]) -> tuple[torch.Tensor, list[int]]:
    """Row-wise a[r, :a_len[r]] ++ b[r, :b_len[r]] (time is dim 1)."""
    out_len = [x + y for x, y in zip(a_len, b_len)]
    if len(set(a_len)) == 1 and len(set(b_len)) == 1 and a.shape[1] == a_len[0] and b.shape[1] == b_len[0]:
        return torch.cat([a, b], dim=1), out_len
    width = max(out_len) if out_len else 0
    both = torch.cat([a, b], dim=1)
    if width == 0 or both.shape[1] == 0:
        return both[:, :0], out_len
    k = torch.arange(width, device=a.device)[None]
    la = torch.tensor(a_len, device=a.device)[:, None]
    idx = torch.where(k < la, k, a.shape[1] + k - la).clamp_max(both.shape[1] - 1)
    return _gather_time(both, idx), out_len


def slice_rows(x: torch.Tensor, starts: list[int], lengths: list[int]) -> torch.Tensor:
    """Row-wise x[r, starts[r] : starts[r] + lengths[r]], left-aligned and padded."""
    width = max(lengths) if lengths else 0
    if len(set(starts)) == 1 and len(set(lengths)) == 1:
        return x[:, starts[0] : starts[0] + width]
    if width == 0 or x.shape[1] == 0:
        return x[:, :0]
    idx = (torch.tensor(starts, device=x.device)[:, None] + torch.arange(width, device=x.device)[None])
    return _gather_time(x, idx.clamp_max(x.shape[1] - 1))


def pad_rows(chunks: list[torch.Tensor]) -> tuple[torch.Tensor, list[int]]:
    """1-D tensors of different lengths -> padded [B, max_len] and the lengths."""
    lens = [int(c.shape[0]) for c in chunks]
    if len(set(lens)) == 1:
        return torch.stack(chunks), lens
    out = chunks[0].new_zeros(len(chunks), max(lens))
    for r, c in enumerate(chunks):
        out[r, : lens[r]] = c
    return out, lens

"""Per-forward attention context: positions, rope angles, and how each MLA
sublayer reads and writes the KV cache during one model call.

Built once per forward by `build_context` and shared by all sublayers, so the
position/mask arithmetic is done once, not 2 x num_layers times.

Modes:
* no cache - training / scoring over [B, T]; causal attention on the inputs.
* fresh prefill - every target slot is empty: expanded causal attention on the
  new tokens, which are also written to the cache.
* absorbed - anything that must read earlier entries (decode, chunked
  prefill): attention over cache rows [0, kv_len) with a causal mask
  `key_pos <= query_pos` per row.
Right-padded rows write their padding to the cache's trash row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from omni.llm.cache import MLACache
from omni.nn.rope import rope_angles


@dataclass
class ForwardContext:
    cos: torch.Tensor  # [B, T, rope / 2] fp32
    sin: torch.Tensor
    positions: torch.Tensor  # [B, T] long
    cache: MLACache | None = None
    slot_index: torch.Tensor | None = None  # [B] long
    slot_slice: slice | None = None  # set when the slots are a contiguous range: views, no gather
    write_pos: torch.Tensor | None = None  # [B, T] long; padding -> cache.trash_index
    absorbed: bool = False
    mask: torch.Tensor | None = None  # [B, T, kv_len] bool
    kv_len: int = 0

    def layer_kv(self, layer: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The cache tensors [slots, capacity + 1, D] of one layer's two MLA
        sublayers. Handed to the layer as arguments (not looked up by an int
        inside it) so one compiled layer body serves every layer."""
        if self.cache is None:
            return None, None
        return self.cache.kv[2 * layer], self.cache.kv[2 * layer + 1]

    def write(self, kv: torch.Tensor, latent: torch.Tensor) -> None:
        """Store latent [B, T, D] at this forward's slots / positions of kv."""
        assert self.write_pos is not None
        b, t = self.write_pos.shape
        latent = latent.to(kv.dtype)
        if self.slot_slice is not None:
            rows = torch.arange(b, device=latent.device)[:, None].expand(b, t)
            kv[self.slot_slice].index_put_((rows, self.write_pos), latent)
        else:
            assert self.slot_index is not None
            rows = self.slot_index[:, None].expand(b, t)
            kv.index_put_((rows, self.write_pos), latent)

    def read(self, kv: torch.Tensor) -> torch.Tensor:
        """[B, kv_len, D] cache rows of this forward's slots."""
        if self.slot_slice is not None:
            return kv[self.slot_slice, : self.kv_len]
        assert self.slot_index is not None
        return kv[:, : self.kv_len].index_select(0, self.slot_index)


def _as_slice(slots: Sequence[int]) -> slice | None:
    if len(slots) and list(slots) == list(range(slots[0], slots[0] + len(slots))):
        return slice(slots[0], slots[0] + len(slots))
    return None


def build_context(
    batch: int,
    seq: int,
    rope_dim: int,
    rope_theta: float,
    device: torch.device,
    *,
    positions: torch.Tensor | None = None,
    cache: MLACache | None = None,
    slots: Sequence[int] | None = None,
    lengths: torch.Tensor | None = None,
    host_lengths: Sequence[int] | None = None,
) -> ForwardContext:
    """Eager context. `lengths` [B] = valid new tokens per row (right padding);
    `host_lengths` the same numbers as a list, when the caller has them."""
    if cache is None:
        if positions is None:
            positions = torch.arange(seq, device=device)[None].expand(batch, seq)
        cos, sin = rope_angles(positions, rope_dim, rope_theta)
        return ForwardContext(cos=cos, sin=sin, positions=positions)

    if slots is None:
        slots = list(range(batch))
    slots = [int(s) for s in slots]
    if len(slots) != batch:
        raise ValueError(f"{len(slots)} slots given for a batch of {batch} rows")
    if len(set(slots)) != len(slots):
        raise ValueError(f"slots must be distinct, got {slots}")
    if host_lengths is not None:
        new = [int(n) for n in host_lengths]
    else:
        new = [seq] * batch if lengths is None else [int(n) for n in lengths.tolist()]
    if any(not 0 <= n <= seq for n in new):
        raise ValueError(f"lengths must lie in [0, {seq}], got {new}")
    cache.check_room(slots, new)
    starts_host = cache.host_lengths(slots)
    starts = torch.tensor(starts_host, dtype=torch.long, device=device)
    ar = torch.arange(seq, device=device)
    pos = starts[:, None] + ar[None]
    if positions is not None:
        pos = positions
    valid = ar[None] < (torch.tensor(new, device=device) if lengths is None else lengths)[:, None]
    write_pos = torch.where(valid, starts[:, None] + ar[None], torch.full_like(pos, cache.trash_index))
    cos, sin = rope_angles(pos, rope_dim, rope_theta)
    ctx = ForwardContext(
        cos=cos,
        sin=sin,
        positions=pos,
        cache=cache,
        slot_index=torch.tensor(slots, dtype=torch.long, device=device),
        slot_slice=_as_slice(slots),
        write_pos=write_pos,
    )
    if any(starts_host):
        # Some slot already holds tokens: attend over the cache (absorbed MLA).
        kv_len = max(s + n for s, n in zip(starts_host, new))
        kv_len = min(cache.capacity, max(1, -(-kv_len // 16) * 16))  # round up: fewer distinct shapes
        key = torch.arange(kv_len, device=device)
        ctx.absorbed = True
        ctx.kv_len = kv_len
        ctx.mask = key[None, None, :] <= (starts[:, None] + ar[None])[:, :, None]
    return ctx


def build_decode_context(
    cache: MLACache,
    slot_index: torch.Tensor,
    rope_dim: int,
    rope_theta: float,
    slot_slice: slice | None = None,
) -> ForwardContext:
    """Static-shape context for one decode step (T = 1) over `slot_index` [B].

    Everything is computed on the device from `cache.lengths`, so the step can
    be captured in a CUDA graph and replayed for any slots / lengths; attention
    spans the whole capacity with a mask. Pass `slot_slice` when the slots
    are a fixed contiguous range, to read the cache through views instead of
    gathering [B, capacity, D] per sublayer.
    """
    start = cache.lengths.index_select(0, slot_index)  # [B]
    pos = start[:, None]
    cos, sin = rope_angles(pos, rope_dim, rope_theta)
    key = torch.arange(cache.capacity, device=slot_index.device)
    return ForwardContext(
        cos=cos,
        sin=sin,
        positions=pos,
        cache=cache,
        slot_index=slot_index,
        slot_slice=slot_slice,
        write_pos=pos,
        absorbed=True,
        mask=(key[None, :] <= start[:, None])[:, None, :],
        kv_len=cache.capacity,
    )

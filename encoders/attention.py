"""Packed (variable-length) non-causal attention for the vision encoder.

Images and frame pairs of different sizes run as one packed sequence
[total_tokens, heads, head_dim] with `cu_seqlens` marking where each one starts;
no token attends across an image boundary and nothing is padded. Backends:

- ``varlen``: FlashAttention through ``torch.nn.attention.varlen.varlen_attn``
  (CUDA, fp16/bf16), one kernel for the whole pack;
- ``sdpa``: sequences of equal length are gathered into one batch and sent to
  ``scaled_dot_product_attention`` (any device, any dtype): one call per
  distinct length, which is few for camera frames and exact for tests.

``padded_attention`` is the baseline the benchmark compares against: every item
padded to the longest, with a key mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class PackInfo:
    """Where each sequence of a pack lives. Lengths are kept as Python ints so
    that attention can be planned without a device->host sync."""

    seqlens: list[int]
    cu_seqlens: torch.Tensor  # int32 [n + 1], on the compute device

    @classmethod
    def from_lengths(cls, seqlens: list[int], device: torch.device | str) -> "PackInfo":
        if not seqlens or min(seqlens) <= 0:
            raise ValueError(f"sequence lengths must be positive, got {seqlens}")
        cu = [0]
        for n in seqlens:
            cu.append(cu[-1] + n)
        return cls(list(seqlens), torch.tensor(cu, dtype=torch.int32, device=device))

    @property
    def total(self) -> int:
        return int(sum(self.seqlens))

    @property
    def max_seqlen(self) -> int:
        return max(self.seqlens)


def _varlen_available(q: torch.Tensor) -> bool:
    if q.device.type != "cuda" or q.dtype not in (torch.float16, torch.bfloat16):
        return False
    try:
        from torch.nn.attention.varlen import varlen_attn  # noqa: F401
    except ImportError:
        return False
    return True


def packed_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pack: PackInfo, backend: str = "auto"
) -> torch.Tensor:
    """q, k, v: [total, heads, head_dim] -> [total, heads, head_dim], block-diagonal."""
    if backend not in ("auto", "varlen", "sdpa"):
        raise ValueError(f"attention_backend must be auto, varlen or sdpa, got {backend!r}")
    q, k, v = _common_dtype(q, k, v)
    use_varlen = backend == "varlen" or (backend == "auto" and _varlen_available(q))
    if use_varlen:
        if not _varlen_available(q):
            raise RuntimeError(
                "attention_backend='varlen' needs CUDA tensors in fp16/bf16 and "
                "torch.nn.attention.varlen; use 'sdpa' or 'auto'"
            )
        from torch.nn.attention.varlen import varlen_attn

        m = pack.max_seqlen
        return varlen_attn(q, k, v, pack.cu_seqlens, pack.cu_seqlens, m, m)
    return _grouped_sdpa(q, k, v, pack)


def _common_dtype(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
    """One dtype for q, k, v. Under autocast, rotary embeddings and QK-norm leave
    q and k in float32 while v comes out of a bf16 linear: cast all three to the
    autocast dtype (what SDPA would do), so the output buffer matches and the
    fused varlen kernel (fp16/bf16 only) is used."""
    dt = q.dtype
    if torch.is_autocast_enabled(q.device.type):
        dt = torch.get_autocast_dtype(q.device.type)
    elif not (q.dtype == k.dtype == v.dtype):
        dt = torch.promote_types(torch.promote_types(q.dtype, k.dtype), v.dtype)
    return q.to(dt), k.to(dt), v.to(dt)


def _grouped_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pack: PackInfo) -> torch.Tensor:
    out = torch.empty_like(q)
    starts: dict[int, list[int]] = {}
    offset = 0
    for n in pack.seqlens:
        starts.setdefault(n, []).append(offset)
        offset += n
    for n, offs in starts.items():
        if len(offs) == 1:
            s = offs[0]
            idx = slice(s, s + n)
            # [n, H, d] -> [1, H, n, d]
            o = F.scaled_dot_product_attention(
                q[idx].transpose(0, 1)[None], k[idx].transpose(0, 1)[None], v[idx].transpose(0, 1)[None]
            )
            out[idx] = o[0].transpose(0, 1)
            continue
        # gather all equal-length sequences into one [G, H, n, d] batch
        base = torch.tensor(offs, device=q.device)[:, None] + torch.arange(n, device=q.device)
        flat = base.reshape(-1)
        g = len(offs)

        def gather(t: torch.Tensor) -> torch.Tensor:
            return t.index_select(0, flat).view(g, n, *t.shape[1:]).transpose(1, 2)

        o = F.scaled_dot_product_attention(gather(q), gather(k), gather(v))
        out.index_copy_(0, flat, o.transpose(1, 2).reshape(g * n, *q.shape[1:]))
    return out


def padded_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor
) -> torch.Tensor:
    """Baseline: q, k, v [B, L, heads, head_dim], key_mask bool [B, L] (True = real)."""
    mask = key_mask[:, None, None, :]  # broadcast over heads and queries
    o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask)
    return o.transpose(1, 2)

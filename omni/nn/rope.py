"""Rotary position embeddings (RoPE), computed on the fly from positions.

Angles are `position * theta ** (-2i / dim)` in fp32, exactly as transformers
computes them, so cos/sin match the reference bit for bit. Two pairings exist:

* interleaved (DeepSeek / LongCat MLA): pairs are (x0, x1), (x2, x3), ...
* half (Llama / ViT): pairs are (x_i, x_{i + dim/2}).

`apply_rope_interleaved` returns the rotated pairs de-interleaved
(`[even parts..., odd parts...]`), as transformers' LongCat code does. Queries
and keys get the same permutation, so attention scores are unchanged and the
layout of cached keys equals the reference's.
"""

from __future__ import annotations

import torch


def rope_inv_freq(dim: int, theta: float, device: torch.device | str | None = None) -> torch.Tensor:
    """Inverse frequencies [dim // 2] in fp32."""
    if dim % 2:
        raise ValueError(f"RoPE dimension must be even, got {dim}")
    return 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float32, device=device) / dim))


def rope_angles(positions: torch.Tensor, dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of shape positions.shape + [dim // 2], fp32."""
    inv = rope_inv_freq(dim, theta, positions.device)
    freqs = positions[..., None].float() * inv
    return freqs.cos(), freqs.sin()


def apply_rope_interleaved(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs of the last dim of x.

    x: [..., dim]; cos/sin broadcastable to [..., dim // 2]. Computed in fp32,
    returned in x.dtype, laid out as [rotated evens, rotated odds].
    """
    dtype = x.dtype
    xf = x.float()
    x1, x2 = xf[..., 0::2], xf[..., 1::2]
    out = torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)
    return out.to(dtype)


def apply_rope_half(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate-half RoPE: pairs (x_i, x_{i+dim/2}); cos/sin of width dim // 2."""
    dtype = x.dtype
    xf = x.float()
    half = xf.shape[-1] // 2
    x1, x2 = xf[..., :half], xf[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).to(dtype)

"""Vision projector (2x pixel-unshuffle + pre-norm two-layer MLP) and the visual
token cap by interpolation.

The 2x "pixel-unshuffle" merges adjacent column pairs: a unit's (h, w, D) patch
grid becomes (h, w/2, 2D). Patches are packed in raster order and every grid
width is even, so the merge is a plain reshape of the packed rows.
Keys match the official ``vision/vision_projector.pt``: ``p0.0`` (LayerNorm 2D),
``p0.1`` / ``p0.3`` (Linears), ``proj``.

The cap ("post-squeeze"): when the visual tokens of one request exceed a budget,
each unit's (h, w/2) token grid is bilinearly resized so the total fits.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from omni.config import VisionConfig


class VisionProjector(nn.Module):
    """[total_patches, D] packed -> [total_patches / 2, out_dim]."""

    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        d2, a = 2 * cfg.hidden_size, cfg.adaptor_dim
        self.p0 = nn.Sequential(nn.LayerNorm(d2), nn.Linear(d2, a), nn.GELU(), nn.Linear(a, a), nn.GELU())
        self.proj = nn.Linear(a, cfg.out_dim)

    def forward(self, x: torch.Tensor, grids: list[tuple[int, int]]) -> torch.Tensor:
        for h, w in grids:
            if w % 2:
                raise ValueError(f"vision projector needs an even grid width, got grid {h}x{w}")
        return self.proj(self.p0(x.reshape(x.shape[0] // 2, 2 * x.shape[1])))


def token_grid(grid: tuple[int, int]) -> tuple[int, int]:
    """Token grid after the 1x2 merge for a patch grid (h, w)."""
    return grid[0], grid[1] // 2


def capped_token_grids(token_grids: list[tuple[int, int]], max_tokens: int | None) -> list[tuple[int, int]]:
    """Token grids after the cap: unchanged when the total fits, else each grid is
    scaled (aspect kept, floor, at least 1x1) to its share total/ratio."""
    total = sum(h * w for h, w in token_grids)
    if max_tokens is None or total <= max_tokens:
        return list(token_grids)
    if max_tokens < len(token_grids):
        raise ValueError(f"token cap {max_tokens} is below one token per unit ({len(token_grids)} units)")
    ratio = total / max_tokens
    out = []
    for h, w in token_grids:
        scale = math.sqrt(1.0 / ratio)
        nh, nw = max(1, math.floor(h * scale)), max(1, math.floor(w * scale))
        out.append((nh, nw))
    # floors keep the sum under the cap unless many 1x1 clamps pile up; shave the largest
    while sum(h * w for h, w in out) > max_tokens:
        i = max(range(len(out)), key=lambda j: out[j][0] * out[j][1])
        h, w = out[i]
        out[i] = (h - 1, w) if h >= w else (h, w - 1)
    return out


def interpolate_tokens(emb: torch.Tensor, grid: tuple[int, int], new_grid: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of one unit's token embeddings [h*w, C] on its (h, w) grid."""
    if tuple(grid) == tuple(new_grid):
        return emb
    h, w = grid
    x = emb.reshape(1, h, w, -1).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=new_grid, mode="bilinear", align_corners=False)
    return x[0].permute(1, 2, 0).reshape(new_grid[0] * new_grid[1], -1).to(emb.dtype)


def cap_tokens(
    embeds: list[torch.Tensor], token_grids: list[tuple[int, int]], max_tokens: int | None
) -> tuple[list[torch.Tensor], list[tuple[int, int]]]:
    """Enforce a total token budget over all units of a request by interpolation."""
    new_grids = capped_token_grids(token_grids, max_tokens)
    return [interpolate_tokens(e, g, n) for e, g, n in zip(embeds, token_grids, new_grids)], new_grids

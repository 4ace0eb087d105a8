"""LongCat-ViT: the native-resolution vision transformer of LongCat-Flash-Omni.

Conv3d patch embedding over (time 2, 14, 14) patches (a still image is two
identical frames), 2D rotary position embedding on (row, col) patch ids, then
pre-norm layers with LayerScale: RMSNorm -> attention (qkv without bias, RoPE
then QK-RMSNorm over the full width, packed non-causal attention) and
RMSNorm -> SwiGLU with an inner RMSNorm. No final norm.

Parameter names are the keys of the official ``vision/vision_model.pt``
(``embeddings.patch_embedding.*``, ``encoder.layers.{i}.{norm1,norm2,attn.*,mlp.*,ls1,ls2}``),
so it loads with ``strict=True``.

Option (not in the official model): ``VisionConfig.abs_pos_grid = S > 0`` adds a
learned absolute position embedding to the patch embeddings, one key more
(``embeddings.position_embedding.weight`` [S * S, hidden]). RoPE only tells a
token where the others are relative to it: on a uniform background a shape
yields nearly the same tokens wherever it is. The S x S table spans the image
and is bilinearly resampled (``align_corners=False``) to each unit's (h, w)
grid, so "left" keeps its meaning at every native resolution; all frame pairs
of a video get the same table (their times reach the LLM as timestamps).

Input is packed: ``patches`` [total, 3*2*14*14] rows in (channel, time, y, x)
order, raster order of patches within each unit, and one (h, w) grid per unit.
``forward_dense`` takes units of one grid as a [U, P] batch (the training data of a
pack), with nothing made on the host and the same attention kernel on CUDA.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from encoders.attention import PackInfo, _common_dtype, _varlen_available, packed_attention, padded_attention
from omni.config import VisionConfig
from omni.nn import RMSNorm


@dataclass
class GridPositions:
    """(row, col) of every patch of a pack and the (h, w) of its unit: long [total] each."""

    rows: torch.Tensor
    cols: torch.Tensor
    heights: torch.Tensor
    widths: torch.Tensor

    @classmethod
    def of(cls, grids: list[tuple[int, int]], device: torch.device | str) -> "GridPositions":
        """Raster order within each unit, units one after another; one vectorized pass
        (no loop over units, no device->host sync)."""
        total = sum(int(h) * int(w) for h, w in grids)
        g = torch.tensor([(int(h), int(w)) for h, w in grids], dtype=torch.long, device=device).reshape(-1, 2)
        lens = g[:, 0] * g[:, 1]
        heights = torch.repeat_interleave(g[:, 0], lens, output_size=total)
        widths = torch.repeat_interleave(g[:, 1], lens, output_size=total)
        start = torch.repeat_interleave(torch.cumsum(lens, 0) - lens, lens, output_size=total)
        k = torch.arange(total, device=device) - start  # index within the unit
        return cls(k // widths, k % widths, heights, widths)

    @classmethod
    def of_grid(cls, h: int, w: int, device: torch.device | str) -> "GridPositions":
        """`of([(h, w)])` from device ops alone (`of` copies its grid list to the device:
        a blocking copy on CUDA)."""
        k = torch.arange(h * w, device=device)
        return cls(k // w, k % w, torch.full_like(k, h), torch.full_like(k, w))


class VisionRotaryEmbedding2D(nn.Module):
    """cos/sin tables for (row, col) patch positions.

    `dim` = head_dim / 2 frequencies per axis pair: row and column angles are
    concatenated (head_dim / 2 values) and duplicated to head_dim, so the
    rotate-half convention pairs channel i with i + head_dim / 2. Computed in fp32.
    """

    def __init__(self, dim: int, theta: float = 10000.0) -> None:
        super().__init__()
        inv_freq = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(
        self, grids: list[tuple[int, int]], device: torch.device, pos: GridPositions | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """[total, head_dim] cos and sin; `pos` (of these grids) saves recomputing them."""
        pos = GridPositions.of(grids, device) if pos is None else pos
        inv_freq = self.inv_freq.to(device)
        r = pos.rows.float()[:, None] * inv_freq
        c = pos.cols.float()[:, None] * inv_freq
        freqs = torch.cat([r, c], dim=-1)
        emb = torch.cat([freqs, freqs], dim=-1)  # [total, head_dim]
        return emb.cos(), emb.sin()


class VisionAbsolutePositionEmbedding(nn.Module):
    """Learned `side` x `side` table (`weight` [side * side, dim], row-major) resampled
    to each unit's grid exactly as ``F.interpolate(mode="bilinear", align_corners=False)``
    would, gathered per patch in one pass for a whole pack of mixed grids. At a grid of
    side x side the table is used as is (one entry per patch)."""

    def __init__(self, side: int, dim: int, std: float) -> None:
        super().__init__()
        self.side = side
        self.weight = nn.Parameter(torch.empty(side * side, dim))
        nn.init.normal_(self.weight, 0.0, std)

    @staticmethod
    def _axis(i: torch.Tensor, n: torch.Tensor, side: int):
        """Source taps of output index i in an axis of n (of `side` in the table)."""
        src = ((i.float() + 0.5) * (side / n.float()) - 0.5).clamp_min(0.0)
        lo = src.floor().long().clamp_max(side - 1)
        hi = (lo + 1).clamp_max(side - 1)
        return lo, hi, src - lo.float()

    def forward(self, pos: GridPositions) -> torch.Tensor:
        """[total, dim] in float32."""
        s = self.side
        y0, y1, fy = self._axis(pos.rows, pos.heights, s)
        x0, x1, fx = self._axis(pos.cols, pos.widths, s)
        idx = torch.stack([y0 * s + x0, y0 * s + x1, y1 * s + x0, y1 * s + x1], dim=-1)  # [total, 4]
        wts = torch.stack([(1 - fy) * (1 - fx), (1 - fy) * fx, fy * (1 - fx), fy * fx], dim=-1)
        taps = F.embedding(idx, self.weight).float()  # [total, 4, dim]
        return (wts[..., None] * taps).sum(1)  # elementwise: stays float32 under autocast


def dense_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """Non-causal attention within each of U units of P patches: q, k, v [U, P, heads,
    head_dim] -> the same shape. Where `packed_attention` would take the varlen flash
    kernel it takes it too (cumulative lengths made on the device, no mask); otherwise
    one SDPA call over the [U, heads, P, head_dim] batch, without a mask (a key mask of
    all-True keeps SDPA off flash attention)."""
    if backend not in ("auto", "varlen", "sdpa"):
        raise ValueError(f"attention_backend must be auto, varlen or sdpa, got {backend!r}")
    q, k, v = _common_dtype(q, k, v)
    u, p, h, d = q.shape
    if backend == "varlen" or (backend == "auto" and _varlen_available(q)):
        from torch.nn.attention.varlen import varlen_attn

        cu = torch.arange(0, (u + 1) * p, p, dtype=torch.int32, device=q.device)
        flat = lambda t: t.reshape(u * p, h, d)
        return varlen_attn(flat(q), flat(k), flat(v), cu, cu, p, p).reshape(u, p, h, d)
    o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return o.transpose(1, 2)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=-1)
    return torch.cat([-b, a], dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [..., tokens, heads, head_dim]; cos/sin [..., tokens, head_dim] (fp32)."""
    xf = x.float()
    out = xf * cos.unsqueeze(-2) + _rotate_half(xf) * sin.unsqueeze(-2)
    return out.to(x.dtype)


class VisionAttention(nn.Module):
    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        d = cfg.hidden_size
        self.num_heads = cfg.num_heads
        self.head_dim = cfg.head_dim
        self.backend = cfg.attention_backend
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.proj = nn.Linear(d, d, bias=True)
        if cfg.qk_normalization:
            self.q_norm = RMSNorm(d, eps=cfg.norm_eps)
            self.k_norm = RMSNorm(d, eps=cfg.norm_eps)
        else:
            self.q_norm = self.k_norm = None

    def _qkv(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        lead = x.shape[:-1]
        q, k, v = self.qkv(x).view(*lead, 3, self.num_heads, self.head_dim).unbind(-3)
        # RoPE first, then QK-norm over the flattened width (the checkpoint's order)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if self.q_norm is not None:
            q = self.q_norm(q.reshape(*lead, -1)).view_as(v)
            k = self.k_norm(k.reshape(*lead, -1)).view_as(v)
        return q, k, v

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, pack: PackInfo | None) -> torch.Tensor:
        """x [total, D] packed as `pack` says, or (pack None) [U, P, D]: U units of one size."""
        q, k, v = self._qkv(x, cos, sin)
        if pack is None:
            o = dense_attention(q, k, v, self.backend)
        else:
            o = packed_attention(q, k, v, pack, self.backend)
        return self.proj(o.reshape(x.shape))

    def forward_padded(self, x, cos, sin, key_mask):
        q, k, v = self._qkv(x, cos, sin)
        return self.proj(padded_attention(q, k, v, key_mask).reshape(x.shape))


class VisionMLP(nn.Module):
    """fc2(RMSNorm(silu(fc1 x) * fc3 x)), all Linears with bias."""

    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        d, inner = cfg.hidden_size, cfg.mlp_inner_size
        self.fc1 = nn.Linear(d, inner)
        self.fc3 = nn.Linear(d, inner)
        self.norm = RMSNorm(inner, eps=cfg.norm_eps)
        self.fc2 = nn.Linear(inner, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.norm(F.silu(self.fc1(x)) * self.fc3(x)))


class VisionLayer(nn.Module):
    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        d = cfg.hidden_size
        self.norm1 = RMSNorm(d, eps=cfg.norm_eps)
        self.attn = VisionAttention(cfg)
        self.norm2 = RMSNorm(d, eps=cfg.norm_eps)
        self.mlp = VisionMLP(cfg)
        self.ls1 = nn.Parameter(torch.full((d,), cfg.layerscale_init))
        self.ls2 = nn.Parameter(torch.full((d,), cfg.layerscale_init))

    def forward(self, x, cos, sin, pack: PackInfo | None) -> torch.Tensor:
        x = x + self.ls1 * self.attn(self.norm1(x), cos, sin, pack)
        return x + self.ls2 * self.mlp(self.norm2(x))

    def forward_padded(self, x, cos, sin, key_mask) -> torch.Tensor:
        x = x + self.ls1 * self.attn.forward_padded(self.norm1(x), cos, sin, key_mask)
        return x + self.ls2 * self.mlp(self.norm2(x))


class VisionEmbeddings(nn.Module):
    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        k = (cfg.temporal_patch_size, cfg.patch_size, cfg.patch_size)
        self.patch_embedding = nn.Conv3d(cfg.num_channels, cfg.hidden_size, kernel_size=k, stride=k, bias=True)
        # only when on: off, the keys and the random init for a seed are the official
        # model's as before (on, the modules after it draw other initial weights)
        self.position_embedding = (
            VisionAbsolutePositionEmbedding(cfg.abs_pos_grid, cfg.hidden_size, cfg.abs_pos_init_std)
            if cfg.abs_pos_grid > 0 else None
        )

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """Patch embeddings alone (no position): [..., patch_dim] -> [..., hidden]."""
        # kernel == stride over one patch: the Conv3d is exactly a Linear on the
        # flattened (c, t, y, x) row; run it as one GEMM.
        w = self.patch_embedding.weight
        return F.linear(patches.to(w.dtype), w.reshape(w.shape[0], -1), self.patch_embedding.bias)

    def positions(self, pos: GridPositions) -> torch.Tensor | None:
        """Absolute position embedding of every patch [total, hidden] (float32), None when off."""
        return None if self.position_embedding is None else self.position_embedding(pos)


class VisionTransformerEncoder(nn.Module):
    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        self.rotary_pos_emb = VisionRotaryEmbedding2D(cfg.head_dim // 2, cfg.rope_theta)
        self.layers = nn.ModuleList(VisionLayer(cfg) for _ in range(cfg.num_layers))


class LongCatViT(nn.Module):
    """Packed native-resolution ViT. forward(patches [total, patch_dim], grids) -> [total, D]."""

    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        if cfg.hidden_size % cfg.num_heads or cfg.head_dim % 4:
            raise ValueError(
                f"VisionConfig: hidden_size {cfg.hidden_size} / num_heads {cfg.num_heads} "
                "must give a head_dim divisible by 4 (2D RoPE)"
            )
        if cfg.abs_pos_grid < 0:
            raise ValueError(
                f"VisionConfig: abs_pos_grid must be >= 0 (0 = no absolute position), got {cfg.abs_pos_grid}"
            )
        self.cfg = cfg
        self.embeddings = VisionEmbeddings(cfg)
        self.encoder = VisionTransformerEncoder(cfg)

    def _check(self, patches: torch.Tensor, grids: list[tuple[int, int]]) -> None:
        if patches.dim() != 2 or patches.shape[1] != self.cfg.patch_dim:
            raise ValueError(f"patches must be [total, {self.cfg.patch_dim}], got {tuple(patches.shape)}")
        total = sum(h * w for h, w in grids)
        if total != patches.shape[0]:
            raise ValueError(f"grids cover {total} patches but {patches.shape[0]} were given")

    def forward(self, patches: torch.Tensor, grids: list[tuple[int, int]]) -> torch.Tensor:
        self._check(patches, grids)
        pack = PackInfo.from_lengths([h * w for h, w in grids], patches.device)
        pos = GridPositions.of(grids, patches.device)
        x = self.embeddings(patches)
        ape = self.embeddings.positions(pos)
        if ape is not None:
            x = x + ape.to(x.dtype)
        cos, sin = self.encoder.rotary_pos_emb(grids, patches.device, pos)
        for layer in self.encoder.layers:
            x = layer(x, cos, sin, pack)
        return x

    def forward_dense(self, patches: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """`forward(patches, [grid] * U)` for U units of one grid, as a [U, P, D] batch:
        no packing plan and nothing copied from the host (positions from device ops,
        one unit's tables broadcast over the units), the attention of
        `dense_attention`. Returns [U * P, D] (`forward`'s rows)."""
        h, w = int(grid[0]), int(grid[1])
        self._check(patches, [(h, w)] * (patches.shape[0] // max(1, h * w)))
        p = h * w
        u = patches.shape[0] // p
        pos = GridPositions.of_grid(h, w, patches.device)
        x = self.embeddings(patches).view(u, p, -1)
        ape = self.embeddings.positions(pos)
        if ape is not None:
            x = x + ape.to(x.dtype)
        cos, sin = self.encoder.rotary_pos_emb([(h, w)], patches.device, pos)  # [P, head_dim]: broadcast
        for layer in self.encoder.layers:
            x = layer(x, cos, sin, None)
        return x.reshape(u * p, -1)

    def forward_padded(self, patches: torch.Tensor, grids: list[tuple[int, int]]) -> torch.Tensor:
        """Baseline batching: every unit padded to the longest (pads cost full compute).

        Same input/output layout as `forward` (packed rows), so the two are comparable.
        """
        self._check(patches, grids)
        lens = [h * w for h, w in grids]
        b, m, dev = len(lens), max(lens), patches.device
        key_mask = torch.arange(m, device=dev)[None, :] < torch.tensor(lens, device=dev)[:, None]
        padded = patches.new_zeros(b, m, patches.shape[1])
        padded[key_mask] = patches
        pos = GridPositions.of(grids, dev)
        x = self.embeddings(padded)
        ape = self.embeddings.positions(pos)
        if ape is not None:
            apad = x.new_zeros(b, m, ape.shape[-1])
            apad[key_mask] = ape.to(x.dtype)
            x = x + apad
        cos, sin = self.encoder.rotary_pos_emb(grids, dev, pos)
        cpad = cos.new_zeros(b, m, cos.shape[-1])
        spad = sin.new_zeros(b, m, sin.shape[-1])
        cpad[key_mask], spad[key_mask] = cos, sin
        for layer in self.encoder.layers:
            x = layer.forward_padded(x, cpad, spad, key_mask)
        return x[key_mask]

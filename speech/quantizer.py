"""Vector quantizers of the codec.

Acoustic books follow the official `AutoGroupResidualVectorQuantize`: each of the
three residual stages projects its input twice to a few dims (`in_proj_a/b`),
searches two small codebooks by cosine similarity (both sides L2-normalized),
and emits one index a * S + b (S = sub-codebook size, 90 for LongCat: 0..8099).
Decoding takes the raw (un-normalized) codebook rows through `out_proj_a/b`,
each to half the latent width, concatenated.

The semantic book of our own codecs is the first residual stage (one codebook
of `semantic_codebook_size`), see `SemanticQuantizer`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from speech.layers import WNConv1d


def _nearest_cosine(latents: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """latents [B, d, T], codebook [K, d] -> indices [B, T] of the most similar row."""
    enc = F.normalize(latents.float().transpose(1, 2), dim=-1)  # [B, T, d]
    cb = F.normalize(codebook.float(), dim=-1)
    return (enc @ cb.t()).argmax(-1)


def _vq_losses(z_e: torch.Tensor, z_q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    commitment = F.mse_loss(z_e.float(), z_q.detach().float())
    codebook = F.mse_loss(z_q.float(), z_e.detach().float())
    return commitment, codebook


class _DeadCodeReviver:
    """Restarts codebook rows that no input chose for `patience` steps (training only).

    Without it a freshly initialized cosine codebook collapses: at the start the
    projected latents of all frames point the same way, one row wins every
    frame, and the codebook loss only ever moves that row (observed: 1 of 1024
    rows in use after 150 steps). A dead row is replaced by the projected latent
    of a random frame of the current batch, so the books follow the data.
    Tracking buffers are not persistent: state dicts keep the official layout.
    """

    def _init_tracking(self, names_sizes: list[tuple[str, int]]) -> None:
        for name, size in names_sizes:
            self.register_buffer(f"_last_used_{name}", torch.full((size,), -(10**9), dtype=torch.long), persistent=False)
        self._recent: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def _track(self, name: str, z_e: torch.Tensor, idx: torch.Tensor) -> None:
        if self.training:
            self._recent[name] = (z_e.detach(), idx.detach())

    @torch.no_grad()
    def revive_dead_codes(self, step: int, patience: int) -> int:
        """Mark this batch's used rows, restart rows unused for `patience` steps; returns how many."""
        revived = 0
        for name, (z_e, idx) in self._recent.items():
            last = getattr(self, f"_last_used_{name}")
            last[idx.flatten().unique()] = step
            dead = (step - last > patience).nonzero().flatten()
            if dead.numel():
                book: nn.Embedding = getattr(self, name)
                frames = z_e.float().transpose(1, 2).reshape(-1, z_e.shape[1])  # [B*T, d]
                pick = torch.randint(0, frames.shape[0], (dead.numel(),), device=frames.device)
                noise = 0.01 * frames.std(0) * torch.randn(dead.numel(), frames.shape[1], device=frames.device)
                book.weight.data[dead] = (frames[pick] + noise).to(book.weight.dtype)
                last[dead] = step
                revived += dead.numel()
        self._recent = {}
        return revived


class GroupVectorQuantize(_DeadCodeReviver, nn.Module):
    """One acoustic stage: two parallel factorized lookups, index a * S + b."""

    def __init__(self, input_dim: int, codebook_size: int, codebook_dim: int) -> None:
        super().__init__()
        if input_dim % 2:
            raise ValueError(f"codec_dimension must be even for grouped quantization, got {input_dim}")
        self.codebook_size_a = codebook_size
        self.codebook_size_b = codebook_size
        self.in_proj_a = WNConv1d(input_dim, codebook_dim, kernel_size=1)
        self.out_proj_a = WNConv1d(codebook_dim, input_dim // 2, kernel_size=1)
        self.in_proj_b = WNConv1d(input_dim, codebook_dim, kernel_size=1)
        self.out_proj_b = WNConv1d(codebook_dim, input_dim // 2, kernel_size=1)
        self.codebook_a = nn.Embedding(codebook_size, codebook_dim)
        self.codebook_b = nn.Embedding(codebook_size, codebook_dim)
        self._init_tracking([("codebook_a", codebook_size), ("codebook_b", codebook_size)])

    def forward(self, z: torch.Tensor):
        """z [B, D, T] -> (z_q [B, D, T], indices [B, T], commitment, codebook loss)."""
        z_a, z_b = self.in_proj_a(z), self.in_proj_b(z)
        idx_a = _nearest_cosine(z_a, self.codebook_a.weight)
        idx_b = _nearest_cosine(z_b, self.codebook_b.weight)
        self._track("codebook_a", z_a, idx_a)
        self._track("codebook_b", z_b, idx_b)
        q_a = self.codebook_a(idx_a).transpose(1, 2).to(z_a.dtype)
        q_b = self.codebook_b(idx_b).transpose(1, 2).to(z_b.dtype)
        ca, cba = _vq_losses(z_a, q_a)
        cb, cbb = _vq_losses(z_b, q_b)
        # straight-through: forward uses the codebook rows, backward reaches the encoder
        q_a = z_a + (q_a - z_a).detach()
        q_b = z_b + (q_b - z_b).detach()
        z_q = torch.cat([self.out_proj_a(q_a), self.out_proj_b(q_b)], dim=1)
        return z_q, idx_a * self.codebook_size_b + idx_b, ca + cb, cba + cbb

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """indices [B, T] (0 .. S*S-1) -> z_q [B, D, T]."""
        idx_a = torch.div(indices, self.codebook_size_b, rounding_mode="floor")
        idx_b = indices - idx_a * self.codebook_size_b
        q_a = self.codebook_a(idx_a).transpose(1, 2)
        q_b = self.codebook_b(idx_b).transpose(1, 2)
        return torch.cat([self.out_proj_a(q_a), self.out_proj_b(q_b)], dim=1)


class GroupResidualVectorQuantize(nn.Module):
    """The acoustic residual quantizer (`acoustic_quantizer.quantizers.{0,1,2}`)."""

    def __init__(self, input_dim: int, n_codebooks: int, codebook_size: int, codebook_dim: int) -> None:
        super().__init__()
        self.n_codebooks = n_codebooks
        self.quantizers = nn.ModuleList(
            GroupVectorQuantize(input_dim, codebook_size, codebook_dim) for _ in range(n_codebooks)
        )

    def forward(self, z: torch.Tensor):
        """z [B, D, T] -> (z_q [B, D, T], codes [B, N, T], commitment, codebook loss)."""
        z_q = torch.zeros_like(z)
        residual = z
        codes = []
        commit = z.new_zeros((), dtype=torch.float32)
        cbl = z.new_zeros((), dtype=torch.float32)
        for q in self.quantizers:
            zq_i, idx, c, b = q(residual)
            z_q = z_q + zq_i
            residual = residual - zq_i
            codes.append(idx)
            commit = commit + c
            cbl = cbl + b
        return z_q, torch.stack(codes, 1), commit, cbl

    def from_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, N, T] (N <= n_codebooks) -> z_q [B, D, T] (sum of the stages)."""
        z_q = 0
        for i in range(codes.shape[1]):
            z_q = z_q + self.quantizers[i].decode_indices(codes[:, i])
        return z_q


class SemanticQuantizer(_DeadCodeReviver, nn.Module):
    """First residual stage of our own codecs, used as the "semantic" book.

    Cosine search in `codebook_dim` dims; `out_proj` maps the chosen row to the
    decoder's semantic embedding (width `semantic_dim`) and `to_latent` maps that
    embedding back into the latent so the acoustic stages code the residual.
    The decoder's `semantic_dequantizer` table equals `out_proj(codebook)`
    (`embedding_table`), so decoding from indices gives exactly the training-time
    forward value.
    """

    def __init__(self, latent_dim: int, semantic_dim: int, codebook_size: int, codebook_dim: int) -> None:
        super().__init__()
        self.in_proj = WNConv1d(latent_dim, codebook_dim, kernel_size=1)
        self.codebook = nn.Embedding(codebook_size, codebook_dim)
        self.out_proj = WNConv1d(codebook_dim, semantic_dim, kernel_size=1)
        self.to_latent = WNConv1d(semantic_dim, latent_dim, kernel_size=1)
        self._init_tracking([("codebook", codebook_size)])

    def forward(self, z: torch.Tensor):
        """z [B, D, T] -> (semantic embedding [B, Ds, T], its latent [B, D, T], idx [B, T], commit, cb loss)."""
        z_e = self.in_proj(z)
        idx = _nearest_cosine(z_e, self.codebook.weight)
        self._track("codebook", z_e, idx)
        q = self.codebook(idx).transpose(1, 2).to(z_e.dtype)
        commit, cbl = _vq_losses(z_e, q)
        q = z_e + (q - z_e).detach()
        emb = self.out_proj(q)
        return emb, self.to_latent(emb), idx, commit, cbl

    def embedding_table(self) -> torch.Tensor:
        """[K, semantic_dim]: out_proj applied to every codebook row."""
        rows = self.codebook.weight.t().unsqueeze(0)  # [1, d, K]
        return self.out_proj(rows)[0].t().contiguous()


def revive_dead_codes(model: nn.Module, step: int, patience: int = 50) -> int:
    """Call after each training step: restarts dead rows of every codebook in `model`."""
    return sum(m.revive_dead_codes(step, patience) for m in model.modules() if isinstance(m, _DeadCodeReviver))

"""Attention kernels shared by the decoders: causal multi-head attention and
multi-query attention over one shared (latent) key/value head.

Both are plain functions over tensors (no parameters). Softmax is in fp32.

* `causal_attention` is the prefill / training path: torch's
  scaled_dot_product_attention with `is_causal`, which picks flash attention on
  GPUs. Flash needs equal q/k/v head sizes, so a narrower value is zero-padded
  to the query width on CUDA and the padding is sliced off afterwards.
* `mqa_attention` is the cached path: every head attends to the same keys
  (MLA's compressed cache, after the key/value up-projections are absorbed into
  the query and the output). It is two batched matmuls with an explicit
  boolean mask, so it takes static shapes (CUDA graphs) and arbitrary
  per-row lengths.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_NEG = torch.finfo(torch.float32).min


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """q, k: [B, H, T, Dqk]; v: [B, H, T, Dv] -> [B, H, T, Dv].

    Right padding needs no mask: a valid query only sees earlier positions,
    which are valid too; outputs at padded positions are meaningless.
    """
    dv = v.shape[-1]
    if q.is_cuda and dv != q.shape[-1] and dv < q.shape[-1]:
        v = F.pad(v, (0, q.shape[-1] - dv))
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
    return out[..., :dv] if out.shape[-1] != dv else out


def mqa_attention(
    q: torch.Tensor, kv: torch.Tensor, v_dim: int, mask: torch.Tensor, scale: float
) -> torch.Tensor:
    """Attention of H query heads over one shared key/value head.

    q:    [B, T, H, D]   queries (key width D)
    kv:   [B, S, D]      keys; the values are the first `v_dim` channels
    mask: [B, T, S] bool True where query t may attend to key s
    returns [B, T, H, v_dim] in q.dtype.
    """
    b, t, h, d = q.shape
    s = kv.shape[1]
    scores = torch.bmm(q.reshape(b, t * h, d), kv.transpose(1, 2)).view(b, t, h, s)
    scores = scores.float() * scale
    scores = scores.masked_fill(~mask[:, :, None, :], _NEG)
    probs = scores.softmax(dim=-1).to(kv.dtype)
    out = torch.bmm(probs.view(b, t * h, s), kv[:, :, :v_dim])
    return out.view(b, t, h, v_dim).to(q.dtype)

"""Input embedding of the omni model (spec 1.5).

One position's embedding is

    e = TextEmb(text_id) * [text_id != text_pad]  +  sum_k AudioEmb_k(codec_k) * [codec_k != codec_pad]

and a position whose text id is the pad and whose four codec ids are all pad
gets TextEmb(pad) (the original's rule). Negative ids (an "invalid" slot during
decoding) contribute zero. Continuous features then replace the positions of
`<|audio_pad|>` and `<|image_pad|>`, in order.

Parameter names follow the original `audio/audio_embeddings.pt`:
`audio_embeddings.{0..3}.weight` [audio_vocab, hidden].
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class AudioEmbedding(nn.Module):
    """Four codec-token embedding tables summed into the text embedding."""

    def __init__(self, num_codebooks: int, audio_vocab_size: int, hidden_size: int, codec_pad_id: int = 3) -> None:
        super().__init__()
        self.codec_pad_id = codec_pad_id
        self.audio_embeddings = nn.ModuleList(
            nn.Embedding(audio_vocab_size, hidden_size) for _ in range(num_codebooks)
        )

    def forward(self, codec: torch.Tensor) -> torch.Tensor:
        """codec [..., K] offset ids -> summed embeddings [..., hidden]."""
        out = None
        for k, table in enumerate(self.audio_embeddings):
            c = codec[..., k]
            keep = (c >= 0) & (c != self.codec_pad_id)
            e = table(c.clamp(min=0)) * keep.unsqueeze(-1).to(table.weight.dtype)
            out = e if out is None else out + e
        return out


def embed_rows(
    text_embedding: nn.Embedding,
    audio_embedding: AudioEmbedding,
    ids: torch.Tensor,
    codec: torch.Tensor,
    text_pad_id: int,
) -> torch.Tensor:
    """ids [..., L], codec [..., L, K] -> [..., L, hidden] (no feature replacement)."""
    pad = audio_embedding.codec_pad_id
    text = text_embedding(ids.clamp(min=0))
    keep_text = (ids >= 0) & (ids != text_pad_id)
    all_pad = (ids == text_pad_id) & (codec == pad).all(-1)
    keep_text = keep_text | all_pad
    return text * keep_text.unsqueeze(-1).to(text.dtype) + audio_embedding(codec).to(text.dtype)


def replace_features(
    embeds: torch.Tensor,
    ids: torch.Tensor,
    placeholder_id: int,
    features: Sequence[torch.Tensor],
    what: str = "feature",
) -> torch.Tensor:
    """Write `features` (concatenated, in order) into the placeholder positions.

    embeds [L, D] or [B, L, D] with ids of the same leading shape; for a batch the
    features are consumed row by row.
    """
    mask = ids == placeholder_id
    n = int(mask.sum())
    if not features:
        if n:
            raise ValueError(f"{n} {what} placeholder positions but no {what} features")
        return embeds
    feats = torch.cat([f.reshape(-1, embeds.shape[-1]) for f in features]).to(embeds.dtype)
    if feats.shape[0] != n:
        raise ValueError(f"{n} {what} placeholder positions but {feats.shape[0]} {what} feature rows")
    out = embeds.clone()
    out[mask] = feats
    return out

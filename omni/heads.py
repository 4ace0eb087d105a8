"""The four depth-conditioned audio heads (spec 1.5) and the exponential penalty.

Per decoding step, from the final post-norm hidden state h:

    c0 = argmax(penalize(W0 h));  acc = h + E0(c0)
    c1 = argmax(penalize(W1 acc)); acc += E1(c1)
    c2 = argmax(penalize(W2 acc)); acc += E2(c2)
    c3 = argmax(penalize(W3 acc))

Audio ids are codec values + `audio_id_offset` (32); 2 is the semantic
end-of-segment, 3 the pad. Ids a head can never legally produce (0-31 other
than the semantic EOS; acoustic ids past the acoustic codebook) are masked out.
Parameter names follow the original `audio/audio_output_layers.pt`:
`audio_output_layers.{0..3}.weight`, `embedding.{0..2}.weight`.
"""

from __future__ import annotations

import torch
from torch import nn

from omni.config import OmniConfig


def penalty_factors(history: torch.Tensor, alpha: float, vocab: int) -> torch.Tensor:
    """alpha^n per id, n = count of the id in `history` [..., W] (negative = empty)
    -> float32 [..., vocab]. One scatter over every row (and head) at once."""
    valid = history >= 0
    counts = torch.zeros(*history.shape[:-1], vocab, dtype=torch.float32, device=history.device)
    counts.scatter_add_(-1, history.clamp(min=0), valid.to(torch.float32))
    # the base as a device scalar made by a fill kernel: no host->device copy per call
    base = torch.full((), alpha, dtype=torch.float32, device=history.device)
    return torch.pow(base, counts)


def apply_penalty(logits: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """logit / factor if positive else logit * factor (float32)."""
    lf = logits.float()
    return torch.where(lf > 0, lf / factor, lf * factor)


def exponential_penalty(logits: torch.Tensor, history: torch.Tensor | None, alpha: float) -> torch.Tensor:
    """logit / alpha^n if positive else logit * alpha^n, n = count of the id in `history`.

    logits [N, V]; history [N, W] of ids (negative = empty slot).
    """
    if history is None or history.numel() == 0 or alpha == 1.0:
        return logits
    return apply_penalty(logits, penalty_factors(history, alpha, logits.shape[-1])).to(logits.dtype)


class AudioHead(nn.Module):
    """Four codebook heads with depth conditioning."""

    def __init__(self, cfg: OmniConfig) -> None:
        super().__init__()
        hidden = cfg.llm.hidden_size
        vocab = cfg.audio_vocab_size
        k = cfg.num_audio_heads
        self.num_heads = k
        self.offset = cfg.audio_id_offset
        self.eos_id = cfg.audio_eos_id
        self.pad_id = cfg.audio_pad_id
        self.audio_output_layers = nn.ModuleList(nn.Linear(hidden, vocab, bias=False) for _ in range(k))
        self.embedding = nn.ModuleList(nn.Embedding(vocab, hidden) for _ in range(k - 1))
        allowed = torch.zeros(k, vocab, dtype=torch.bool)
        sem = cfg.codec.semantic_codebook_size
        ac = cfg.codec.acoustic_codebook_size
        allowed[0, self.offset : self.offset + sem] = True
        allowed[0, self.eos_id] = True
        for i in range(1, k):
            allowed[i, self.offset : self.offset + min(ac, vocab - self.offset)] = True
        self.register_buffer("allowed", allowed, persistent=False)
        self.register_buffer("blocked", ~allowed, persistent=False)

    def forward(self, hidden: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits for training.

        hidden [..., D]; codes [..., K] the target offset ids of the same step
        (head k is conditioned on the targets of heads < k). Returns [..., K, V].
        """
        acc = hidden
        out = []
        for k, head in enumerate(self.audio_output_layers):
            out.append(head(acc))
            if k < self.num_heads - 1:
                c = codes[..., k]
                keep = (c >= 0) & (c != self.pad_id)
                acc = acc + self.embedding[k](c.clamp(min=0)) * keep.unsqueeze(-1).to(acc.dtype)
        return torch.stack(out, dim=-2)

    @torch.no_grad()
    def greedy(
        self,
        hidden: torch.Tensor,
        history: torch.Tensor | None = None,
        alpha: float = 1.1,
    ) -> torch.Tensor:
        """hidden [N, D]; history [N, K, W] past ids per head (-1 = empty) -> codes [N, K].

        All on the device, no host sync: the penalty factors of every row and head
        come from one scatter; each head is one matmul + elementwise + argmax over
        all rows (the heads are sequential only through the depth conditioning)."""
        factor = None
        if history is not None and history.numel() and alpha != 1.0:
            factor = penalty_factors(history.to(hidden.device), alpha, self.allowed.shape[-1])  # [N, K, V]
        acc = hidden
        codes = []
        for k, head in enumerate(self.audio_output_layers):
            logits = head(acc).float()
            if factor is not None:
                logits = apply_penalty(logits, factor[:, k])
            c = logits.masked_fill(self.blocked[k], float("-inf")).argmax(-1)
            codes.append(c)
            if k < self.num_heads - 1:
                acc = acc + self.embedding[k](c).to(acc.dtype)
        return torch.stack(codes, dim=-1)

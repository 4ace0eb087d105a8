"""Parameter counts of the backbone: total, and active per token.

Active parameters are those one token's forward reads: everything except the
input embedding table (one row is looked up) and the routed experts, plus
the FFN experts the token actually routes to. With zero-computation experts
that number varies per token between 0 and top-k FFN experts per layer, so
the range is reported (LongCat-Flash: 18.6B ... 31.3B of 560B).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from omni.config import LLMConfig


@dataclass
class ParamCount:
    total: int
    embedding: int
    per_expert: int  # parameters of one FFN expert
    experts_total: int  # all FFN experts of all layers
    num_layers: int
    top_k: int

    @property
    def dense(self) -> int:
        """Read by every token: all but the embedding table and the experts."""
        return self.total - self.embedding - self.experts_total

    def active(self, ffn_experts_per_layer: float) -> float:
        return self.dense + self.per_expert * self.num_layers * ffn_experts_per_layer

    @property
    def active_min(self) -> int:
        return int(self.active(0))

    @property
    def active_max(self) -> int:
        return int(self.active(self.top_k))

    def expected_active(self, cfg: LLMConfig) -> float:
        """Active count if routing ignored the expert kind: top-k * N / (N + Z)."""
        return self.active(cfg.moe_topk * cfg.n_routed_experts / cfg.num_experts_total)


def count_params(cfg: LLMConfig) -> ParamCount:
    """Count by building the model on the meta device (no memory, no init)."""
    from omni.llm.model import LongcatFlashForCausalLM

    with torch.device("meta"):
        model = LongcatFlashForCausalLM(cfg, init=False)
    total = sum(p.numel() for p in model.parameters())
    embedding = model.model.embed_tokens.weight.numel()
    experts_total = sum(p.numel() for n, p in model.named_parameters() if ".mlp.experts." in n)
    per_expert = 3 * cfg.hidden_size * cfg.expert_ffn_hidden_size if cfg.n_routed_experts else 0
    return ParamCount(total, embedding, per_expert, experts_total, cfg.num_layers, cfg.moe_topk)


def active_bytes_per_token(cfg: LLMConfig, bytes_per_param: int = 2) -> float:
    """Weights a batch-1 decode step reads on average (expected FFN experts),
    plus one embedding row: the numerator of the decode floor."""
    pc = count_params(cfg)
    return bytes_per_param * (pc.expected_active(cfg) + cfg.hidden_size)

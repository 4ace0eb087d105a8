"""One LongCat-Flash decoder layer: two MLA sublayers, two dense SwiGLU MLPs
and one shortcut-connected MoE (ScMoE), exactly as transformers'
LongcatFlashDecoderLayer:

    r = x;  x = r + MLA0(norm_in0(x))
    r = x;  y = norm_post0(x);  s = MoE(y);  x = r + MLP0(y)    # MoE starts here
    r = x;  x = r + MLA1(norm_in1(x))
    r = x;  x = r + MLP1(norm_post1(x)) + s                      # and joins here

The MoE branch is started with `mlp.start` right after the first attention,
advanced after MLP0 and joined with `mlp.finish` at the end, so an
expert-parallel MoE (mdp/ep.py) exchanges its tokens while MLP0 computes and
their results while MLA1 and MLP1 compute (omni/llm/moe.py).
"""

from __future__ import annotations

import torch
from torch import nn

from omni.config import LLMConfig
from omni.llm.attention import MLA
from omni.llm.context import ForwardContext
from omni.llm.fusion import SwiGLU
from omni.llm.moe import MoE
from omni.llm.norm import RMSNorm


class DecoderLayer(nn.Module):
    def __init__(self, cfg: LLMConfig, layer_idx: int) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.self_attn = nn.ModuleList([MLA(cfg, 2 * layer_idx + j) for j in (0, 1)])
        self.mlps = nn.ModuleList([SwiGLU(cfg.hidden_size, cfg.ffn_hidden_size) for _ in (0, 1)])
        self.mlp = MoE(cfg)
        eps = cfg.rms_norm_eps
        self.input_layernorm = nn.ModuleList([RMSNorm(cfg.hidden_size, eps) for _ in (0, 1)])
        self.post_attention_layernorm = nn.ModuleList([RMSNorm(cfg.hidden_size, eps) for _ in (0, 1)])

    def forward(
        self, x: torch.Tensor, ctx: ForwardContext, kv0: torch.Tensor | None = None, kv1: torch.Tensor | None = None
    ) -> torch.Tensor:
        """kv0 / kv1: the cache tensors of the two MLA sublayers (ctx.layer_kv)."""
        x = x + self.self_attn[0](self.input_layernorm[0](x), ctx, kv0)
        y = self.post_attention_layernorm[0](x)
        pending = self.mlp.start(y)  # shortcut branch starts after the first attention
        x = x + self.mlps[0](y)
        self.mlp.advance(pending)  # expert parallelism: the local experts compute here
        x = x + self.self_attn[1](self.input_layernorm[1](x), ctx, kv1)
        x = x + self.mlps[1](self.post_attention_layernorm[1](x))
        return x + self.mlp.finish(pending)

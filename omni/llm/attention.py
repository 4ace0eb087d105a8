"""Multi-head Latent Attention (MLA) of LongCat-Flash (DeepSeek-V2/V3 style).

    q      = q_b_proj(q_a_layernorm(q_a_proj(x)))            [B, T, H, nope + rope]
    c, kr  = kv_a_proj_with_mqa(x)                           [B, T, kv_lora], [B, T, rope]
    c      = kv_a_layernorm(c)
    q     *= sqrt(hidden / q_lora_rank)     (mla_scale_q_lora)
    c     *= sqrt(hidden / kv_lora_rank)    (mla_scale_kv_lora)
    q_rope, kr <- interleaved RoPE; kr is one head shared by all heads
    k_nope, v = kv_b_proj(c)                                 per head
    out    = o_proj(softmax(q . k / sqrt(nope + rope)) v)

Only (c, kr) is cached. Two ways to attend:

* expanded (no cache, or prefill into empty slots): K/V are expanded with
  kv_b_proj and fed to causal SDPA (flash attention on GPUs);
* absorbed (anything that reads earlier cache entries: decode, chunked
  prefill): kv_b_proj is folded into the query (k_nope part) and the output
  (v part), so every head attends directly to the latent cache as multi-query
  attention. No per-head K/V is ever materialized for the context.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from omni.config import LLMConfig
from omni.llm.context import ForwardContext
from omni.llm.norm import RMSNorm
from omni.nn.attention import causal_attention, mqa_attention
from omni.nn.rope import apply_rope_interleaved


class MLA(nn.Module):
    """One MLA sublayer. `sublayer` is its index in the KV cache (2 per layer);
    forward() takes the cache tensor itself, so the index is never read there."""

    def __init__(self, cfg: LLMConfig, sublayer: int) -> None:
        super().__init__()
        self.sublayer = sublayer
        self.num_heads = cfg.num_attention_heads
        self.nope = cfg.qk_nope_head_dim
        self.rope = cfg.qk_rope_head_dim
        self.v_dim = cfg.v_head_dim
        self.qk_dim = cfg.qk_head_dim
        self.kv_lora_rank = cfg.kv_lora_rank
        h = cfg.hidden_size
        self.q_a_proj = nn.Linear(h, cfg.q_lora_rank, bias=False)
        # transformers builds both LoRA norms with its default eps (1e-6), not rms_norm_eps.
        self.q_a_layernorm = RMSNorm(cfg.q_lora_rank, eps=1e-6)
        self.q_b_proj = nn.Linear(cfg.q_lora_rank, self.num_heads * self.qk_dim, bias=False)
        self.kv_a_proj_with_mqa = nn.Linear(h, cfg.kv_lora_rank + self.rope, bias=False)
        self.kv_a_layernorm = RMSNorm(cfg.kv_lora_rank, eps=1e-6)
        self.kv_b_proj = nn.Linear(cfg.kv_lora_rank, self.num_heads * (self.nope + self.v_dim), bias=False)
        self.o_proj = nn.Linear(self.num_heads * self.v_dim, h, bias=False)
        self.register_buffer("qkv_a_fused", None, persistent=False)  # see fusion.py
        self.scale = self.qk_dim**-0.5
        self.q_scale = math.sqrt(h / cfg.q_lora_rank) if cfg.mla_scale_q_lora else 1.0
        self.kv_scale = math.sqrt(h / cfg.kv_lora_rank) if cfg.mla_scale_kv_lora else 1.0

    def project(self, x: torch.Tensor, ctx: ForwardContext) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [B, T, hidden] -> q_nope [B,T,H,nope], q_rope [B,T,H,rope] (rotated),
        latent [B, T, kv_lora + rope] (what the cache stores)."""
        b, t, _ = x.shape
        if self.qkv_a_fused is not None and not torch.is_grad_enabled():
            qa, ckv = F.linear(x, self.qkv_a_fused).split([self.q_a_proj.out_features, self.kv_lora_rank + self.rope], -1)
        else:
            qa, ckv = self.q_a_proj(x), self.kv_a_proj_with_mqa(x)
        q = self.q_b_proj(self.q_a_layernorm(qa)).view(b, t, self.num_heads, self.qk_dim)
        if self.q_scale != 1.0:
            q = q * self.q_scale
        q_nope, q_rope = q.split([self.nope, self.rope], dim=-1)
        c, k_rope = ckv.split([self.kv_lora_rank, self.rope], dim=-1)
        c = self.kv_a_layernorm(c)
        if self.kv_scale != 1.0:
            c = c * self.kv_scale
        q_rope = apply_rope_interleaved(q_rope, ctx.cos[:, :, None], ctx.sin[:, :, None])
        k_rope = apply_rope_interleaved(k_rope, ctx.cos, ctx.sin)
        return q_nope, q_rope, torch.cat([c, k_rope], dim=-1)

    def forward(self, x: torch.Tensor, ctx: ForwardContext, kv: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, T, hidden]; kv: this sublayer's cache tensor (ctx.layer_kv) or None."""
        b, t, _ = x.shape
        q_nope, q_rope, latent = self.project(x, ctx)
        if kv is not None:
            ctx.write(kv, latent)
        if ctx.absorbed:
            assert kv is not None, "absorbed attention reads the cache"
            out = self._absorbed(q_nope, q_rope, ctx, kv)
        else:
            out = self._expanded(q_nope, q_rope, latent)
        return self.o_proj(out.reshape(b, t, self.num_heads * self.v_dim))

    def _expanded(self, q_nope: torch.Tensor, q_rope: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        b, t, h, _ = q_nope.shape
        c, k_rope = latent.split([self.kv_lora_rank, self.rope], dim=-1)
        kv = self.kv_b_proj(c).view(b, t, h, self.nope + self.v_dim)
        k_nope, v = kv.split([self.nope, self.v_dim], dim=-1)
        k = torch.cat([k_nope, k_rope[:, :, None].expand(b, t, h, self.rope)], dim=-1)
        q = torch.cat([q_nope, q_rope], dim=-1)
        out = causal_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), self.scale)
        return out.transpose(1, 2)  # [B, T, H, v]

    def _absorbed(
        self, q_nope: torch.Tensor, q_rope: torch.Tensor, ctx: ForwardContext, kv: torch.Tensor
    ) -> torch.Tensor:
        w = self.kv_b_proj.weight.view(self.num_heads, self.nope + self.v_dim, self.kv_lora_rank)
        # q . k_nope = q . (W_uk c) = (W_uk^T q) . c: fold W_uk into the query.
        q_lat = torch.einsum("bthn,hnr->bthr", q_nope, w[:, : self.nope])
        q = torch.cat([q_lat, q_rope], dim=-1)
        o_lat = mqa_attention(q, ctx.read(kv), self.kv_lora_rank, ctx.mask, self.scale)
        # softmax(.) (W_uv c) = W_uv (softmax(.) c): apply W_uv after attending.
        return torch.einsum("bthr,hvr->bthv", o_lat, w[:, self.nope :])

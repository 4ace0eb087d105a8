"""The LongCat-Flash backbone: embedding -> N ScMoE decoder layers -> final
RMSNorm -> LM head. Parameter names equal transformers'
`LongcatFlashForCausalLM` (`model.layers.L.self_attn.j.q_a_proj.weight`, ...),
with experts in its fused layout (`model.layers.L.mlp.experts.gate_up_proj`).

One forward serves all uses:

    out = lm(input_ids)                                   # training / scoring, causal over [B, T]
    out = lm(inputs_embeds=e, lengths=n)                  # embeddings in, right padding
    out = lm(ids, cache=cache, slots=[3, 5], lengths=n)   # prefill into cache slots
    logits, hidden = lm.decode_step(slot_index, input_ids=tok, cache=cache)  # static decode step

`out.logits` is [B, T, V] (or [B, 1, V] with `logits="last"`), and
`out.hidden_states` the final post-norm hidden states [B, T, H] that the omni
model feeds to its audio heads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from omni.config import LLMConfig
from omni.llm.cache import MLACache
from omni.llm.context import ForwardContext, build_context, build_decode_context
from omni.llm.experts import GroupedExperts
from omni.llm.layer import DecoderLayer
from omni.llm.moe import MoE
from omni.llm.norm import RMSNorm


@dataclass
class BackboneOutput:
    logits: torch.Tensor | None  # [B, T, V] fp32-or-model dtype
    hidden_states: torch.Tensor  # [B, T, H] after the final norm


class LongcatFlashModel(nn.Module):
    """Everything but the LM head (the `model.` prefix of checkpoints)."""

    def __init__(self, cfg: LLMConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList([DecoderLayer(cfg, i) for i in range(cfg.num_layers)])
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, h: torch.Tensor, ctx: ForwardContext) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            h = layer(h, ctx, *ctx.layer_kv(i))
        return self.norm(h)


class LongcatFlashForCausalLM(nn.Module):
    def __init__(self, cfg: LLMConfig, init: bool = True) -> None:
        super().__init__()
        validate_config(cfg)
        self.config = cfg
        self.model = LongcatFlashModel(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        if init:
            self.init_weights()

    # --- construction helpers ----------------------------------------------

    @torch.no_grad()
    def init_weights(self, std: float | None = None, generator: torch.Generator | None = None) -> None:
        """Normal(0, initializer_range) for matrices, ones for norms, zero router bias."""
        std = self.config.initializer_range if std is None else std
        for mod in self.modules():
            for name, p in mod.named_parameters(recurse=False):
                if p.is_meta:
                    continue
                if isinstance(mod, RMSNorm):
                    p.fill_(1.0)
                else:
                    p.normal_(0.0, std, generator=generator)
            if isinstance(mod, MoE):
                if not mod.router.e_score_correction_bias.is_meta:
                    mod.router.e_score_correction_bias.zero_()

    def to_dtype(self, dtype: torch.dtype) -> "LongcatFlashForCausalLM":
        """Cast to `dtype` but keep the router (classifier + correction bias) in
        fp32, as the reference does (`_keep_in_fp32_modules`)."""
        keep = {id(m.router.classifier.weight) for m in self.moe_layers()}
        for p in self.parameters():
            if id(p) not in keep:
                p.data = p.data.to(dtype)
        return self

    @property
    def device(self) -> torch.device:
        return self.lm_head.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.lm_head.weight.dtype

    def new_cache(self, max_slots: int, capacity: int, dtype: torch.dtype | None = None) -> MLACache:
        return MLACache(self.config, max_slots, capacity, dtype=dtype or self.dtype, device=self.device)

    def moe_layers(self) -> list[MoE]:
        return [layer.mlp for layer in self.model.layers]

    def set_expert_backend(self, impl: str) -> None:
        """"auto" | "grouped_mm" | "bmm" for every layer's experts."""
        for mod in self.modules():
            if isinstance(mod, GroupedExperts):
                mod.impl = impl

    # --- forward -------------------------------------------------------------

    def embed(self, input_ids: torch.Tensor | None, inputs_embeds: torch.Tensor | None) -> torch.Tensor:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        if inputs_embeds is not None:
            if inputs_embeds.shape[-1] != self.config.hidden_size:
                raise ValueError(
                    f"inputs_embeds last dim {inputs_embeds.shape[-1]} != hidden_size {self.config.hidden_size}"
                )
            return inputs_embeds.to(self.dtype)
        return self.model.embed_tokens(input_ids)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        *,
        cache: MLACache | None = None,
        slots: Sequence[int] | None = None,
        lengths: torch.Tensor | Sequence[int] | None = None,
        positions: torch.Tensor | None = None,
        logits: str = "all",
    ) -> BackboneOutput:
        """input_ids [B, T] (or inputs_embeds [B, T, H]).

        lengths: valid tokens per row (right padding); with a cache, only those
        are written and the slot lengths advance by them.
        logits: "all" -> [B, T, V]; "last" -> [B, 1, V] at each row's last
        valid token; "none" -> hidden states only.
        """
        h = self.embed(input_ids, inputs_embeds)
        b, t, _ = h.shape
        lens = None if lengths is None else torch.as_tensor(lengths, dtype=torch.long, device=h.device)
        # host copy of the lengths: read from the given list when possible (no device sync)
        host = None
        if cache is not None:
            host = [t] * b if lengths is None else (
                lengths.tolist() if isinstance(lengths, torch.Tensor) else [int(n) for n in lengths])
        ctx = build_context(
            b, t, self.config.qk_rope_head_dim, self.config.rope_theta, h.device,
            positions=positions, cache=cache, slots=slots, lengths=lens, host_lengths=host,
        )
        hidden = self.model(h, ctx)
        if cache is not None:
            cache.advance(ctx_slots(slots, b), host)
        return BackboneOutput(logits=self._logits(hidden, lens, logits), hidden_states=hidden)

    def _logits(self, hidden: torch.Tensor, lens: torch.Tensor | None, mode: str) -> torch.Tensor | None:
        if mode == "none":
            return None
        if mode == "all":
            return self.lm_head(hidden)
        if mode == "last":
            b, t, _ = hidden.shape
            last = torch.full((b,), t - 1, device=hidden.device) if lens is None else (lens - 1).clamp(min=0)
            return self.lm_head(hidden[torch.arange(b, device=hidden.device), last][:, None])
        raise ValueError(f"logits must be 'all', 'last' or 'none', got {mode!r}")

    def decode_step(
        self,
        slot_index: torch.Tensor,
        input_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        *,
        cache: MLACache,
        slot_slice: slice | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One token for each slot in `slot_index` [B]: input_ids [B] or
        inputs_embeds [B, H]. Static shapes and no host syncs, so it can be
        compiled and captured in a CUDA graph, hence no capacity check either:
        the caller ensures room (DecodeRunner does; a full slot would write
        to the trash row). Advances `cache.lengths` on the
        device only: the caller must call `cache.advance(slots, [1]*B,
        device_too=False)` (DecodeRunner does). Returns logits [B, V], hidden [B, H].
        """
        h = self.embed(None if input_ids is None else input_ids[:, None],
                       None if inputs_embeds is None else inputs_embeds[:, None])
        ctx = build_decode_context(cache, slot_index, self.config.qk_rope_head_dim, self.config.rope_theta, slot_slice)
        hidden = self.model(h, ctx)[:, 0]
        cache.lengths.index_add_(0, slot_index, torch.ones_like(slot_index))
        return self.lm_head(hidden), hidden


def ctx_slots(slots: Sequence[int] | None, batch: int) -> list[int]:
    return list(range(batch)) if slots is None else [int(s) for s in slots]


def validate_config(cfg: LLMConfig) -> None:
    """Clear errors for shapes the architecture cannot take."""
    problems = []
    for name in ("vocab_size", "hidden_size", "num_layers", "num_attention_heads", "ffn_hidden_size",
                 "q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim", "moe_topk"):
        if int(getattr(cfg, name)) < 1:
            problems.append(f"{name}={getattr(cfg, name)} must be >= 1")
    if cfg.qk_rope_head_dim % 2:
        problems.append(f"qk_rope_head_dim={cfg.qk_rope_head_dim} must be even (RoPE pairs)")
    if cfg.n_routed_experts < 0 or cfg.zero_expert_num < 0:
        problems.append("n_routed_experts and zero_expert_num must be >= 0")
    if cfg.n_routed_experts > 0 and cfg.expert_ffn_hidden_size < 1:
        problems.append(f"expert_ffn_hidden_size={cfg.expert_ffn_hidden_size} must be >= 1")
    if cfg.moe_topk > cfg.num_experts_total:
        problems.append(f"moe_topk={cfg.moe_topk} exceeds n_routed_experts + zero_expert_num = {cfg.num_experts_total}")
    if problems:
        raise ValueError("invalid LLMConfig: " + "; ".join(problems))

"""The one adapter between transformers' LongCat-Flash format and ours.

Config: `LongcatFlashConfig` fields <-> `LLMConfig` (same names; transformers
adds `head_dim` (= qk_rope_head_dim, it sizes the rope table) and
`rope_parameters`).

Weights: names are identical except for the routed experts (N real experts,
Z zero-computation experts), which appear in one of these layouts:
* per expert (the original release, and what transformers' save_pretrained writes):
  `mlp.experts.E.{gate_proj,up_proj,down_proj}.weight`, E < N; transformers
  releases up to 5.24 also write (unused) rows E in [N, N+Z) for the zero experts;
* fused, transformers' in-memory module: `mlp.experts.gate_up_proj` [R, 2I, H]
  and `down_proj` [R', H, I], where R = N + Z (releases up to 5.24: the rows
  >= N are never used) or R = N (5.25 and later), and R' = N (or N + Z);
* ours: fused with exactly N rows.
The loader reads all of them; `save_pretrained(format="hf")` asks the installed
transformers how many rows its module allocates and writes exactly that.
`model.mtp.*` (multi-token-prediction weights) are ignored, as transformers does.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import torch

from omni.config import LLMConfig

_EXPERT_KEY = re.compile(r"^(model\.layers\.\d+\.mlp\.experts)\.(\d+)\.(gate_proj|up_proj|down_proj)\.weight$")
IGNORED_PREFIXES = ("model.mtp.",)


def hf_config_dict(cfg: LLMConfig) -> dict[str, Any]:
    """config.json content for transformers' LongcatFlashForCausalLM."""
    return {
        "architectures": ["LongcatFlashForCausalLM"],
        "model_type": "longcat_flash",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "num_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_attention_heads,
        "num_key_value_heads": cfg.num_attention_heads,
        "ffn_hidden_size": cfg.ffn_hidden_size,
        "expert_ffn_hidden_size": cfg.expert_ffn_hidden_size,
        "n_routed_experts": cfg.n_routed_experts,
        "zero_expert_num": cfg.zero_expert_num,
        "moe_topk": cfg.moe_topk,
        "routed_scaling_factor": cfg.routed_scaling_factor,
        "q_lora_rank": cfg.q_lora_rank,
        "kv_lora_rank": cfg.kv_lora_rank,
        "qk_nope_head_dim": cfg.qk_nope_head_dim,
        "qk_rope_head_dim": cfg.qk_rope_head_dim,
        "head_dim": cfg.qk_rope_head_dim,
        "v_head_dim": cfg.v_head_dim,
        "rms_norm_eps": cfg.rms_norm_eps,
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
        "max_position_embeddings": cfg.max_position_embeddings,
        "bos_token_id": cfg.bos_token_id,
        "eos_token_id": cfg.eos_token_id,
        "pad_token_id": cfg.pad_token_id,
        "initializer_range": cfg.initializer_range,
        "hidden_act": "silu",
        "attention_bias": False,
        "tie_word_embeddings": False,
    }


def llm_config_from_hf(d: Mapping[str, Any], source: str = "config.json") -> LLMConfig:
    """LLMConfig from a transformers config.json dict; errors name the field."""
    mt = d.get("model_type")
    if mt not in ("longcat_flash", None):
        raise ValueError(f"{source}: model_type {mt!r} is not 'longcat_flash'")
    rope = d.get("rope_parameters") or d.get("rope_scaling") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type not in ("default", None):
        raise ValueError(f"{source}: rope_parameters.rope_type {rope_type!r} is not supported (only 'default')")
    theta = rope.get("rope_theta", d.get("rope_theta", 1e7))
    if d.get("hidden_act", "silu") != "silu":
        raise ValueError(f"{source}: hidden_act {d['hidden_act']!r} is not supported (only 'silu')")
    if d.get("attention_bias"):
        raise ValueError(f"{source}: attention_bias=true is not supported")
    heads = d.get("num_attention_heads", 64)
    kvh = d.get("num_key_value_heads") or heads
    if kvh != heads:
        raise ValueError(f"{source}: num_key_value_heads {kvh} != num_attention_heads {heads} (MLA has none)")
    if d.get("zero_expert_type", "identity") != "identity":
        raise ValueError(f"{source}: zero_expert_type {d['zero_expert_type']!r} is not supported (only 'identity')")
    if d.get("norm_topk_prob"):
        raise ValueError(f"{source}: norm_topk_prob=true is not supported")
    if d.get("q_lora_rank") is None:
        raise ValueError(f"{source}: q_lora_rank is required (LongCat-Flash always factorizes q)")
    num_layers = d.get("num_layers")
    if num_layers is None and "num_hidden_layers" in d:
        num_layers = d["num_hidden_layers"] // 2
    kw: dict[str, Any] = dict(
        vocab_size=d.get("vocab_size", 131072),
        hidden_size=d.get("hidden_size", 6144),
        num_layers=num_layers if num_layers is not None else 28,
        num_attention_heads=heads,
        ffn_hidden_size=d.get("ffn_hidden_size", d.get("intermediate_size", 12288)),
        expert_ffn_hidden_size=d.get("expert_ffn_hidden_size", d.get("moe_intermediate_size", 2048)),
        n_routed_experts=d.get("n_routed_experts", 512),
        zero_expert_num=d.get("zero_expert_num") or 0,
        moe_topk=d.get("moe_topk", 12),
        routed_scaling_factor=float(d.get("routed_scaling_factor", 6.0)),
        q_lora_rank=d["q_lora_rank"],
        kv_lora_rank=d.get("kv_lora_rank", 512),
        qk_nope_head_dim=d.get("qk_nope_head_dim", 128),
        qk_rope_head_dim=d.get("qk_rope_head_dim", 64),
        v_head_dim=d.get("v_head_dim", 128),
        mla_scale_q_lora=bool(d.get("mla_scale_q_lora", True)),
        mla_scale_kv_lora=bool(d.get("mla_scale_kv_lora", True)),
        rms_norm_eps=float(d.get("rms_norm_eps", 1e-5)),
        rope_theta=float(theta),
        max_position_embeddings=d.get("max_position_embeddings", 131072),
        bos_token_id=d.get("bos_token_id") if d.get("bos_token_id") is not None else 1,
        eos_token_id=_first(d.get("eos_token_id"), 2),
        pad_token_id=d.get("pad_token_id") if d.get("pad_token_id") is not None else 3,
        initializer_range=d.get("initializer_range", 0.02),
    )
    return LLMConfig(**kw)


def _first(v: Any, default: int) -> int:
    if v is None:
        return default
    return int(v[0]) if isinstance(v, (list, tuple)) else int(v)


def _fused_rows(key: str, t: torch.Tensor, cfg: LLMConfig) -> torch.Tensor:
    """A fused expert tensor of any known layout -> exactly N rows; any other
    shape is an unknown layout, reported with the key and both shapes."""
    n, i, h = cfg.n_routed_experts, cfg.expert_ffn_hidden_size, cfg.hidden_size
    inner = (2 * i, h) if key.endswith("gate_up_proj") else (h, i)
    rows = {n, cfg.num_experts_total}
    if t.dim() != 3 or tuple(t.shape[1:]) != inner or t.shape[0] not in rows:
        raise ValueError(
            f"{key} has shape {list(t.shape)}: not a known LongCat-Flash expert layout "
            f"(expected [{' or '.join(str(r) for r in sorted(rows))}, {inner[0]}, {inner[1]}])"
        )
    return t[:n]


def from_hf_state_dict(sd: Mapping[str, torch.Tensor], cfg: LLMConfig) -> dict[str, torch.Tensor]:
    """Any of the expert layouts -> ours. Other keys pass through unchanged
    (so that the strict load reports them by name)."""
    n = cfg.n_routed_experts
    out: dict[str, torch.Tensor] = {}
    per_expert: dict[str, dict[int, dict[str, torch.Tensor]]] = {}
    for key, t in sd.items():
        if key.startswith(IGNORED_PREFIXES):
            continue
        m = _EXPERT_KEY.match(key)
        if m:
            prefix, e, proj = m.group(1), int(m.group(2)), m.group(3)
            if n <= e < cfg.num_experts_total:
                continue  # rows of the zero experts (never read: they compute nothing)
            if e >= n:
                out[key] = t  # reported as unexpected
                continue
            per_expert.setdefault(prefix, {}).setdefault(e, {})[proj] = t
            continue
        if key.endswith(("mlp.experts.gate_up_proj", "mlp.experts.down_proj")):
            t = _fused_rows(key, t, cfg)
        out[key] = t
    for prefix, experts in per_expert.items():
        missing = [f"{prefix}.{e}.{p}.weight" for e in range(n) for p in ("gate_proj", "up_proj", "down_proj")
                   if p not in experts.get(e, {})]
        if missing:
            raise KeyError(f"checkpoint is missing {len(missing)} expert weights, e.g. {missing[0]}")
        out[f"{prefix}.gate_up_proj"] = torch.stack(
            [torch.cat([experts[e]["gate_proj"], experts[e]["up_proj"]], dim=0) for e in range(n)]
        )
        out[f"{prefix}.down_proj"] = torch.stack([experts[e]["down_proj"] for e in range(n)])
    return out


def installed_expert_rows(cfg: LLMConfig) -> tuple[int, int]:
    """(gate/up rows, down rows) that the installed transformers' LongCat-Flash
    expert module allocates for `cfg`: (N + Z, N) up to 5.24, (N, N) from 5.25.
    Without transformers: (N, N), the newest layout. Built on the meta device,
    so it costs nothing even for the 560B configuration."""
    n = cfg.n_routed_experts
    try:
        from transformers import LongcatFlashConfig
        from transformers.models.longcat_flash.modeling_longcat_flash import LongcatFlashExperts
    except ImportError:
        return n, n
    conf = LongcatFlashConfig(**{k: v for k, v in hf_config_dict(cfg).items() if k not in ("architectures", "model_type")})
    with torch.device("meta"):
        experts = LongcatFlashExperts(conf)
    return int(experts.gate_up_proj.shape[0]), int(experts.down_proj.shape[0])


def to_hf_state_dict(sd: Mapping[str, torch.Tensor], cfg: LLMConfig,
                     rows: tuple[int, int] | None = None) -> dict[str, torch.Tensor]:
    """Ours -> the per-expert layout (the original release's), with as many
    gate/up and down rows as `rows` says (default: what the installed
    transformers allocates, so that it loads every weight and reinitializes
    none). Rows of the zero experts, where wanted, are zeros."""
    n, i = cfg.n_routed_experts, cfg.expert_ffn_hidden_size
    gate_up_rows, down_rows = rows or installed_expert_rows(cfg)
    out: dict[str, torch.Tensor] = {}
    for key, t in sd.items():
        if key.endswith("mlp.experts.gate_up_proj"):
            prefix = key[: -len(".gate_up_proj")]
            for e in range(gate_up_rows):
                gate, up = (t[e, :i], t[e, i:]) if e < n else (torch.zeros_like(t[0, :i]), torch.zeros_like(t[0, i:]))
                out[f"{prefix}.{e}.gate_proj.weight"] = gate.contiguous()
                out[f"{prefix}.{e}.up_proj.weight"] = up.contiguous()
        elif key.endswith("mlp.experts.down_proj"):
            prefix = key[: -len(".down_proj")]
            for e in range(down_rows):
                out[f"{prefix}.{e}.down_proj.weight"] = (t[e] if e < n else torch.zeros_like(t[0])).contiguous()
        else:
            out[key] = t
    return out

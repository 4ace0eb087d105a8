"""Build transformers' LongcatFlashForCausalLM (the independent reference) and
our backbone with the same random weights."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from transformers import LongcatFlashConfig, LongcatFlashForCausalLM as HFModel

from omni.config import LLMConfig
from omni.llm import LongcatFlashForCausalLM
from omni.llm.hf_compat import from_hf_state_dict, hf_config_dict
from omni.llm.loading import load_checked


def build_pair(cfg: LLMConfig, seed: int = 0, std: float = 0.08) -> tuple[HFModel, LongcatFlashForCausalLM]:
    """Random HF model (weights ~ N(0, std), random router bias) + ours loaded from it."""
    conf = {k: v for k, v in hf_config_dict(cfg).items() if k not in ("architectures", "model_type")}
    hf_cfg = LongcatFlashConfig(**conf)
    hf_cfg._attn_implementation = "eager"
    torch.manual_seed(seed)
    hf = HFModel(hf_cfg).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if name.endswith("layernorm.weight") or ".input_layernorm." in name or name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(std * torch.randn(p.shape, generator=g))
        for name, buf in hf.named_buffers():
            if name.endswith("e_score_correction_bias"):
                # large enough to change the top-k choice, so the test sees it
                buf.copy_(0.05 * torch.randn(buf.shape, generator=g))
    ours = LongcatFlashForCausalLM(cfg, init=False).eval()
    load_checked(ours, from_hf_state_dict(hf.state_dict(), cfg), source="transformers model")
    return hf, ours


@torch.no_grad()
def hf_greedy(hf: HFModel, prompt: list[int], steps: int) -> tuple[list[int], list[torch.Tensor]]:
    """Greedy continuation with transformers' own KV cache; returns tokens and
    the logits of every step (prefill's last position first)."""
    out = hf(torch.tensor([prompt]), use_cache=True)
    past = out.past_key_values
    logits = [out.logits[0, -1]]
    toks = []
    for _ in range(steps):
        tok = int(logits[-1].argmax())
        toks.append(tok)
        out = hf(torch.tensor([[tok]]), past_key_values=past, use_cache=True)
        past = out.past_key_values
        logits.append(out.logits[0, -1])
    return toks, logits[:-1]

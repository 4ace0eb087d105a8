"""Parity with transformers' LongcatFlashForCausalLM (same random weights, fp32).

Tolerance: max |logits_ours - logits_hf| <= 1e-5, and identical greedy
continuations, for full prefill and for step-by-step decode with the cache,
on the debug flavor and on a second config with other MLA / MoE shapes and no
zero experts.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from omni.config import get_llm_config
from omni.llm.generation import generate
from tests.llm.hf_reference import build_pair, hf_greedy

TOL = 1e-5


def _second_config():
    return dataclasses.replace(
        get_llm_config("debug"),
        hidden_size=48,
        num_attention_heads=3,
        ffn_hidden_size=80,
        expert_ffn_hidden_size=24,
        n_routed_experts=6,
        zero_expert_num=0,
        moe_topk=2,
        routed_scaling_factor=2.5,
        q_lora_rank=40,
        kv_lora_rank=20,
        qk_nope_head_dim=12,
        qk_rope_head_dim=6,
        v_head_dim=10,
        rope_theta=1e6,
        num_layers=3,
    )


CONFIGS = {"debug": lambda: get_llm_config("debug"), "other-shapes-no-zero": _second_config}


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def pair(request):
    cfg = CONFIGS[request.param]()
    hf, ours = build_pair(cfg, seed=1)
    return cfg, hf, ours


@torch.no_grad()
def test_prefill_logits_match(pair):
    cfg, hf, ours = pair
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, cfg.vocab_size, (2, 17), generator=g)
    ref = hf(ids).logits
    got = ours(ids).logits
    assert got.shape == ref.shape == (2, 17, cfg.vocab_size)
    assert (got - ref).abs().max().item() <= TOL
    # the same through inputs_embeds
    emb = ours.model.embed_tokens(ids)
    assert (ours(inputs_embeds=emb).logits - ref).abs().max().item() <= TOL


@torch.no_grad()
def test_greedy_decode_with_cache_matches(pair):
    cfg, hf, ours = pair
    prompt = [1, 17, 42, 99, 7, 250, 3, 11]
    steps = 24
    ref_toks, ref_logits = hf_greedy(hf, prompt, steps)
    # ours: cache prefill, then one token at a time through decode_step
    cache = ours.new_cache(max_slots=3, capacity=64)
    out = ours(torch.tensor([prompt]), cache=cache, slots=[2])
    logits = out.logits[0, -1]
    toks = []
    for i in range(steps):
        assert (logits - ref_logits[i]).abs().max().item() <= TOL, f"step {i}"
        tok = int(logits.argmax())
        toks.append(tok)
        lg, _ = ours.decode_step(torch.tensor([2]), input_ids=torch.tensor([tok]), cache=cache)
        cache.advance([2], [1], device_too=False)
        logits = lg[0]
    assert toks == ref_toks
    assert cache.length(2) == len(prompt) + steps
    # and the whole loop through generate() (prefill + DecodeRunner)
    assert generate(ours, [prompt], steps)[0] == ref_toks


@torch.no_grad()
def test_chunked_prefill_matches(pair):
    cfg, hf, ours = pair
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(0, cfg.vocab_size, (1, 21), generator=g)
    ref = hf(ids).logits[0]
    cache = ours.new_cache(max_slots=1, capacity=32)
    pieces = []
    for a, b in [(0, 5), (5, 6), (6, 15), (15, 21)]:
        pieces.append(ours(ids[:, a:b], cache=cache, slots=[0]).logits[0])
    assert (torch.cat(pieces) - ref).abs().max().item() <= TOL

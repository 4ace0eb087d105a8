"""Sampling rules, the generate loop, and the static decode step under torch.compile."""

from __future__ import annotations

import copy

import pytest
import torch

from omni.config import get_llm_config
from omni.llm import LongcatFlashForCausalLM
from omni.llm.generation import generate
from omni.llm.runner import DecodeRunner
from omni.llm.sampling import (
    SamplingConfig,
    apply_repetition_penalty,
    filter_top_k,
    filter_top_p,
    sample_next,
)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = LongcatFlashForCausalLM(get_llm_config("debug")).eval()
    m.init_weights(std=0.08)
    return m


def test_top_k_top_p_and_penalty():
    logits = torch.tensor([[2.0, 1.0, 0.5, -1.0, -3.0]])
    assert torch.isinf(filter_top_k(logits, 2)).tolist() == [[False, False, True, True, True]]
    probs = logits.softmax(-1)[0]  # 0.61, 0.22, 0.14, ...
    keep = ~torch.isinf(filter_top_p(logits, 0.7))
    assert keep.tolist() == [[True, True, False, False, False]]  # 0.61 < 0.7 <= 0.61 + 0.22
    assert (~torch.isinf(filter_top_p(logits, 0.5))).sum() == 1  # the top token always stays
    assert probs[0] > 0.5
    seen = torch.tensor([[True, False, False, True, False]])
    pen = apply_repetition_penalty(logits, seen, 2.0)
    assert pen.tolist() == [[1.0, 1.0, 0.5, -2.0, -3.0]]
    with pytest.raises(ValueError, match="top_p"):
        SamplingConfig(top_p=0)


def test_sampling_distribution_and_greedy():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2]])).repeat(4000, 1)
    g = torch.Generator().manual_seed(0)
    draws = sample_next(logits, SamplingConfig(temperature=1.0), generator=g)
    freq = torch.bincount(draws, minlength=3).float() / len(draws)
    assert torch.allclose(freq, torch.tensor([0.5, 0.3, 0.2]), atol=0.03)
    draws = sample_next(logits, SamplingConfig(temperature=1.0, top_k=2), generator=g)
    assert set(draws.tolist()) == {0, 1}
    assert sample_next(logits[:1], SamplingConfig(temperature=0)).item() == 0


def test_generate_greedy_matches_full_recompute_and_eos(model):
    prompts = [[1, 5, 9, 33], [1, 7]]
    out = generate(model, prompts, 6)
    for p, got in zip(prompts, out):
        seq = list(p)
        for _ in range(6):
            seq.append(int(model(torch.tensor([seq])).logits[0, -1].argmax()))
        assert got == seq[len(p):]
    eos = out[0][2]
    stopped = generate(model, prompts[:1], 6, eos_token_id=eos)[0]
    assert stopped == out[0][: out[0].index(eos) + 1]


def test_generate_sampling_is_seeded(model):
    cfg = SamplingConfig(temperature=0.9, top_k=50, top_p=0.95, repetition_penalty=1.3)
    a = generate(model, [[1, 2, 3]], 10, cfg, generator=torch.Generator().manual_seed(7))
    b = generate(model, [[1, 2, 3]], 10, cfg, generator=torch.Generator().manual_seed(7))
    c = generate(model, [[1, 2, 3]], 10, cfg, generator=torch.Generator().manual_seed(8))
    assert a == b and a != c


def test_runner_slots_and_embeds(model):
    cache = model.new_cache(4, 32)
    with torch.no_grad():
        model(torch.tensor([[1, 2, 3]]), cache=cache, slots=[3])
        model(torch.tensor([[4, 5]]), cache=cache, slots=[1])
        r = DecodeRunner(model, cache, batch=2, embeds=True)
        emb = model.model.embed_tokens(torch.tensor([7, 8]))
        logits, _ = r.step([3, 1], inputs_embeds=emb)
        ref = model(torch.tensor([[1, 2, 3, 7]])).logits[0, -1]
    assert (logits[0] - ref).abs().max() < 2e-5
    assert cache.host_lengths([3, 1]) == [4, 3]
    with pytest.raises(ValueError, match="CUDA"):
        DecodeRunner(model, cache, 1, use_graph=True)


@pytest.mark.slow
def test_decode_step_compiles_fullgraph(model):
    """The decode step has static shapes and no host syncs: it traces as one
    graph (fullgraph=True would raise on any break) and matches eager.
    bf16, the dtype torch._grouped_mm is traced for."""
    torch._dynamo.reset()
    model = copy.deepcopy(model).to_dtype(torch.bfloat16)
    model.set_expert_backend("grouped_mm")
    cache_a, cache_b = model.new_cache(2, 16), model.new_cache(2, 16)
    with torch.no_grad():
        for c in (cache_a, cache_b):
            model(torch.tensor([[1, 2, 3], [4, 5, 6]]), cache=c, slots=[0, 1])
        step = torch.compile(model.decode_step, fullgraph=True, dynamic=False, backend="aot_eager")
        slots = torch.tensor([1, 0])
        for tok in ([7, 8], [9, 10]):
            ids = torch.tensor(tok)
            got, _ = step(slots, input_ids=ids, cache=cache_a)
            ref, _ = model.decode_step(slots, input_ids=ids, cache=cache_b)
            assert (got.float() - ref.float()).abs().max() < 1e-2
            assert torch.equal(got.argmax(-1), ref.argmax(-1))
    assert torch.equal(cache_a.lengths, cache_b.lengths)

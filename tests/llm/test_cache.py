"""KV cache slots: batched padded prefill, batched decode over arbitrary slots,
truncation (rollback), reset, capacity errors; and the no-cache paths."""

from __future__ import annotations

import pytest
import torch

from omni.config import get_llm_config
from omni.llm import LongcatFlashForCausalLM

TOL = 2e-5


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = LongcatFlashForCausalLM(get_llm_config("debug")).eval()
    m.init_weights(std=0.08)
    return m


def _ids(n, seed):
    return torch.randint(4, 500, (n,), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def test_padded_multi_slot_prefill_equals_single(model):
    a, b = _ids(9, 1), _ids(4, 2)
    ids = torch.zeros(2, 9, dtype=torch.long)
    ids[0], ids[1, :4] = a, b
    cache = model.new_cache(4, 32)
    out = model(ids, cache=cache, slots=[3, 1], lengths=[9, 4])
    assert cache.host_lengths([3, 1]) == [9, 4]
    assert cache.lengths.tolist() == [0, 4, 0, 9]
    ref_a = model(a[None]).logits[0]
    ref_b = model(b[None]).logits[0]
    assert (out.logits[0] - ref_a).abs().max() < TOL
    assert (out.logits[1, :4] - ref_b).abs().max() < TOL
    last = model(ids, lengths=[9, 4], logits="last").logits[:, 0]
    assert (last[1] - ref_b[-1]).abs().max() < TOL  # "last" picks each row's last valid token


@torch.no_grad()
def test_batched_decode_over_uneven_slots(model):
    prompts = {0: _ids(3, 3), 2: _ids(7, 4), 5: _ids(11, 5)}
    cache = model.new_cache(6, 40)
    for s, p in prompts.items():
        model(p[None], cache=cache, slots=[s])
    toks = torch.tensor([10, 20, 30])
    slots = torch.tensor([5, 0, 2])  # arbitrary order
    logits, hidden = model.decode_step(slots, input_ids=toks, cache=cache)
    cache.advance(slots.tolist(), [1, 1, 1], device_too=False)
    assert cache.lengths.tolist() == [4, 0, 8, 0, 0, 12]
    for row, s in enumerate(slots.tolist()):
        seq = torch.cat([prompts[s], toks[row : row + 1]])
        ref = model(seq[None])
        assert (logits[row] - ref.logits[0, -1]).abs().max() < TOL
        assert (hidden[row] - ref.hidden_states[0, -1]).abs().max() < TOL


@torch.no_grad()
def test_truncate_rolls_back_exactly(model):
    prompt = _ids(6, 6)
    cache = model.new_cache(2, 40)
    model(prompt[None], cache=cache, slots=[1])
    mark = cache.length(1)
    model(_ids(5, 7)[None], cache=cache, slots=[1])  # speculative tokens
    cache.truncate(1, mark)
    after = model(_ids(3, 8)[None], cache=cache, slots=[1]).logits
    fresh = model.new_cache(2, 40)
    model(prompt[None], cache=fresh, slots=[1])
    ref = model(_ids(3, 8)[None], cache=fresh, slots=[1]).logits
    assert torch.equal(after, ref)  # bitwise: the same computation on the same state


def test_reset_and_errors(model):
    cache = model.new_cache(2, 8)
    with torch.no_grad():
        model(_ids(5, 9)[None], cache=cache, slots=[0])
        cache.reset(0)
        assert cache.length(0) == 0 and int(cache.lengths[0]) == 0
        out = model(_ids(4, 10)[None], cache=cache, slots=[0]).logits
        assert (out - model(_ids(4, 10)[None]).logits).abs().max() < TOL
    with pytest.raises(ValueError, match="capacity is 8"):
        model(_ids(5, 11)[None], cache=cache, slots=[0])
    with pytest.raises(ValueError, match=r"length must be in \[0, 4\]"):
        cache.truncate(0, 5)
    with pytest.raises(IndexError, match="slot 7 out of range"):
        cache.truncate(7, 0)
    with pytest.raises(ValueError, match="distinct"):
        model(torch.zeros(2, 1, dtype=torch.long), cache=cache, slots=[1, 1])


@torch.no_grad()
def test_training_forward_padding_prefix_and_embeds(model):
    a = _ids(12, 12)
    full = model(a[None])
    prefix = model(a[None, :5])
    assert (full.logits[0, :5] - prefix.logits[0]).abs().max() < TOL  # causal: prefix in, prefix out
    padded = torch.zeros(2, 12, dtype=torch.long)
    padded[0], padded[1, :5] = a, a[:5]
    out = model(padded, lengths=[12, 5])
    assert (out.logits[1, :5] - prefix.logits[0]).abs().max() < TOL
    emb = model.model.embed_tokens(a[None])
    assert torch.equal(model(inputs_embeds=emb).hidden_states, full.hidden_states)
    with pytest.raises(ValueError, match="exactly one"):
        model()
    with pytest.raises(ValueError, match="hidden_size"):
        model(inputs_embeds=torch.zeros(1, 2, 3))


def test_cache_stores_compressed_latent_only(model):
    cfg = model.config
    cache = model.new_cache(3, 16)
    assert cache.kv.shape == (2 * cfg.num_layers, 3, 17, cfg.kv_lora_rank + cfg.qk_rope_head_dim)


@torch.no_grad()
def test_fused_projections_same_outputs(tmp_path):
    import copy

    from omni.llm import from_pretrained, save_pretrained
    from omni.llm.fusion import fuse_projections_

    torch.manual_seed(0)
    m = LongcatFlashForCausalLM(get_llm_config("debug")).eval()
    m.init_weights(std=0.08)
    f = copy.deepcopy(m)
    assert fuse_projections_(f) == 4 * m.config.num_layers  # 2 MLA + 2 dense MLPs per layer
    ids = _ids(10, 13)[None]
    assert (f(ids).logits - m(ids).logits).abs().max() < TOL
    assert f.state_dict().keys() == m.state_dict().keys()
    save_pretrained(f, str(tmp_path))  # views of one buffer must still save
    assert torch.equal(from_pretrained(str(tmp_path))(ids).logits, m(ids).logits)
    with torch.enable_grad():  # training path still reaches the parameters
        f.train()
        f(ids).logits.sum().backward()
        assert f.model.layers[0].mlps[0].gate_proj.weight.grad is not None

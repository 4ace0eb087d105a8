"""Serving with compiled decoder layers (`omni serve --decode-mode compiled`).

On a GPU the compiled layers are captured in CUDA graphs; here, on the CPU, the static decode
step runs them (bf16: torch compiles the experts' grouped matmul for bf16 only). Compiled
kernels fuse and round bf16 in another order, so the check is the backbone benchmark's
(`compiled_vs_eager_teacher_forced`): the same inputs step by step, logits within bf16 noise
and the same argmax nearly everywhere; the prompt's forward stays uncompiled and so exact."""

from __future__ import annotations

import pytest
import torch

from omni.config import get_omni_config
from omni.model import OmniModel
from omni.realtime import RealtimeOmni
from streaming.model_loader import prepare_decode
from tests.omni.test_realtime import _chunks


def _debug_model(dtype=torch.bfloat16) -> OmniModel:
    """A fresh random `debug` model, the same weights every call (the shared fixture is not
    copied: other tests leave state on it)."""
    torch.manual_seed(0)
    return OmniModel(get_omni_config("debug")).eval().to_dtype(dtype)


def _teacher_forced(model, rows: list[tuple[torch.Tensor, torch.Tensor]], slots_of_step) -> list[torch.Tensor]:
    cache = model.llm.new_cache(2, 64)
    return [model.step(cache, slots_of_step(k), ids, codec)[0] for k, (ids, codec) in enumerate(rows)]


def test_compiled_decode_steps_match_the_static_step():
    model, compiled = _debug_model(), _debug_model()
    model.set_decode_mode("static")
    assert prepare_decode(compiled, "compiled") == "static" and compiled.compiled
    compiled.set_decode_mode("static")
    cfg = model.config
    g = torch.Generator().manual_seed(0)
    # 6 steps of 2 slots, then 4 of slot 0 alone: the dynamic batch dimension serves both sizes
    batch = lambda k: [0, 1] if k < 6 else [0]
    rows = [(torch.randint(10, 400, (len(batch(k)),), generator=g),
             torch.randint(0, cfg.audio_vocab_size, (len(batch(k)), cfg.num_audio_heads), generator=g))
            for k in range(10)]
    ref = _teacher_forced(model, rows, batch)
    got = _teacher_forced(compiled, rows, batch)
    std = torch.cat(ref).float().std()
    worst = max(float((a - b).abs().max()) for a, b in zip(ref, got))
    agree = torch.cat([(a.argmax(-1) == b.argmax(-1)).float() for a, b in zip(ref, got)]).mean()
    # measured: worst 0.004 against a logit std of 0.16, every argmax the same
    assert worst < 0.1 * std and agree >= 0.9, (worst, float(std), float(agree))


def test_compiled_serving_prefills_exactly_and_replies():
    """Through RealtimeOmni: the reply prompt's logits (uncompiled) are bit-equal, the compiled
    decode steps run batched and alone."""
    model, compiled = _debug_model(), _debug_model()
    prepare_decode(compiled, "compiled")
    first = []
    for m in (model, compiled):
        rt = RealtimeOmni(m, max_slots=2, capacity=512, decode_mode="static")
        a, b = rt.open_slot("Be brief."), rt.open_slot()
        for k, ch in enumerate(_chunks(2)):
            rt.prefill([(a, rt.encode_chunk(a, ch)), (b, rt.encode_chunk(b, _chunks(2, seed=1)[k]))])
        rt.begin_responses([(a, ""), (b, "")])
        first.append(torch.stack([rt._slot(s).reply.logits for s in (a, b)]))
        outs = [rt.decode_step([a, b]) for _ in range(3)] + [rt.decode_step([a]) for _ in range(2)]
        assert all(o.text_token is not None for step in outs for o in step)
    assert torch.equal(first[0], first[1])


def test_compiled_decode_on_a_cpu_needs_bf16():
    fp32 = _debug_model(torch.float32)
    with pytest.raises(ValueError, match="needs bf16"):
        prepare_decode(fp32, "compiled")
    assert not fp32.compiled
    assert prepare_decode(fp32, "graph") == "graph" and not fp32.compiled

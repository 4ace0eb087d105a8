"""Compiling the decoder layers asks the experts' kernel-availability probes first.

The probes build generators and read results back to the host, which a full-graph
compile cannot trace: where a compiled decode step of few tokens was the first to
choose an experts backend, compiling failed ("Attempted to call function marked as
skipped: Generator.__new__", an a1b server on a GPU). `compile_layers` now runs them
eagerly, for the model's device and dtype, before any layer is compiled.
"""

from __future__ import annotations

import torch

from omni.config import get_llm_config
from omni.llm import LongcatFlashForCausalLM, compile_layers
from omni.llm import experts, moe_triton
from omni.llm.runner import uncompile_layers


def test_compile_layers_answers_the_kernel_probes_first(monkeypatch):
    monkeypatch.setattr(experts, "_PROBE", {})
    monkeypatch.setattr(moe_triton, "_PROBE", {})
    seen = []  # what the probes' caches held as each layer was compiled
    monkeypatch.setattr(torch.nn.Module, "compile",
                        lambda self, **kw: seen.append((dict(moe_triton._PROBE), dict(experts._PROBE))))
    m = LongcatFlashForCausalLM(get_llm_config("debug")).to(torch.bfloat16).eval()
    compile_layers(m)
    key = ("cpu", torch.bfloat16)
    assert len(seen) == len(m.model.layers)
    assert all(key in triton and key in grouped for triton, grouped in seen)
    assert moe_triton._PROBE[key] is False  # no Triton experts on a CPU
    uncompile_layers(m)

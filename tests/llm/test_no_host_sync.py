"""The backbone's training step (forward, backward) never reads a device value back:
every op that makes the host wait for the device (`.item()`, `nonzero`, data-dependent
shapes) is absent from it, so on a GPU the step queues without stalls (and compiles
without graph breaks). Checked at the dispatcher, on CPU: the same ops would sync a GPU."""

from __future__ import annotations

import traceback

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from omni.config import get_llm_config
from omni.llm.model import LongcatFlashForCausalLM

# ops whose result size or value the host must wait for
SYNCING = ("aten._local_scalar_dense", "aten.nonzero", "aten.item", "aten.equal", "aten.unique",
           "aten.masked_select", "aten.repeat_interleave.Tensor", "aten.bincount")


class HostReads(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.hits: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if str(func).startswith(SYNCING):
            self.hits.append(f"{func}\n" + "".join(traceback.format_stack(limit=12)[:-1]))
        return func(*args, **(kwargs or {}))


def test_the_backbone_training_step_reads_nothing_back() -> None:
    cfg = get_llm_config("debug")
    torch.manual_seed(0)
    model = LongcatFlashForCausalLM(cfg)
    model.set_expert_backend("grouped_mm")  # the training default where it runs
    ids = torch.randint(0, cfg.vocab_size, (2, 33))
    with HostReads() as reads:
        out = model(input_ids=ids[:, :-1], logits="all")
        loss = torch.nn.functional.cross_entropy(out.logits.float().flatten(0, 1), ids[:, 1:].flatten())
        loss.backward()
    assert not reads.hits, "host reads in the step:\n" + "\n".join(reads.hits[:3])
    assert all(p.grad is not None for p in model.model.layers[0].mlp.experts.parameters())


def test_the_check_sees_a_host_read() -> None:
    """The dispatcher hook catches what it must (a bmm expert call sizes its buckets on the host)."""
    cfg = get_llm_config("debug")
    torch.manual_seed(0)
    model = LongcatFlashForCausalLM(cfg)
    model.set_expert_backend("bmm")
    with HostReads() as reads:
        model(input_ids=torch.randint(0, cfg.vocab_size, (1, 16)), logits="all")
    assert reads.hits

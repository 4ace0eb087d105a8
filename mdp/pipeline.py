"""Pipeline parallelism of the LLM with torch.distributed.pipelining (1F1B).

`split_stage(model, pp_rank, pp)` keeps on this rank only what its stage owns:
stage 0 the input embeddings, every stage a contiguous block of decoder layers,
the last stage the final norm and the heads. The other submodules become
`Absent` placeholders, so parameter names (and checkpoint keys) are the same on
every layout.

The input embedding runs outside the schedule on stage 0 (it also consumes the
encoder outputs), and its result enters the pipeline as a leaf tensor: the
schedule accumulates its gradient over the micro-batches, and the trainer then
backpropagates it once into the embeddings and, through the ModalityBridge, the
encoders (MDP phase 4). The loss runs on the last stage inside the schedule.
"""

from __future__ import annotations

import inspect
from typing import Callable

import torch
from torch import nn
from torch.distributed.pipelining import PipelineStage, Schedule1F1B

from mdp.model import Absent, OmniTrainModel


def stage_layers(num_layers: int, pp: int) -> list[list[int]]:
    """Contiguous, as even as possible; earlier stages take the remainder."""
    if num_layers < pp:
        raise ValueError(f"pp={pp} stages need at least {pp} decoder layers, the model has {num_layers}")
    base, extra = divmod(num_layers, pp)
    out, start = [], 0
    for s in range(pp):
        n = base + (1 if s < extra else 0)
        out.append(list(range(start, start + n)))
        start += n
    return out


def split_stage(model: OmniTrainModel, pp_rank: int, pp: int) -> OmniTrainModel:
    """Drop (in place) everything stage `pp_rank` does not own."""
    keep = set(stage_layers(len(model.llm.model.layers), pp)[pp_rank])
    layers = model.llm.model.layers
    for i in range(len(layers)):
        if i not in keep:
            layers[i] = Absent()
    if pp_rank != 0:
        model.llm.model.embed_tokens = Absent()
        model.audio_embedding = Absent()
    if pp_rank != pp - 1:
        model.llm.model.norm = Absent()
        model.llm.lm_head = Absent()
        model.audio_head = Absent()
    return model


class StageModule(nn.Module):
    """forward(x) = this stage's decoder layers (+ final norm on the last stage)."""

    def __init__(self, model: OmniTrainModel, is_last: bool) -> None:
        super().__init__()
        self.model = model
        self.is_last = is_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.run_layers(x, final_norm=self.is_last)


def build_schedule(
    model: OmniTrainModel,
    pp_rank: int,
    pp: int,
    num_microbatches: int,
    device: torch.device,
    group,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> Schedule1F1B:
    stage = PipelineStage(StageModule(model, pp_rank == pp - 1), pp_rank, pp, device, group=group)
    kwargs = {}
    if "scale_grads" in inspect.signature(Schedule1F1B.__init__).parameters:
        kwargs["scale_grads"] = False  # the loss is already normalized by global token counts
    return Schedule1F1B(stage, n_microbatches=num_microbatches, loss_fn=loss_fn, **kwargs)

"""Explicit streaming state.

Every streaming module (audio encoder, codec decoder, LLM KV cache) keeps its
carried context in a typed state object that the caller owns. The module itself
stays stateless, so one module instance can serve many streams, a state can be
reset or dropped per stream, and `forward(full)` and a loop of
`step(chunk, state)` are the same computation (tests prove it).
"""

from __future__ import annotations

import dataclasses
from typing import Generic, TypeVar

import torch
from torch import nn


@dataclasses.dataclass
class StreamingState:
    """Base class: a dataclass of tensors (and ints) carried between chunks."""

    def reset(self) -> None:
        """Zero every tensor in place and set counters back to 0."""
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, torch.Tensor):
                v.zero_()
            elif isinstance(v, StreamingState):
                v.reset()
            elif isinstance(v, int) and not isinstance(v, bool):
                setattr(self, f.name, 0)

    def to(self, device: torch.device | str) -> "StreamingState":
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, (torch.Tensor, StreamingState)):
                setattr(self, f.name, v.to(device))
        return self


S = TypeVar("S", bound=StreamingState)


class StreamingModule(nn.Module, Generic[S]):
    """A module with a full-sequence `forward` and a chunked `step`.

    Subclasses implement `init_state(batch_size)` and `step(x, state)`; `step`
    returns only the outputs whose look-ahead has fully arrived, and `flush`
    returns the rest at end of stream.
    """

    def init_state(self, batch_size: int = 1, device: torch.device | str | None = None) -> S:
        raise NotImplementedError

    def step(self, x: torch.Tensor, state: S) -> torch.Tensor:
        raise NotImplementedError

    def flush(self, state: S) -> torch.Tensor:
        raise NotImplementedError

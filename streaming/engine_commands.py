"""What sessions send the engine, and what the engine sends back.

A session holds a handle (from `Engine.open`) and sends one command at a time
with `Engine.submit(handle, command)`. Commands are immutable values: the
engine never edits one in place (a confirmation that reaches a reply still
queued replaces its `Respond` with a confirmed copy).

Two kinds, by when the engine carries them out:
  queued: `Chunk`, `Text`, `Respond` wait in the slot's queue and run in order,
      between decode steps (a packet must be prefilled before the reply that
      follows it begins);
  control: `Confirm`, `Rollback`, `Interrupt`, `Truncate`, `Close` act as soon as
      the engine takes them, even while the slot is decoding (they steer or stop
      the reply under way).

Everything goes back to the session as `EngineEvent`s through the sink it gave
to `open` (called on the engine or the audio stage thread).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from omni.realtime_api import UserChunk


class SlotError(Exception):
    """A request of one session that the engine refuses before changing any state."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class EngineEvent:
    kind: str  # opened | delta | done | block | rolled_back | interrupted | truncated | context_reset | error
    #          | turn_end (info["p"]: the model's P(the user turn is complete), at a speculative reply's start)
    epoch: int = 0
    text: str = ""
    audio: np.ndarray | None = None  # float32 at the model's output rate
    info: dict[str, Any] = field(default_factory=dict)
    # on the reply's first delta with speech: the spans (component, start, end) of the
    # path that produced it, for the first-audio breakdown (streaming/timing.py)
    trace: list[tuple[str, float, float]] | None = None


# ---- queued commands ---------------------------------------------------------
@dataclass(frozen=True)
class Chunk:
    """One user packet (audio and the frames sampled inside it): encode, then prefill."""
    chunk: UserChunk


@dataclass(frozen=True)
class Text:
    """A whole text turn (system, user, assistant or tool) into the context."""
    role: str
    text: str


@dataclass(frozen=True)
class Respond:
    """Start reply `epoch`. A speculative reply decodes ahead but is closed only once
    confirmed; `opening` is text the reply is made to start with (a forced tool call)."""
    epoch: int
    speculative: bool
    max_steps: int | None = None
    out_rate: int | None = None  # the session's output rate (None: the model's)
    opening: str = ""


# ---- control commands ----------------------------------------------------------
@dataclass(frozen=True)
class Confirm:
    """The end of turn is confirmed: speculative reply `epoch` is the real one."""
    epoch: int


@dataclass(frozen=True)
class Rollback:
    """The user went on talking: forget speculative reply `epoch` as if never decoded."""
    epoch: int


@dataclass(frozen=True)
class Interrupt:
    """Stop reply `epoch` now (barge-in or cancel) and keep what was heard: the
    audio samples delivered (model rate) or, without audio, the characters."""
    epoch: int
    heard_samples: int | None
    delivered_chars: int | None
    reason: str  # barge_in | cancel
    delivered_blocks: int = 0  # tool calls the session was given: they stay in the context


@dataclass(frozen=True)
class Truncate:
    """The client played only `heard_samples` (model rate) of finished reply `epoch`."""
    epoch: int
    heard_samples: int


@dataclass(frozen=True)
class Close:
    """The session is gone: free its slot."""


QUEUED = (Chunk, Text, Respond)
SlotCommand = Chunk | Text | Respond | Confirm | Rollback | Interrupt | Truncate | Close


# ---- engine-internal inbox items (not per slot) -------------------------------------
@dataclass(frozen=True)
class OpenSlot:
    sink: Callable[[EngineEvent], None]
    system_prompt: str | None
    future: Any  # concurrent.futures.Future: the handle, or the reason it was refused


@dataclass(frozen=True)
class Barrier:
    future: Any  # resolved once every command before it was carried out


@dataclass(frozen=True)
class Wake:
    """Nothing to do but look again (an encoding finished, or the engine stops)."""

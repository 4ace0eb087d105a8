"""The model-side interface that the streaming engine drives.

`streaming/` never touches model internals; it drives one object satisfying
`RealtimeModel`, owned by the engine's worker thread. The implementation
(`omni.realtime.RealtimeOmni`) wraps an `OmniModel`, a pre-allocated KV cache
with one slot per session, per-slot streaming audio-encoder state and per-slot
sequence-builder state.

Life of a session (one KV slot):

    slot = m.open_slot()                          # prefills the system prompt
    enc = m.encode_chunk(slot, chunk)             # stage 2: 1 s of audio + frames
    m.prefill([(slot, enc), ...])                 # stage 3: batched over sessions
    mark = m.slot_length(slot)                    # snapshot before speculating
    m.begin_response(slot)                        # close user turn, open reply
                                                  # (begin_response(slot, opening): the reply
                                                  #  starts with that text, e.g. a forced tool call)
    outs = m.decode_step([slot, ...])             # batched, one LLM step each
    ... user resumes -> m.truncate(slot, mark)    # rollback: cache == never decoded
    ... barge-in     -> m.truncate(slot, kept); m.end_response(slot)
    m.end_response(slot)                          # close the assistant turn
    m.close_slot(slot)

Audio out: `new_audio_state()` per response, `decode_audio([(state, frame)])`
returns waveform pieces (3-frame look-ahead), `flush_audio(state)` the tail.

Notes on the implementation (`omni.realtime.RealtimeOmni`):
- `prefill` of a slot that is answering only buffers the chunk's frames (sparse,
  0.5 FPS) for the next user turn; nothing is written to its KV cache.
- `truncate(slot, n)` restores the slot exactly as it was at length n (KV cache,
  sequence-builder state); cutting inside a reply leaves it closed by the next
  `end_response` with `</longcat_s>`.
- Optional batched variant of stage 2: `encode_chunks([(slot, chunk), ...])`
  (one audio-encoder step over all slot rows, one packed ViT pass);
  `slot_token_ids(slot)` gives the text id of every cached position.
- Reply text may hold blocks that are never spoken (tool calls, thinking); the
  engine splits them off with omni.reply_stream.ReplyStream, so a model only
  writes its text as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

import numpy as np


@dataclass
class UserChunk:
    """One packet from the client: up to `chunk_seconds` of 16 kHz mono audio
    and the video frames sampled inside it (HxWx3 uint8 RGB), with the chunk's
    start time in seconds since the start of the session.

    `frame_times` (seconds, same clock as `start_time`, one per frame) places
    each frame by its own time, so the layout does not depend on where packets
    are split: dense frames are paired into visual units by the second of the
    user turn they fall into, across packets (a lone frame waits in the slot's
    state for its partner). None spreads the frames evenly over the packet and
    pairs them within it."""

    audio: np.ndarray  # float32 [-1, 1], shape [num_samples]
    frames: list[np.ndarray] = field(default_factory=list)
    start_time: float = 0.0
    speaking: bool = True  # dense (user speaking) or sparse (assistant answering) frames
    frame_times: list[float] | None = None  # time of each frame (seconds), or None: spread evenly


@dataclass
class StepOutput:
    """What one decode step produced for one slot."""

    text_token: int | None  # None while in the audio-only part of a segment
    text: str  # detokenized text added by this step ('' if none)
    codec_frame: np.ndarray | None  # int64 [4] codec values (no offset) of one 60 ms frame, or None
    done: bool  # the reply is over (no more steps for this slot)
    cut: bool = False  # ...because it reached a length limit, not the model's end of turn


class RealtimeModel(Protocol):
    input_sample_rate: int  # 16000
    output_sample_rate: int
    codec_frame_samples: int  # output samples per codec frame
    max_slots: int

    def open_slot(self, system_prompt: str | None = None) -> int: ...
    def close_slot(self, slot: int) -> None: ...
    def slot_length(self, slot: int) -> int: ...
    def truncate(self, slot: int, length: int) -> None: ...
    def encode_chunk(self, slot: int, chunk: UserChunk) -> Any: ...
    def prefill(self, items: Sequence[tuple[int, Any]]) -> None: ...
    def prefill_text(self, slot: int, role: str, text: str) -> None: ...
    def begin_response(self, slot: int, opening: str = "") -> None: ...
    # Optional, for a model that can batch them (the engine looks for them and otherwise
    # calls the one-slot methods): begin_responses(items: [(slot, opening)]) and
    # end_responses(slots), each one call for the replies of several sessions.
    def turn_end_prob(self, slot: int) -> float | None: ...
    def decode_step(self, slots: Sequence[int]) -> list[StepOutput]: ...
    def end_response(self, slot: int) -> None: ...
    def new_audio_state(self) -> Any: ...
    def decode_audio(self, items: Sequence[tuple[Any, np.ndarray]]) -> list[np.ndarray]: ...
    def flush_audio(self, state: Any) -> np.ndarray: ...

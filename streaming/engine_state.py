"""What the engine keeps per session: the slot record and its reply state.

A slot is in exactly one `SlotState`. Its life, with the commands and events
that move it (streaming/engine_commands.py):

    READY --Respond(speculative)--> SPECULATING --finished--> SPECULATED
    READY --Respond--> ANSWERING --finished--> ENDED
    SPECULATING --Confirm--> ANSWERING;  SPECULATED --Confirm--> ENDED
    SPECULATING / SPECULATED --Rollback--> READY  (context back to the snapshot)
    ANSWERING / SPECULATING / SPECULATED / ENDED --Interrupt--> ENDED (cut to what was heard)
    ENDED --next Chunk, Text or Respond--> READY  (the model closes the reply's turn)
    any --a failure, or a context reset--> READY;  any --Close--> CLOSED

ENDED exists because the model closes a reply's turn lazily: until the next
input, a `Truncate` (what the client really played) may still shorten it.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from omni.reply_stream import Piece, ReplyStream
from streaming.audio_stage import AudioJob
from streaming.engine_commands import EngineEvent
from streaming.protocol import StreamingResampler

CARRY_TURNS = 8  # most recent text turns carried into a fresh context
PUNCTUATION = set(".!?,;:\u3002\uff01\uff1f\uff0c\uff1b\uff1a")


class SlotState(enum.Enum):
    READY = "ready"  # no reply open: queued packets and texts go in
    SPECULATING = "speculating"  # decoding a reply the session has not confirmed yet (paused after a few frames)
    ANSWERING = "answering"  # decoding a confirmed reply
    SPECULATED = "speculated"  # a speculative reply that finished: closed once confirmed, or rolled back
    ENDED = "ended"  # the reply is over (finished or cut); its turn is closed before the next input
    CLOSED = "closed"  # the session is gone

    @property
    def decoding(self) -> bool:
        return self in (SlotState.SPECULATING, SlotState.ANSWERING)

    @property
    def replying(self) -> bool:
        """A reply is open in the model (begun, not yet ended or rolled back)."""
        return self in (SlotState.SPECULATING, SlotState.ANSWERING, SlotState.SPECULATED)

    @property
    def takes_input(self) -> bool:
        """Queued commands (packets, texts, a new reply) may run now."""
        return self in (SlotState.READY, SlotState.ENDED)


@dataclass
class Step:
    """One decode step of a reply, as cumulative counts (a barge-in cut keeps a prefix of steps)."""
    length: int  # slot length after this step
    chars: int  # text characters through this step (all of the reply's text)
    frames: int  # codec frames delivered through this step
    shown: int = 0  # characters of speakable text through this step
    cut_ok: bool = False  # a barge-in may cut here: its text holds punctuation, or it completed a tool call
    blocks: int = 0  # tool-call blocks handed to the session through this step


@dataclass
class Slot:
    handle: int  # what sessions use; stable even when the context is reset onto another model slot
    slot: int  # the model's KV-cache slot
    sink: Callable[[EngineEvent], None]
    system_prompt: str | None = None
    queue: deque = field(default_factory=deque)  # EncodeJob | Text | Respond, in the session's order
    state: SlotState = SlotState.READY
    gen: int = 0  # bumped when the model slot changes (context reset): older encodings are void
    history: deque = field(default_factory=lambda: deque(maxlen=CARRY_TURNS))  # recent (role, text) turns

    # the current (or last) reply
    epoch: int = -1
    mark: int = 0  # length before begin_response (the rollback snapshot)
    base: int = 0  # length right after begin_response
    max_steps: int = 0
    steps: list[Step] = field(default_factory=list)
    text: str = ""
    frames: int = 0
    shown: int = 0  # speakable characters so far
    blocks: int = 0  # tool-call blocks so far
    stream: ReplyStream = field(default_factory=ReplyStream)
    held: list = field(default_factory=list)  # AudioJobs of steps that only hold a possible tag start
    audio_state: Any = None
    resampler: StreamingResampler | None = None  # model rate -> the session's output rate

    # timing
    decode_time: float = 0.0
    t_begin: float = 0.0
    t_live: float = 0.0  # when it started running unthrottled (begin, or its confirmation)
    steps_live: int = 0  # steps already done at t_live
    t_ready: float = 0.0  # since when the reply waits for its next decode step
    packet_spans: list = field(default_factory=list)  # encode and prefill spans of the last packet prefilled
    trace: list | None = None  # spans of the reply's path to its first speech (until handed to stage 4)

    @property
    def closed(self) -> bool:  # read by the encoder stage
        return self.state is SlotState.CLOSED

    def begin_reply(self, speculative: bool, opening: str) -> None:
        """Fresh per-reply fields; `opening` is already in the context."""
        self.state = SlotState.SPECULATING if speculative else SlotState.ANSWERING
        self.steps, self.text, self.frames, self.decode_time, self.shown, self.blocks = [], opening, 0, 0.0, 0, 0
        self.stream, self.held = ReplyStream(), []
        self.stream.feed(opening)  # an opening is a block's start: nothing of it is spoken

    def cut(self, frame_samples: int, heard_samples: int | None, delivered_chars: int | None,
            min_blocks: int = 0) -> tuple[int, str]:
        """Slot length and text to keep: what was heard, cut at the last punctuation,
        and at least through the first `min_blocks` tool-call blocks (the session was
        given those calls; the model must go on knowing it made them)."""
        # the steps heard are a prefix: their cumulative counts never decrease
        if heard_samples is not None:
            frames = heard_samples // frame_samples
            heard = [st for st in self.steps if st.frames <= frames]
        else:
            heard = [st for st in self.steps if st.shown <= (delivered_chars or 0)]
        # the last heard step that holds punctuation or completed a tool call
        last = next((st for st in reversed(heard) if st.cut_ok), None)
        need = next((st for st in self.steps if st.blocks >= min_blocks), None) if min_blocks else None
        if need is not None and (last is None or need.length > last.length):
            last = need
        if last is None:
            return self.base, ""
        return last.length, self.text[: last.chars]

    def split_step(self, pieces: list[Piece], frame: Any) -> tuple[list[AudioJob], bool, int]:
        """Stage-4 jobs of one decode step, in order: speakable text, tool-call blocks
        (as marks), then the step's speech frame unless a block covers the step. While
        the stream only holds a possible tag start, the jobs wait (in `held`) for the
        next step to decide. Returns the jobs, whether a barge-in may cut here, and
        how many thinking sections the step closed."""
        def job(text: str = "", frame: Any = None, marks: list | None = None) -> AudioJob:
            return AudioJob(self.sink, self.epoch, self.audio_state, text, frame, self.resampler, marks=marks or [])

        jobs, cut_ok, hidden, thinking = [], False, self.stream.in_block, 0
        for p in pieces:
            if p.kind == "text":
                self.shown += len(p.text)
                cut_ok |= any(ch in PUNCTUATION for ch in p.text)
                jobs.append(job(p.text))
            else:
                hidden = True
                if p.kind == "call":
                    cut_ok |= p.complete
                    self.blocks += 1
                    jobs.append(job(marks=[{"kind": "call", "text": p.text, "complete": p.complete}]))
                else:
                    thinking += 1
        if frame is not None:  # with the step's last text, as one delta (like a step without blocks)
            if jobs and not jobs[-1].marks:
                jobs[-1].frame = frame
            else:
                jobs.append(job(frame=frame))
        jobs, self.held = self.held + jobs, []
        if hidden:  # a block starts, goes on or ends here: these steps' frames are not speech
            for j in jobs:
                j.frame = None
        if self.stream.hiding and not self.stream.in_block:  # a possible tag start: wait for the next step
            self.held, jobs = jobs, []
        self.frames += sum(j.frame is not None for j in jobs)
        return jobs or [job()], cut_ok, thinking

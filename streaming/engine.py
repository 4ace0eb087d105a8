"""The engine: one worker thread that owns the model and batches all sessions.

Sessions (on the asyncio loop) never touch the model; they submit commands and
receive `EngineEvent`s through a callback that the engine calls from its thread
(the session hops back to its loop with call_soon_threadsafe). Each iteration:

  1. take new commands; control commands (confirm, rollback, interrupt,
     truncate) act at once, the others queue per slot in order;
  2. stage 2 (own thread, streaming/encode_stage.py): packets at the head of a
     slot's queue go to the encoder as soon as they get there, batched over slots;
     stage 3: the encoded packets of all slots are prefilled in ONE batched call,
     repeated while packets wait (prefill never waits for a turn to end, so the
     context is ready when the user stops talking);
  3. stage 3: one batched decode step for every slot that is answering;
  4. stage 4 (own thread, streaming/audio_stage.py): the frames that step
     produced are decoded to speech while the LLM computes the next step.

Speculation: `respond(speculative=True)` snapshots the slot length, then
decodes. `rollback` truncates back to the snapshot (the cache is then exactly
what it was before), discards the output and returns to prefill. A response that
finished while still speculative is closed only once it is confirmed.
Barge-in (`interrupt`): decoding stops before the next step; the reply is cut
to the text whose audio was delivered, at its last punctuation; a later
`truncate` (what the client reports it played) may shorten it further until the
next packet of the new user turn is prefilled.

Faults stay in their session: every command of a slot runs guarded. A request
the engine refuses up front (a text that cannot fit the context) raises
`SlotError` before anything changes; any other failure ends that slot's reply
as failed and puts its model state back to the last turn boundary (or, if even
that fails, onto a fresh context). No other slot is touched.

Reply text that is not speech (tool-call blocks, thinking sections) is split off
as it streams (omni.reply_stream.ReplyStream): it never becomes a text delta,
and the speech frames of its steps are dropped (frames of steps that only hold a
possible tag start wait until the tag is ruled out). A complete or cut tool-call
block goes to the session as a "block" event, in order with the reply's deltas
(through stage 4); the session decides whether it is a valid call. A barge-in
cut keeps whole tool calls: a step that completes a call is a cut point, like a
step whose text holds punctuation.

Context: before each call the engine asks the model what it may write
(`prefill_cost`, `text_cost`, `response_cost`) and, when the slot would
overflow, starts the conversation over on a fresh context that keeps the
system prompt and the most recent text turns (the older context is dropped;
the packet that did not fit goes into the new context, nothing is lost).
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from omni.realtime_api import RealtimeModel
from omni.reply_stream import Piece, ReplyStream
from streaming.audio_stage import AudioJob, AudioStage
from streaming.encode_stage import EncodeJob, EncodeStage
from streaming.metrics import Metrics
from streaming.protocol import StreamingResampler

log = logging.getLogger(__name__)
PUNCTUATION = set(".!?,;:\u3002\uff01\uff1f\uff0c\uff1b\uff1a")
CONTROL = {"confirm", "rollback", "interrupt", "truncate", "close"}
PACKET_ROOM = 256  # tokens kept free beyond a call's own cost (turn markers, the next packet's start)
CARRY_TURNS = 8  # most recent text turns carried into a fresh context
CARRY_SHARE = 4  # ...as long as they fill at most 1/CARRY_SHARE of it


class SlotError(Exception):
    """A request of one session that the engine refuses before changing any state."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class EngineEvent:
    kind: str  # opened | delta | done | block | rolled_back | interrupted | truncated | error
    epoch: int = 0
    text: str = ""
    audio: np.ndarray | None = None  # float32 at the model's output rate
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Step:
    length: int  # slot length after this step
    chars: int  # cumulative text characters through this step (all of the reply's text)
    frames: int  # cumulative codec frames delivered through this step
    shown: int = 0  # cumulative characters of speakable text through this step
    cut_ok: bool = False  # a barge-in may cut here: its text holds punctuation, or it completed a tool call
    blocks: int = 0  # cumulative tool-call blocks handed to the session through this step


@dataclass
class _Slot:
    handle: int  # what sessions use; stable even when the context is reset onto another model slot
    slot: int  # the model's KV-cache slot
    sink: Callable[[EngineEvent], None]
    system_prompt: str | None = None
    queue: deque = field(default_factory=deque)
    mode: str = "idle"  # idle | decoding | finished
    epoch: int = -1
    confirmed: bool = False
    mark: int = 0  # length before begin_response (the rollback snapshot)
    base: int = 0  # length right after begin_response
    max_steps: int = 0
    steps: list[_Step] = field(default_factory=list)
    text: str = ""
    frames: int = 0
    shown: int = 0  # speakable characters so far
    blocks: int = 0  # tool-call blocks so far
    stream: ReplyStream = field(default_factory=ReplyStream)
    held: list = field(default_factory=list)  # AudioJobs of steps that only hold a possible tag start
    audio_state: Any = None
    resampler: StreamingResampler | None = None  # model rate -> the session's output rate
    pending_close: bool = False  # interrupted reply: end_response deferred (truncate may shorten it)
    decode_time: float = 0.0
    t_begin: float = 0.0
    t_live: float = 0.0  # when it started running unthrottled (begin, or its confirmation)
    steps_live: int = 0  # steps already done at t_live
    closed: bool = False
    gen: int = 0  # bumped when the model slot changes (context reset): older encodings are void
    history: deque = field(default_factory=lambda: deque(maxlen=CARRY_TURNS))  # recent (role, text) turns


class Engine:
    """Owns `model` on a dedicated thread. All public methods are thread-safe."""

    def __init__(self, model: RealtimeModel, metrics: Metrics | None = None, max_steps: int = 1000,
                 spec_ahead_frames: int = 8) -> None:
        self.model = model
        self.spec_ahead_frames = spec_ahead_frames
        self.metrics = metrics or Metrics()
        self.max_steps = max_steps
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.slots: dict[int, _Slot] = {}
        self._ids = itertools.count(1)
        self._thread = threading.Thread(target=self._run, name="omni-engine", daemon=True)
        self._stop = False
        self.out_rate = model.output_sample_rate
        self.frame_samples = model.codec_frame_samples
        self.thread_id: int | None = None
        self._barriers: list[Future] = []
        self.audio = AudioStage(model, self.metrics, EngineEvent)
        # held by the engine and the encoder stage around every use of encoder state
        self.encoder_lock = threading.Lock()
        self.encoder = EncodeStage(model, self.metrics, self.encoder_lock,
                                   on_done=lambda: self.inbox.put(("_wake", None, ())))

    # ---- public, any thread ------------------------------------------------
    def start(self) -> "Engine":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop = True
        self.inbox.put(("_wake", None, ()))
        self._thread.join(timeout=10)
        self.encoder.stop()
        self.audio.stop()

    def open(self, sink: Callable[[EngineEvent], None], system_prompt: str | None = None) -> Future:
        fut: Future = Future()
        self.inbox.put(("open", None, (sink, system_prompt, fut)))
        return fut

    def submit(self, handle: int, kind: str, *args: Any) -> None:
        self.inbox.put((kind, handle, args))

    def barrier(self) -> Future:
        """Resolves once every command submitted before it has been carried out
        (queued packets prefilled); responses may still be decoding."""
        fut: Future = Future()
        self.inbox.put(("barrier", None, (fut,)))
        return fut

    # ---- worker thread -----------------------------------------------------
    def _run(self) -> None:
        self.thread_id = threading.get_ident()
        import torch

        with torch.inference_mode():
            while not self._stop:
                try:
                    self._dispatch_encodes()
                    busy = any(self._actionable(s) or (s.mode == "decoding" and (s.confirmed or s.frames < self.spec_ahead_frames))
                               for s in self.slots.values())
                    self._take(block=not busy)  # packets being encoded wake it when done
                    self._dispatch_encodes()
                    self._prefill_and_control()
                    self._decode()
                    if self._barriers and not any(s.queue for s in self.slots.values()):
                        for fut in self._barriers:
                            fut.set_result(None)
                        self._barriers = []
                except Exception as e:  # a fault outside any one slot's guard: an engine bug
                    log.exception("engine iteration failed")
                    for s in list(self.slots.values()):
                        if s.mode != "idle":
                            self._fail(s, f"engine error: {e}")
            # shutting down: carry out the closes sessions sent on their way out, free every slot
            self._take(block=False)
            for s in list(self.slots.values()):
                try:
                    self._close(s)
                except Exception:
                    log.exception("closing slot %d at shutdown failed", s.slot)

    def _take(self, block: bool) -> None:
        items = []
        if block:
            items.append(self.inbox.get())
        while True:
            try:
                items.append(self.inbox.get_nowait())
            except queue.Empty:
                break
        for kind, slot, args in items:
            if kind == "_wake":
                continue
            if kind == "open":
                self._open(*args)
                continue
            if kind == "barrier":
                self._barriers.append(args[0])
                continue
            s = self.slots.get(slot)  # `slot` is the session's handle here
            if s is None or s.closed:
                continue
            if kind in CONTROL:
                self._guarded(s, kind, *args)
            elif kind == "chunk":
                s.queue.append((kind, (EncodeJob(s, s.gen, args[0]),)))
            else:
                s.queue.append((kind, args))

    # ---- stage 2 hand-off --------------------------------------------------
    def _dispatch_encodes(self) -> None:
        """Send every packet at the head of a slot's queue (up to its first other
        command: a turn close must see exactly the packets before it) to the encoder."""
        for s in self.slots.values():
            for i, (kind, args) in enumerate(s.queue):
                if kind != "chunk":
                    break
                job = args[0]
                if job.done and (job.stale or job.gen != s.gen):  # encoded for a slot that is gone
                    job = EncodeJob(s, s.gen, job.chunk, t_submit=job.t_submit)
                    s.queue[i] = (kind, (job,))
                if not job.dispatched:
                    self.encoder.put(job)

    @staticmethod
    def _actionable(s: _Slot) -> bool:
        if not s.queue or s.mode != "idle":
            return False
        kind, args = s.queue[0]
        return kind != "chunk" or args[0].done

    def _model_call(self, fn: Callable, *args: Any) -> Any:
        """A model call that touches encoder state (slots opening or closing, a user
        turn closing): never concurrent with the encoder stage, after its work."""
        with self.encoder_lock:
            self.encoder.main_waits()
            return fn(*args)

    # ---- fault isolation ----------------------------------------------------
    def _guarded(self, s: _Slot, kind: str, *args: Any) -> bool:
        """Run one command of one slot; a failure stays in that slot."""
        before = self.model.slot_length(s.slot)
        try:
            getattr(self, "_" + kind)(s, *args)
            return True
        except SlotError as e:
            self.metrics.inc("omni_engine_rejections_total")
            s.sink(EngineEvent("error", s.epoch, info={"code": e.code, "message": str(e)}))
        except Exception as e:
            log.exception("session %d: %s failed", s.handle, kind)
            self._fail(s, f"{kind} failed: {e}", before)
        return False

    def _fail(self, s: _Slot, message: str, before: int | None = None) -> None:
        """End this slot's reply (if any) as failed and put its model state back to
        a turn boundary: the length before the reply, or before the failed call."""
        self.metrics.inc("omni_engine_slot_errors_total")
        replying = s.mode != "idle" or s.pending_close
        try:
            target = s.mark if replying else before
            if target is not None:
                self.model.truncate(s.slot, min(target, self.model.slot_length(s.slot)))
            s.mode, s.audio_state, s.pending_close = "idle", None, False
        except Exception:
            log.exception("restoring slot %d failed; starting it over", s.slot)
            self._reset_context(s, "a failed call left the context unusable")
        s.sink(EngineEvent("error", s.epoch, info={"code": "server_error", "message": message}))

    def _cost(self, name: str, *args: Any, default: int) -> int:
        fn = getattr(self.model, name, None)
        return int(fn(*args)) if fn is not None else default

    def _open(self, sink: Callable[[EngineEvent], None], system_prompt: str | None, fut: Future) -> None:
        capacity = getattr(self.model, "capacity", None)
        if system_prompt and capacity:
            cost = self._cost("text_cost", "system", system_prompt, default=len(system_prompt.encode()))
            if cost > capacity // CARRY_SHARE:
                fut.set_exception(SlotError(
                    "instructions_too_long",
                    f"instructions of {cost} tokens exceed a quarter of the {capacity}-token context"))
                return
        try:
            slot = self._model_call(self.model.open_slot, system_prompt)
        except Exception as e:
            fut.set_exception(e)
            return
        handle = next(self._ids)
        self.slots[handle] = _Slot(handle, slot, sink, system_prompt)
        fut.set_result(handle)

    def _close(self, s: _Slot) -> None:
        with self.encoder_lock:
            s.closed = True
            self.encoder.main_waits()
            self.slots.pop(s.handle, None)
            self.model.close_slot(s.slot)
        self.metrics.inc("omni_engine_slots_closed_total")

    def _reset_context(self, s: _Slot, reason: str) -> None:
        """Start the conversation over on a fresh slot (context full, or a failed call):
        the system prompt and the most recent text turns that fill at most
        1/CARRY_SHARE of the context go along; older context is dropped."""
        with self.encoder_lock:
            s.gen += 1  # packets encoded for the old slot are encoded again
            self.encoder.main_waits()
            try:
                self.model.close_slot(s.slot)
            except Exception:  # the slot may be in any state after a failure
                log.exception("closing slot %d failed", s.slot)
            s.slot = self.model.open_slot(s.system_prompt)
        s.mode, s.pending_close, s.audio_state = "idle", False, None
        kept = self._carry_history(s)
        self.metrics.inc("omni_context_resets_total")
        s.sink(EngineEvent("context_reset", s.epoch, info={"reason": reason, "kept_turns": kept}))

    def _carry_history(self, s: _Slot) -> int:
        capacity = getattr(self.model, "capacity", None) or 0
        budget, turns = capacity // CARRY_SHARE, []
        for role, text in reversed(s.history):
            cost = self._cost("text_cost", role, text, default=len(text.encode()))
            if cost > budget:
                break
            budget -= cost
            turns.append((role, text))
        turns.reverse()
        for role, text in turns:
            try:
                self.model.prefill_text(s.slot, role, text)
            except Exception:  # the fresh context stays usable without it
                log.exception("carrying a %s turn into a fresh context failed", role)
                break
        s.history = deque(turns, maxlen=CARRY_TURNS)
        return len(turns)

    def _room(self, s: _Slot, need: int) -> None:
        capacity = getattr(self.model, "capacity", None)
        if not capacity or self.model.slot_length(s.slot) + need <= capacity:
            return
        self._reset_context(s, f"the conversation reached the {capacity}-token context; "
                               "it goes on with the most recent text turns")
        if self.model.slot_length(s.slot) + need > capacity:
            raise SlotError("input_too_long", f"a request of {need} tokens cannot fit the {capacity}-token context")

    def _prefill_and_control(self) -> None:
        """Drain per-slot queues: batched prefill of packets, in-order control."""
        while True:
            batch: list[tuple[_Slot, EncodeJob]] = []
            progressed = False
            for s in list(self.slots.values()):
                while s.queue and s.mode == "idle":
                    kind, args = s.queue[0]
                    if kind == "chunk":
                        job = args[0]
                        if not job.done or job.stale or job.gen != s.gen:
                            break  # still with the encoder (or encoded for a former slot: again)
                        s.queue.popleft()
                        if job.error is not None:
                            self.metrics.inc("omni_encode_errors_total")
                            s.sink(EngineEvent("error", s.epoch, info={"message": f"encoding a packet failed: {job.error}"}))
                            progressed = True
                            continue
                        batch.append((s, job))
                        break  # one packet per slot per batch keeps the batch fair
                    s.queue.popleft()
                    progressed = True
                    self._guarded(s, kind, *args)
            if batch:
                self._prefill(batch)
                if any(s.mode == "decoding" and s.confirmed for s in self.slots.values()):
                    return  # one prefill batch per decode step: a burst of packets must not stall replies
            if not batch and not progressed:
                return

    def _close_reply(self, s: _Slot) -> None:
        if s.pending_close:
            s.pending_close = False
            self.model.end_response(s.slot)

    def _prefill(self, batch: list[tuple[_Slot, EncodeJob]]) -> None:
        t0 = time.perf_counter()
        items, ready, before = [], [], []
        for s, job in batch:
            if not self._guarded(s, "ready_packet", job):
                continue  # refused or failed: that session got its error, the others go on
            ready.append((s, job))
            items.append((s.slot, job.result))
            before.append(self.model.slot_length(s.slot))
            self.metrics.observe("omni_packet_wait_seconds", time.perf_counter() - job.t_submit)
        if not items:
            return
        try:
            self.model.prefill(items)
        except Exception:
            log.exception("batched prefill failed; retrying one session at a time")
            # the failed call may have moved every slot's builder on: back to where each was
            for (s, _), item, length in zip(ready, items, before):
                try:
                    self.model.truncate(s.slot, length)
                    self.model.prefill([item])
                except Exception as e:
                    log.exception("session %d: prefill failed", s.handle)
                    self._fail(s, f"prefill failed: {e}", length)
        dt = time.perf_counter() - t0
        self.metrics.observe("omni_prefill_packet_seconds", dt / len(items))
        self.metrics.observe("omni_prefill_batch_size", len(items))

    def _ready_packet(self, s: _Slot, job: EncodeJob) -> None:
        """Make room for an encoded packet (by its real token cost) and have its
        encoding usable on this stream and for this slot."""
        self._close_reply(s)
        cost = self._cost("prefill_cost", s.slot, job.result, default=64 * len(job.chunk.frames) + 32)
        self._room(s, PACKET_ROOM + cost)
        if job.gen != s.gen:  # the context was reset just now: encode for the new slot
            with self.encoder_lock:
                self.encoder.main_waits()
                job.result, job.event = self.model.encode_chunk(s.slot, job.chunk), None
            job.gen = s.gen
        if job.event is not None:
            _consume_on_current_stream(job.event, job.result)
            job.event = None

    def _text(self, s: _Slot, role: str, text: str) -> None:
        capacity = getattr(self.model, "capacity", None)
        cost = self._cost("text_cost", role, text, default=len(text.encode()))
        if capacity and cost + PACKET_ROOM > capacity // 2:
            raise SlotError("instructions_too_long" if role == "system" else "input_too_long",
                            f"a {role} text of {cost} tokens cannot fit half of the {capacity}-token context")
        self._close_reply(s)
        self._room(s, PACKET_ROOM + cost)
        self.model.prefill_text(s.slot, role, text)
        s.history.append((role, text))

    def _respond(self, s: _Slot, epoch: int, speculative: bool, max_steps: int | None,
                 out_rate: int | None = None, opening: str = "") -> None:
        """Start a reply; `opening` is text it is made to start with (a forced tool call)."""
        self._close_reply(s)
        s.epoch = epoch  # from here on, a failure is this reply's: its error carries this epoch
        s.max_steps = min(max_steps or self.max_steps, self.max_steps)
        self._room(s, s.max_steps + PACKET_ROOM + self._cost("response_cost", s.slot, default=0))
        s.mark = self.model.slot_length(s.slot)
        self._model_call(self.model.begin_response, s.slot, *((opening,) if opening else ()))
        s.base = self.model.slot_length(s.slot)
        s.confirmed, s.mode = not speculative, "decoding"
        s.steps, s.text, s.frames, s.decode_time, s.shown, s.blocks = [], opening, 0, 0.0, 0, 0
        s.stream, s.held = ReplyStream(), []
        s.stream.feed(opening)  # an opening is a block's start: nothing of it is spoken
        s.audio_state = self.model.new_audio_state()
        s.resampler = StreamingResampler(self.out_rate, out_rate) if out_rate and out_rate != self.out_rate else None
        s.t_begin = s.t_live = time.perf_counter()
        s.steps_live = 0

    def _drop_queued_respond(self, s: _Slot, epoch: int) -> bool:
        for i, (kind, args) in enumerate(s.queue):
            if kind == "respond" and args[0] == epoch:
                del s.queue[i]
                return True
        return False

    def _confirm(self, s: _Slot, epoch: int) -> None:
        if s.epoch == epoch and s.mode != "idle":
            s.confirmed = True
            s.t_live, s.steps_live = time.perf_counter(), len(s.steps)
            if s.mode == "finished":
                self._finish(s)
        else:  # not started yet: it starts confirmed
            for i, (kind, args) in enumerate(s.queue):
                if kind == "respond" and args[0] == epoch:
                    s.queue[i] = (kind, (epoch, False, *args[2:]))

    def _rollback(self, s: _Slot, epoch: int) -> None:
        if s.epoch == epoch and s.mode != "idle" and not s.confirmed:
            self.model.truncate(s.slot, s.mark)
            s.mode, s.audio_state = "idle", None
            self.metrics.inc("omni_rollbacks_total")
            s.sink(EngineEvent("rolled_back", epoch, info={"length": s.mark, "steps": len(s.steps)}))
        elif self._drop_queued_respond(s, epoch):
            s.sink(EngineEvent("rolled_back", epoch, info={"length": self.model.slot_length(s.slot), "steps": 0}))

    def _cut(self, s: _Slot, heard_samples: int | None, delivered_chars: int | None,
             min_blocks: int = 0) -> tuple[int, str]:
        """Slot length and text to keep: what was heard, cut at the last punctuation,
        and at least through the first `min_blocks` tool-call blocks (the session was
        given those calls; the model must go on knowing it made them)."""
        # the steps heard are a prefix: their cumulative counts never decrease
        if heard_samples is not None:
            frames = heard_samples // self.frame_samples
            heard = [st for st in s.steps if st.frames <= frames]
        else:
            heard = [st for st in s.steps if st.shown <= (delivered_chars or 0)]
        # the last heard step that holds punctuation or completed a tool call
        last = next((st for st in reversed(heard) if st.cut_ok), None)
        need = next((st for st in s.steps if st.blocks >= min_blocks), None) if min_blocks else None
        if need is not None and (last is None or need.length > last.length):
            last = need
        if last is None:
            return s.base, ""
        return last.length, s.text[: last.chars]

    def _interrupt(self, s: _Slot, epoch: int, heard_samples: int | None, delivered_chars: int | None,
                   reason: str, delivered_blocks: int = 0) -> None:
        finished = s.epoch == epoch and s.mode == "idle" and s.pending_close  # decoded, maybe still playing
        if not finished and (s.epoch != epoch or s.mode == "idle"):
            if self._drop_queued_respond(s, epoch):
                s.sink(EngineEvent("interrupted", epoch, info={"kept_text": "", "reason": reason}))
            return
        length, kept = self._cut(s, heard_samples, delivered_chars, delivered_blocks)
        self.model.truncate(s.slot, length)
        if finished and s.history and s.history[-1] == ("assistant", s.text):
            s.history.pop()  # its full text went in when it finished; what was heard replaces it
        if kept.strip():
            s.history.append(("assistant", kept))
        s.mode, s.audio_state, s.pending_close = "idle", None, True
        self.metrics.inc("omni_interruptions_total" if reason == "barge_in" else "omni_cancellations_total")
        s.sink(EngineEvent("interrupted", epoch, text=kept, info={"length": length, "reason": reason}))

    def _truncate(self, s: _Slot, epoch: int, heard_samples: int) -> None:
        if s.epoch == epoch and s.pending_close and s.mode == "idle":
            length, kept = self._cut(s, heard_samples, None, s.steps[-1].blocks if s.steps else 0)
            if length < self.model.slot_length(s.slot):
                self.model.truncate(s.slot, length)
            s.sink(EngineEvent("truncated", epoch, text=kept, info={"applied": True}))
        else:
            s.sink(EngineEvent("truncated", epoch, info={"applied": False}))

    def _finish(self, s: _Slot) -> None:
        """A finished, confirmed reply. Its turn is closed lazily (before the next
        prefill), so a truncate for what the client actually played can still
        shorten it while the user barges in over the playback."""
        s.mode, s.pending_close = "idle", True
        if s.text.strip():
            s.history.append(("assistant", s.text))

    def _decode(self) -> None:
        # a speculative reply pauses once it holds `spec_ahead_frames` of speech: more
        # cannot leave before the confirmation anyway, and the batch is better spent
        # on replies that are being delivered (and nothing is wasted on a rollback)
        active = [s for s in self.slots.values() if s.mode == "decoding"
                  and (s.confirmed or s.frames < self.spec_ahead_frames)]
        if not active:
            return
        t0 = time.perf_counter()
        try:
            outs = self.model.decode_step([s.slot for s in active])
        except Exception as e:
            # one forward for all: its replies fail (rolled out of the context); the sessions go on
            log.exception("decode step failed")
            for s_ in active:
                self._fail(s_, f"decode step failed: {e}")
            return
        dt = time.perf_counter() - t0
        self.metrics.observe("omni_decode_step_seconds", dt)
        self.metrics.observe("omni_decode_batch_size", len(active))
        for s, out in zip(active, outs):
            s.text += out.text
            pieces = s.stream.feed(out.text)
            finished = out.done or len(s.steps) + 1 >= s.max_steps
            if finished:
                pieces += s.stream.finish()
            jobs, cut_ok = self._split_step(s, pieces, out.codec_frame)
            s.steps.append(_Step(self.model.slot_length(s.slot), len(s.text), s.frames, s.shown, cut_ok, s.blocks))
            s.decode_time += dt
            job = jobs[-1]
            if finished:
                s.mode = "finished"
                job.done_info = {
                    # cut by the step cap or a full context: incomplete, as the protocol says
                    "status": "completed" if out.done and not getattr(out, "cut", False) else "incomplete",
                    "steps": len(s.steps),
                    "frames": s.frames,
                    "decode_seconds": s.decode_time,
                    "wall_seconds": time.perf_counter() - s.t_begin,
                    # decode rate while running unthrottled (a speculative reply pauses until confirmed)
                    "live_steps": len(s.steps) - s.steps_live,
                    "live_seconds": time.perf_counter() - s.t_live,
                    "audio_seconds": s.frames * self.frame_samples / self.out_rate,
                }
            for j in jobs:
                if j.text or j.frame is not None or j.done_info is not None or j.marks:
                    self.audio.put(j)  # stage 4 runs on its own thread
            if job.done_info is not None:
                if s.confirmed:
                    self._finish(s)

    def _split_step(self, s: _Slot, pieces: list[Piece], frame: Any) -> tuple[list[AudioJob], bool]:
        """Stage-4 jobs of one step, in order: speakable text, tool-call blocks (as
        marks), then the step's speech frame unless a block covers the step. While
        the stream only holds a possible tag start, the jobs wait (in `s.held`) for
        the next step to decide. Returns the jobs and whether a barge-in may cut here."""
        def job(text: str = "", frame: Any = None, marks: list | None = None) -> AudioJob:
            return AudioJob(s.sink, s.epoch, s.audio_state, text, frame, s.resampler, marks=marks or [])

        jobs, cut_ok, hidden = [], False, s.stream.in_block
        for p in pieces:
            if p.kind == "text":
                s.shown += len(p.text)
                cut_ok |= any(ch in PUNCTUATION for ch in p.text)
                jobs.append(job(p.text))
            else:
                hidden = True
                if p.kind == "call":
                    cut_ok |= p.complete
                    s.blocks += 1
                    jobs.append(job(marks=[{"kind": "call", "text": p.text, "complete": p.complete}]))
                else:
                    self.metrics.inc("omni_thinking_sections_total")
        if frame is not None:  # with the step's last text, as one delta (like a step without blocks)
            if jobs and not jobs[-1].marks:
                jobs[-1].frame = frame
            else:
                jobs.append(job(frame=frame))
        jobs, s.held = s.held + jobs, []
        if hidden:  # a block starts, goes on or ends here: these steps' frames are not speech
            for j in jobs:
                j.frame = None
        if s.stream.hiding and not s.stream.in_block:  # a possible tag start: wait for the next step
            s.held, jobs = jobs, []
        s.frames += sum(j.frame is not None for j in jobs)
        return jobs or [job()], cut_ok


def _consume_on_current_stream(event: Any, result: Any) -> None:
    """Make the engine's CUDA stream wait for the encoder stream's work and tell the
    allocator that the result's tensors are used on it too."""
    import torch

    torch.cuda.current_stream().wait_event(event)
    stack = [result]
    while stack:
        x = stack.pop()
        if isinstance(x, torch.Tensor):
            if x.is_cuda:
                x.record_stream(torch.cuda.current_stream())
        elif isinstance(x, (list, tuple)):
            stack.extend(x)
        elif hasattr(x, "__dataclass_fields__"):
            stack.extend(getattr(x, f) for f in x.__dataclass_fields__)

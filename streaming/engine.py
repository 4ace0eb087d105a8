"""The engine: one worker thread that owns the model and batches all sessions.

Sessions (on the asyncio loop) never touch the model; they submit typed
commands (streaming/engine_commands.py) and receive `EngineEvent`s through a
callback that the engine calls from its thread (the session hops back to its
loop with call_soon_threadsafe). A slot's state is one `SlotState`
(streaming/engine_state.py, which draws its life). Each iteration:

  1. take new commands; control commands (Confirm, Rollback, Interrupt,
     Truncate, Close) act at once, the others queue per slot in order;
  2. stage 2 (own thread, streaming/encode_stage.py): packets at the head of a
     slot's queue go to the encoder as soon as they get there, batched over slots;
     stage 3: the encoded packets of all slots are prefilled in ONE batched call,
     repeated while packets wait (prefill never waits for a turn to end, so the
     context is ready when the user stops talking); while replies decode, one such
     call per decode step, and a packet in the middle of a turn may wait up to
     PREFILL_WAIT_S for a later call, unless a reply or a text waits behind it
     (that reply then begins right after the call);
  3. stage 3: one batched decode step for every slot that is answering;
  4. stage 4 (own thread, streaming/audio_stage.py): the frames that step
     produced are decoded to speech while the LLM computes the next step.

Speculation: `Respond(speculative=True)` snapshots the slot length, then
decodes. `Rollback` truncates back to the snapshot (the cache is then exactly
what it was before), discards the output and returns to prefill. A response that
finished while still speculative is closed only once it is confirmed.
Barge-in (`Interrupt`): decoding stops before the next step; the reply is cut
to the text whose audio was delivered, at its last punctuation; a later
`Truncate` (what the client reports it played) may shorten it further until the
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

import asyncio
import itertools
import logging
import queue
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import replace
from typing import Any, Callable

from omni.realtime_api import RealtimeModel
from streaming.audio_stage import AudioStage
from streaming.encode_stage import EncodeJob, EncodeStage, EncodeState
from streaming.engine_commands import (Barrier, Chunk, Close, Confirm, EngineEvent, Interrupt, OpenSlot, Respond,
                                       Rollback, SlotCommand, SlotError, Text, Truncate, Wake)
from streaming.engine_state import CARRY_TURNS, Slot, SlotState, Step
from streaming.metrics import Metrics
from streaming.protocol import StreamingResampler
from streaming.timing import add_span, observe_stage, span_end

__all__ = ["Engine", "EngineEvent", "EngineSlot", "SlotError"]

log = logging.getLogger(__name__)
# While replies decode, a packet in the middle of a user's turn may wait this long to be
# prefilled: decode steps (a reply's first audio, real-time speech) then run back to back
# instead of one per prefill call, and the packets that waited go in one larger batch. A
# packet that something waits behind (the turn's reply, a text item) goes at once.
PREFILL_WAIT_S = 0.25
PACKET_ROOM = 256  # tokens kept free beyond a call's own cost (turn markers, the next packet's start)
CARRY_SHARE = 4  # text turns carried into a fresh context fill at most 1/CARRY_SHARE of it


class Engine:
    """Owns `model` on a dedicated thread. All public methods are thread-safe."""

    def __init__(self, model: RealtimeModel, metrics: Metrics | None = None, max_steps: int = 1000,
                 spec_ahead_frames: int = 8, prefill_wait_s: float = PREFILL_WAIT_S) -> None:
        self.model = model
        self.spec_ahead_frames = spec_ahead_frames
        self.prefill_wait_s = prefill_wait_s
        self.metrics = metrics or Metrics()
        self.max_steps = max_steps
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()  # (handle or None, command)
        self.slots: dict[int, Slot] = {}
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
                                   on_done=lambda: self.inbox.put((None, Wake())))

    # ---- public, any thread ------------------------------------------------
    def start(self) -> "Engine":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop = True
        self.inbox.put((None, Wake()))
        self._thread.join(timeout=10)
        self.encoder.stop()
        self.audio.stop()

    def open(self, sink: Callable[[EngineEvent], None], system_prompt: str | None = None) -> Future:
        """A new slot; the future resolves to its handle (or to the SlotError that refused it)."""
        fut: Future = Future()
        self.inbox.put((None, OpenSlot(sink, system_prompt, fut)))
        return fut

    def submit(self, handle: int | None, command: SlotCommand) -> None:
        self.inbox.put((handle, command))

    def barrier(self) -> Future:
        """Resolves once every command submitted before it has been carried out
        (queued packets prefilled); responses may still be decoding."""
        fut: Future = Future()
        self.inbox.put((None, Barrier(fut)))
        return fut

    # ---- worker thread -----------------------------------------------------
    def _run(self) -> None:
        self.thread_id = threading.get_ident()
        import torch

        with torch.inference_mode():
            while not self._stop:
                try:
                    self._dispatch_encodes()
                    busy = any(self._actionable(s) or self._may_step(s) for s in self.slots.values())
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
                        if s.state.replying:
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
        for handle, command in items:
            match command:
                case Wake():
                    continue
                case OpenSlot():
                    self._open(command)
                    continue
                case Barrier(future=fut):
                    self._barriers.append(fut)
                    continue
            s = self.slots.get(handle)
            if s is None or s.closed:
                continue
            match command:
                case Chunk(chunk=chunk):
                    s.queue.append(EncodeJob(s, s.gen, chunk))
                case Text() | Respond():
                    s.queue.append(command)
                case _:  # control: at once, even while the slot decodes
                    self._guarded(s, command)

    def _carry_out(self, s: Slot, command: SlotCommand) -> None:
        match command:
            case Text(role=role, text=text):
                self._text(s, role, text)
            case Respond():
                self._respond(s, command)
            case Confirm(epoch=epoch):
                self._confirm(s, epoch)
            case Rollback(epoch=epoch):
                self._rollback(s, epoch)
            case Interrupt():
                self._interrupt(s, command)
            case Truncate(epoch=epoch, heard_samples=heard):
                self._truncate(s, epoch, heard)
            case Close():
                self._close(s)
            case _:
                raise TypeError(f"not an engine command: {command!r}")

    # ---- stage 2 hand-off --------------------------------------------------
    def _dispatch_encodes(self) -> None:
        """Send every packet at the head of a slot's queue (up to its first other
        command: a turn close must see exactly the packets before it) to the encoder."""
        for s in self.slots.values():
            for i, job in enumerate(s.queue):
                if not isinstance(job, EncodeJob):
                    break
                if job.state is EncodeState.STALE or (job.state.finished and job.gen != s.gen):
                    # encoded for a slot that is gone: again, for the current one
                    job = s.queue[i] = EncodeJob(s, s.gen, job.chunk, t_submit=job.t_submit)
                if job.state is EncodeState.WAITING:
                    self.encoder.put(job)

    @staticmethod
    def _actionable(s: Slot) -> bool:
        if not s.queue or not s.state.takes_input:
            return False
        head = s.queue[0]
        return not isinstance(head, EncodeJob) or head.state.finished

    def _may_step(self, s: Slot) -> bool:
        # a speculative reply pauses once it holds `spec_ahead_frames` of speech: more
        # cannot leave before the confirmation anyway, and the batch is better spent
        # on replies that are being delivered (and nothing is wasted on a rollback)
        return s.state is SlotState.ANSWERING or (s.state is SlotState.SPECULATING
                                                  and s.frames < self.spec_ahead_frames)

    def _model_call(self, fn: Callable, *args: Any) -> Any:
        """A model call that touches encoder state (slots opening or closing, a user
        turn closing): never concurrent with the encoder stage, after its work."""
        with self.encoder_lock:
            self.encoder.main_waits()
            return fn(*args)

    # ---- fault isolation ----------------------------------------------------
    def _guarded(self, s: Slot, command: SlotCommand | EncodeJob) -> bool:
        """Carry out one command of one slot (an EncodeJob: ready its packet for
        prefill); a failure stays in that slot."""
        # the name shows in the error the session gets ("respond failed: ...")
        kind = "ready_packet" if isinstance(command, EncodeJob) else type(command).__name__.lower()
        before = self.model.slot_length(s.slot)
        try:
            if isinstance(command, EncodeJob):
                self._ready_packet(s, command)
            else:
                self._carry_out(s, command)
            return True
        except Exception as e:
            self._refused_or_failed(s, kind, e, before)
        return False

    def _refused_or_failed(self, s: Slot, kind: str, e: Exception, before: int | None) -> None:
        """A command of one slot raised: a refusal (SlotError) is that session's typed error;
        anything else fails its reply and restores its context to `before`."""
        if isinstance(e, SlotError):
            self.metrics.inc("omni_engine_rejections_total")
            s.sink(EngineEvent("error", s.epoch, info={"code": e.code, "message": str(e)}))
            return
        log.error("session %d: %s failed", s.handle, kind, exc_info=e)
        self._fail(s, f"{kind} failed: {e}", before)

    def _fail(self, s: Slot, message: str, before: int | None = None) -> None:
        """End this slot's reply (if any) as failed and put its model state back to
        a turn boundary: the length before the reply, or before the failed call."""
        self.metrics.inc("omni_engine_slot_errors_total")
        if s.state is not SlotState.CLOSED:  # a closed slot has no model state left to restore
            try:
                target = s.mark if s.state is not SlotState.READY else before
                if target is not None:
                    self.model.truncate(s.slot, min(target, self.model.slot_length(s.slot)))
                s.state, s.audio_state = SlotState.READY, None
            except Exception:
                log.exception("restoring slot %d failed; starting it over", s.slot)
                self._reset_context(s, "a failed call left the context unusable")
        s.sink(EngineEvent("error", s.epoch, info={"code": "server_error", "message": message}))

    def _cost(self, name: str, *args: Any, default: int) -> int:
        fn = getattr(self.model, name, None)
        return int(fn(*args)) if fn is not None else default

    # ---- slots and their context ----------------------------------------------
    def _open(self, cmd: OpenSlot) -> None:
        capacity = getattr(self.model, "capacity", None)
        if cmd.system_prompt and capacity:
            cost = self._cost("text_cost", "system", cmd.system_prompt, default=len(cmd.system_prompt.encode()))
            if cost > capacity // CARRY_SHARE:
                cmd.future.set_exception(SlotError(
                    "instructions_too_long",
                    f"instructions of {cost} tokens exceed a quarter of the {capacity}-token context"))
                return
        try:
            slot = self._model_call(self.model.open_slot, cmd.system_prompt)
        except Exception as e:
            cmd.future.set_exception(e)
            return
        handle = next(self._ids)
        self.slots[handle] = Slot(handle, slot, cmd.sink, cmd.system_prompt)
        cmd.future.set_result(handle)

    def _close(self, s: Slot) -> None:
        with self.encoder_lock:
            s.state = SlotState.CLOSED  # first: the encoder stage skips its packets from now on
            self.encoder.main_waits()
            self.slots.pop(s.handle, None)
            self.model.close_slot(s.slot)
        self.metrics.inc("omni_engine_slots_closed_total")

    def _reset_context(self, s: Slot, reason: str) -> None:
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
        s.state, s.audio_state = SlotState.READY, None
        kept = self._carry_history(s)
        self.metrics.inc("omni_context_resets_total")
        s.sink(EngineEvent("context_reset", s.epoch, info={"reason": reason, "kept_turns": kept}))

    def _carry_history(self, s: Slot) -> int:
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

    def _room(self, s: Slot, need: int) -> None:
        capacity = getattr(self.model, "capacity", None)
        if not capacity or self.model.slot_length(s.slot) + need <= capacity:
            return
        self._reset_context(s, f"the conversation reached the {capacity}-token context; "
                               "it goes on with the most recent text turns")
        if self.model.slot_length(s.slot) + need > capacity:
            raise SlotError("input_too_long", f"a request of {need} tokens cannot fit the {capacity}-token context")

    # ---- queued commands: packets, texts, replies -------------------------------
    def _prefill_and_control(self) -> None:
        """Drain per-slot queues: batched prefill of packets, batched reply starts,
        in-order commands."""
        while True:
            batch: list[tuple[Slot, EncodeJob]] = []
            begins: list[tuple[Slot, Respond]] = []
            progressed = False
            for s in list(self.slots.values()):
                while s.queue and s.state.takes_input:
                    head = s.queue[0]
                    if isinstance(head, Respond):  # begun below, with the other slots' replies
                        s.queue.popleft()
                        begins.append((s, head))
                        progressed = True
                        break
                    if isinstance(head, EncodeJob):
                        if head.state not in (EncodeState.ENCODED, EncodeState.FAILED) or head.gen != s.gen:
                            break  # still with the encoder (or encoded for a former slot: again)
                        if head.state is EncodeState.FAILED:
                            s.queue.popleft()
                            self.metrics.inc("omni_encode_errors_total")
                            s.sink(EngineEvent("error", s.epoch,
                                               info={"message": f"encoding a packet failed: {head.error}"}))
                            progressed = True
                            continue
                        batch.append((s, head))  # taken off its queue below, unless it may wait
                        break  # one packet per slot per batch keeps the batch fair
                    s.queue.popleft()
                    progressed = True
                    self._guarded(s, head)
            if begins:
                self._respond_batch(begins)
            if batch and self._may_wait(batch):
                batch = []
            for s, _ in batch:
                s.queue.popleft()
            if batch:
                self._prefill(batch)
                if any(s.state is SlotState.ANSWERING for s in self.slots.values()):
                    # one prefill batch per decode step: a burst of packets must not stall replies;
                    # but a reply queued right behind a packet just prefilled begins now, not a step later
                    self._respond_batch([(s, s.queue.popleft()) for s, _ in batch
                                         if s.queue and s.state.takes_input and isinstance(s.queue[0], Respond)])
                    return
            if not batch and not progressed:
                return

    def _may_wait(self, batch: list[tuple[Slot, EncodeJob]]) -> bool:
        """Whether a batch of encoded packets may wait for a later prefill call (PREFILL_WAIT_S):
        only while replies decode, and only if no packet is due: none has waited its time,
        and nothing is queued behind any of them. Once one is due, all go together."""
        if self.prefill_wait_s <= 0 or not any(self._may_step(s) for s in self.slots.values()):
            return False
        now = time.perf_counter()
        return not any(now - job.t_end >= self.prefill_wait_s or
                       any(not isinstance(c, EncodeJob) for c in s.queue) for s, job in batch)

    def _close_replies(self, slots: list[Slot]) -> None:
        """Close the ended replies of several slots with one model call (`end_responses`, where
        the model has it); after a failure each slot closes its own, alone, as it goes on."""
        ended = [s for s in slots if s.state is SlotState.ENDED]
        many = getattr(self.model, "end_responses", None)
        if len(ended) < 2 or many is None:
            return
        try:
            many([s.slot for s in ended])
        except Exception:
            log.exception("batched reply close failed; closing them one session at a time")
            return
        for s in ended:
            s.state = SlotState.READY

    def _close_reply(self, s: Slot) -> None:
        """The model closes the turn of a reply that ended (done lazily: see ENDED)."""
        if s.state is SlotState.ENDED:
            s.state = SlotState.READY
            self.model.end_response(s.slot)

    def _prefill(self, batch: list[tuple[Slot, EncodeJob]]) -> None:
        t0 = time.perf_counter()
        self._close_replies([s for s, _ in batch])
        items, ready, before = [], [], []
        for s, job in batch:
            if not self._guarded(s, job):
                continue  # refused or failed: that session got its error, the others go on
            ready.append((s, job))
            items.append((s.slot, job.result))
            before.append(self.model.slot_length(s.slot))
            self.metrics.observe("omni_packet_wait_seconds", time.perf_counter() - job.t_submit)
        if not items:
            return
        t_call = time.perf_counter()
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
        t1 = time.perf_counter()
        for s, job in ready:
            observe_stage(self.metrics, "prefill", t_call - job.t_end, t1 - t_call)
            # the latest packet's path, for the first-audio breakdown of a reply that follows it
            spans: list = []
            add_span(spans, "input", 0.0, job.t_submit)
            add_span(spans, "encode_queue", job.t_submit, job.t_start)
            add_span(spans, "encode", job.t_start, job.t_end)
            add_span(spans, "prefill_queue", job.t_end, t_call)
            add_span(spans, "prefill", t_call, t1)
            s.packet_spans = spans
        self.metrics.observe("omni_prefill_packet_seconds", (t1 - t0) / len(items))
        self.metrics.observe("omni_prefill_batch_size", len(items))

    def _ready_packet(self, s: Slot, job: EncodeJob) -> None:
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

    def _text(self, s: Slot, role: str, text: str) -> None:
        capacity = getattr(self.model, "capacity", None)
        cost = self._cost("text_cost", role, text, default=len(text.encode()))
        if capacity and cost + PACKET_ROOM > capacity // 2:
            raise SlotError("instructions_too_long" if role == "system" else "input_too_long",
                            f"a {role} text of {cost} tokens cannot fit half of the {capacity}-token context")
        self._close_reply(s)
        self._room(s, PACKET_ROOM + cost)
        self.model.prefill_text(s.slot, role, text)
        s.history.append((role, text))

    def _respond(self, s: Slot, cmd: Respond) -> None:
        """Start a reply; `cmd.opening` is text it is made to start with (a forced tool call)."""
        t0 = self._prepare_reply(s, cmd)
        self._begin_alone(s, cmd)
        self._reply_begun(s, cmd, t0)

    def _begin_alone(self, s: Slot, cmd: Respond) -> None:
        self._model_call(self.model.begin_response, s.slot, *((cmd.opening,) if cmd.opening else ()))

    def _respond_batch(self, begins: list[tuple[Slot, Respond]]) -> None:
        """Start the replies of several slots with one model call (`begin_responses`, where
        the model has it); a failure stays in its slot: the batch is retried one by one."""
        many = getattr(self.model, "begin_responses", None)
        if len(begins) == 1 or many is None:
            for s, cmd in begins:
                self._guarded(s, cmd)
            return
        ready: list[tuple[Slot, Respond, float]] = []
        for s, cmd in begins:
            before = self.model.slot_length(s.slot)
            try:
                ready.append((s, cmd, self._prepare_reply(s, cmd)))
            except Exception as e:
                self._refused_or_failed(s, "respond", e, before)
        if not ready:
            return
        try:
            self._model_call(many, [(s.slot, cmd.opening or "") for s, cmd, _ in ready])
        except Exception:
            log.exception("batched reply start failed; starting them one session at a time")
            for s, cmd, t0 in ready:
                try:  # the failed call may have moved every slot's turn on: back to the mark
                    self.model.truncate(s.slot, s.mark)
                    self._begin_alone(s, cmd)
                    self._reply_begun(s, cmd, t0)
                except Exception as e:
                    self._refused_or_failed(s, "respond", e, s.mark)
            return
        for s, cmd, t0 in ready:
            try:
                self._reply_begun(s, cmd, t0)
            except Exception as e:
                self._refused_or_failed(s, "respond", e, s.mark)

    def _prepare_reply(self, s: Slot, cmd: Respond) -> float:
        """What a reply start needs before the model call: the previous reply closed, room
        in the context, the rollback mark. Returns when the model call may start."""
        self._close_reply(s)
        s.epoch = cmd.epoch  # from here on, a failure is this reply's: its error carries this epoch
        s.max_steps = min(cmd.max_steps or self.max_steps, self.max_steps)
        self._room(s, s.max_steps + PACKET_ROOM + self._cost("response_cost", s.slot, default=0))
        s.mark = self.model.slot_length(s.slot)
        return time.perf_counter()

    def _reply_begun(self, s: Slot, cmd: Respond, t0: float) -> None:
        """The slot's reply has begun in the model (`begin_response` since `t0`)."""
        s.base = self.model.slot_length(s.slot)
        s.begin_reply(cmd.speculative, cmd.opening)
        if cmd.speculative:  # the model's judgment of the user turn, for semantic_vad (streaming/semantic_turn.py)
            judge = getattr(self.model, "turn_end_prob", None)
            p = judge(s.slot) if judge is not None else None
            if p is not None:
                s.sink(EngineEvent("turn_end", s.epoch, info={"p": float(p)}))
        s.audio_state = self.model.new_audio_state()
        out_rate = cmd.out_rate
        s.resampler = StreamingResampler(self.out_rate, out_rate) if out_rate and out_rate != self.out_rate else None
        s.t_begin = s.t_live = s.t_ready = time.perf_counter()
        s.steps_live = 0
        s.trace = list(s.packet_spans)  # the reply's first-audio path starts with the turn's last packet
        add_span(s.trace, "respond_queue", span_end(s.trace), t0)
        add_span(s.trace, "begin", t0, s.t_begin)

    def _drop_queued_respond(self, s: Slot, epoch: int) -> bool:
        for i, cmd in enumerate(s.queue):
            if isinstance(cmd, Respond) and cmd.epoch == epoch:
                del s.queue[i]
                return True
        return False

    # ---- control commands ----------------------------------------------------
    def _confirm(self, s: Slot, epoch: int) -> None:
        if s.epoch == epoch and s.state.replying:
            now = time.perf_counter()
            if not self._may_step(s):  # paused ahead: it waits for its next step from now on
                s.t_ready = now
            s.t_live, s.steps_live = now, len(s.steps)
            if s.state is SlotState.SPECULATED:
                self._finish(s)
            else:
                s.state = SlotState.ANSWERING
        else:  # not started yet: it starts confirmed
            for i, cmd in enumerate(s.queue):
                if isinstance(cmd, Respond) and cmd.epoch == epoch:
                    s.queue[i] = replace(cmd, speculative=False)

    def _rollback(self, s: Slot, epoch: int) -> None:
        if s.epoch == epoch and s.state in (SlotState.SPECULATING, SlotState.SPECULATED):
            self.model.truncate(s.slot, s.mark)
            s.state, s.audio_state = SlotState.READY, None
            self.metrics.inc("omni_rollbacks_total")
            s.sink(EngineEvent("rolled_back", epoch, info={"length": s.mark, "steps": len(s.steps)}))
        elif self._drop_queued_respond(s, epoch):
            s.sink(EngineEvent("rolled_back", epoch, info={"length": self.model.slot_length(s.slot), "steps": 0}))

    def _interrupt(self, s: Slot, cmd: Interrupt) -> None:
        epoch = cmd.epoch
        finished = s.epoch == epoch and s.state is SlotState.ENDED  # decoded, maybe still playing
        if not finished and (s.epoch != epoch or not s.state.replying):
            if self._drop_queued_respond(s, epoch):
                s.sink(EngineEvent("interrupted", epoch, info={"kept_text": "", "reason": cmd.reason}))
            return
        length, kept = s.cut(self.frame_samples, cmd.heard_samples, cmd.delivered_chars, cmd.delivered_blocks)
        self.model.truncate(s.slot, length)
        if finished and s.history and s.history[-1] == ("assistant", s.text):
            s.history.pop()  # its full text went in when it finished; what was heard replaces it
        if kept.strip():
            s.history.append(("assistant", kept))
        s.state, s.audio_state = SlotState.ENDED, None
        self.metrics.inc("omni_interruptions_total" if cmd.reason == "barge_in" else "omni_cancellations_total")
        s.sink(EngineEvent("interrupted", epoch, text=kept, info={"length": length, "reason": cmd.reason}))

    def _truncate(self, s: Slot, epoch: int, heard_samples: int) -> None:
        if s.epoch == epoch and s.state is SlotState.ENDED:
            length, kept = s.cut(self.frame_samples, heard_samples, None, s.steps[-1].blocks if s.steps else 0)
            if length < self.model.slot_length(s.slot):
                self.model.truncate(s.slot, length)
            s.sink(EngineEvent("truncated", epoch, text=kept, info={"applied": True}))
        else:
            s.sink(EngineEvent("truncated", epoch, info={"applied": False}))

    def _finish(self, s: Slot) -> None:
        """A finished, confirmed reply. Its turn is closed lazily (before the next
        prefill), so a truncate for what the client actually played can still
        shorten it while the user barges in over the playback."""
        s.state = SlotState.ENDED
        if s.text.strip():
            s.history.append(("assistant", s.text))

    # ---- stage 3: decode ---------------------------------------------------------
    def _decode(self) -> None:
        active = [s for s in self.slots.values() if self._may_step(s)]
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
        t1 = time.perf_counter()
        dt = t1 - t0
        self.metrics.observe("omni_decode_step_seconds", dt)
        self.metrics.observe("omni_decode_batch_size", len(active))
        for s, out in zip(active, outs):
            observe_stage(self.metrics, "decode", t0 - s.t_ready, dt)
            if s.trace is not None:
                add_span(s.trace, "decode_queue", s.t_ready, t0)
                add_span(s.trace, "decode", t0, t1)
            s.t_ready = t1
            s.text += out.text
            pieces = s.stream.feed(out.text)
            finished = out.done or len(s.steps) + 1 >= s.max_steps
            if finished:
                pieces += s.stream.finish()
            jobs, cut_ok, thinking = s.split_step(pieces, out.codec_frame)
            for j in jobs:
                j.t_decode = t0
            if thinking:
                self.metrics.inc("omni_thinking_sections_total", thinking)
            s.steps.append(Step(self.model.slot_length(s.slot), len(s.text), s.frames, s.shown, cut_ok, s.blocks))
            s.decode_time += dt
            if s.trace is not None:  # the reply's first speech frame carries its path on to stage 4
                first = next((j for j in jobs if j.frame is not None), None)
                if first is not None:
                    first.trace, s.trace = s.trace, None
            job = jobs[-1]
            if finished:
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
            if finished:
                if s.state is SlotState.ANSWERING:
                    self._finish(s)
                else:  # speculative: closed once confirmed
                    s.state = SlotState.SPECULATED


class EngineSlot:
    """A session's end of its engine slot: the handle and where its commands go
    (None until opened, and again once closed: commands then go nowhere)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.handle: int | None = None

    async def open(self, sink: Callable[[EngineEvent], None], system_prompt: str | None) -> None:
        self.handle = await asyncio.wrap_future(self.engine.open(sink, system_prompt))

    def submit(self, command: SlotCommand) -> None:
        self.engine.submit(self.handle, command)

    def close(self) -> None:
        if self.handle is not None:
            self.submit(Close())
            self.handle = None


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

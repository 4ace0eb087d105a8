"""One connection's state machine: listen, speculate, respond, interrupted.

Runs on the asyncio loop and never touches the model. Input audio goes through
stage 1 (`InputWorker` or `InputProcess`: resampling to 16 kHz + batched silero-vad, off
the loop); the endpointer's events drive the turn:

  listening --speech_started--> user turn: every full 1 s packet (audio + the
      frames sampled inside it) goes to the engine at once (streaming prefill)
  user turn --speculate--> the partial packet is flushed and a SPECULATIVE
      response starts decoding; its output is held back
  speculative --resumed--> rollback (engine truncates to the snapshot)
  speculative --end_of_turn--> confirmed: held output is released, response.*
      events start; audio is never delivered before this point
  responding --speech_started--> barge-in: the engine stops at once, the reply
      is cut to what was delivered (at its last punctuation); the interrupting
      speech, with its pre-roll, starts the next user turn

A session is made of parts, each an object with its own file: `Replies`
(response.* events, holding, fencing, barge-in: responses.py), `Calls`
(function calling: calls.py), `Transcripts` (input transcripts:
transcripts.py) and the `Conversation` (the items it holds, for retrieve and
delete: conversation.py). It talks to the engine through its `EngineSlot`.
Output events leave through one writer task, in order. Engine events carry the
response epoch; anything from an older epoch is dropped (output fencing).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from omni.realtime_api import UserChunk
from streaming.backchannel import span
from streaming.calls import Calls, system_prompt
from streaming.conversation import Conversation
from streaming.engine import Engine, EngineEvent, EngineSlot
from streaming.engine_commands import Chunk, Text
from streaming.frames import FrameSampler, parse_frame
from streaming.input import InputStage, InputState
from streaming.metrics import Metrics
from streaming.protocol import ProtocolError, SessionConfig, StreamingResampler, apply_session_update, decode_pcm16
from streaming.protocol.audio import AudioDecodeError
from streaming.protocol.events import ClientEvent, ServerEvents, new_id
from streaming.protocol.image import verify_jpeg
from streaming.protocol.config import check_tool_choice, parse_tools
from streaming.responses import Replies
from streaming.transcripts import Transcripts
from streaming.semantic_turn import SemanticTurn
from streaming.vad import WINDOW, Endpointer, TurnEvent

log = logging.getLogger(__name__)
SR = 16000
PACKET = SR  # 1 s packets, as LongCat-Flash-Omni streams them


@dataclass
class Limits:
    max_image_bytes: int = 2 << 20
    max_pending_seconds: float = 120.0  # manual-mode input buffer cap


class Session:
    def __init__(self, send: Callable[..., None], engine: Engine, inputs: InputStage, metrics: Metrics,
                 limits: Limits | None = None, beta: bool = False, model_name: str = "omni",
                 model_trained: bool | None = None, transcriber: str | None = None,
                 transcribe_stage: Callable[[], Any] | None = None, model_card: dict | None = None,
                 semantic_turn: bool = False, backchannels: Any = None) -> None:
        # send(event[, on_sent]): to the connection's writer, which calls on_sent(queued, send, sent) once sent
        self.send, self.engine, self.inputs, self.metrics = send, engine, inputs, metrics
        self.limits = limits or Limits()
        self.ev = ServerEvents(beta=beta)
        self.cfg = SessionConfig(id=new_id("sess"), model=model_name, model_trained=model_trained,
                                 transcriber=transcriber, model_card=model_card, semantic_turn=semantic_turn,
                                 backchannels=backchannels is not None)
        # the server's backchannel detector (streaming/backchannel.py), or None: every sound barges in
        self.backchannels = backchannels
        self.cfg.turn_detection.ignore_backchannels = backchannels is not None
        self.conv = Conversation()
        self.slot = EngineSlot(engine)
        self.calls = Calls(send, self.ev, self.slot, self.conv, metrics)
        self.replies = Replies(send, self.ev, self.slot, metrics, self.config, self.conv, self.calls, self.error,
                               engine.out_rate)
        self.replies.on_turn_end = self._on_turn_end
        # transcribe_stage(): the server's recognizer, started on first use
        self.transcripts = Transcripts(send, self.ev, self.conv, metrics, self.config,
                                       transcribe_stage or (lambda: None))
        self.loop = asyncio.get_running_loop()
        self.configured = False
        self.istate = InputState()  # resampler to 16 kHz + VAD state (held by the input stage)
        self.endpointer = Endpointer()
        self.frames = FrameSampler()
        self.audio = np.zeros(0, dtype=np.float32)  # 16 kHz input not yet consumed
        self.audio_start = 0  # sample index of self.audio[0]
        self.total = 0  # 16 kHz samples received
        self.clock: deque = deque(maxlen=256)  # (end sample, wall time) per append
        self.turn_active = False
        self.packet_start = 0
        self.user_item: str | None = None
        self.manual_buffer: list[np.ndarray] = []
        self.speech_end_time: float | None = None
        self.judged: tuple[Any, float] | None = None  # semantic_vad: (speculative reply, P(turn complete))
        self.held: TurnEvent | None = None  # a barge-in held until its opening says backchannel or not
        self.backchannel: TurnEvent | None = None  # the start of a backchannel being let through

    def config(self) -> SessionConfig:
        """The current configuration (session.update replaces it: parts ask for it each time)."""
        return self.cfg

    # ---- engine side -------------------------------------------------------
    def engine_sink(self, event: EngineEvent) -> None:
        """Called on the engine thread."""
        self.loop.call_soon_threadsafe(self.replies.on_engine, event)

    async def open(self, instructions: str | None) -> None:
        try:
            await self.slot.open(self.engine_sink, instructions)
        except Exception as e:
            code = getattr(e, "code", None)
            if isinstance(code, str):  # the engine refused the request (e.g. instructions too long for the context)
                raise ProtocolError(code, str(e), param="session.instructions") from None
            raise

    def close(self) -> None:
        self.transcripts.stop()
        self.slot.close()
        self.inputs.release(self.istate)

    # ---- client events -----------------------------------------------------
    async def handle(self, e: ClientEvent) -> None:
        """Act on one client event (already checked against its schema). A client
        mistake becomes an `error` event; so does anything unexpected (last resort:
        logged with its traceback as a server fault), and the session goes on."""
        try:
            await self._dispatch(e)
        except ProtocolError as err:
            if err.event_id is None:
                err.event_id = e.event_id
            self.error(err)
        except Exception:
            log.exception("handling client event %s failed; the session goes on", e.type)
            self.metrics.inc("omni_internal_errors_total")
            self.send(self.ev.error(ProtocolError(
                "server_error", f"the server failed to handle {e.type}; the session goes on",
                event_id=e.event_id, type="server_error")))

    def error(self, err: ProtocolError) -> None:
        self.metrics.inc("omni_protocol_errors_total")
        self.send(self.ev.error(err))

    async def _dispatch(self, e: ClientEvent) -> None:
        d = e.data
        if e.type == "session.update":
            return await self._session_update(d)
        if not self.configured:
            raise ProtocolError("session_not_configured",
                                f"send session.update before {e.type} (audio format and turn detection)")
        if e.type == "input_audio_buffer.append":
            return await self._append(d["audio"])
        if e.type == "input_image_buffer.append":
            t = d.get("time_ms")  # the schema allows null or a finite number in [0, 1e10]
            t_s = t / 1000 if t is not None else self.total / SR
            frame = parse_frame(d["image"], t_s, self.limits.max_image_bytes)
            verify_jpeg(frame.jpeg)  # decoded now, so a corrupt frame never reaches a packet
            self.frames.add(frame, answering=self.replies.answering())
            return
        if e.type == "input_audio_buffer.commit":
            return self._commit()
        if e.type == "input_audio_buffer.clear":
            self.manual_buffer = []
            if self.turn_active:  # drop the not yet prefilled part of the turn
                self.packet_start = self.total
            self.send(self.ev.make("input_audio_buffer.cleared"))
            return
        if e.type == "conversation.item.create":
            return self._item_create(d["item"])
        if e.type == "conversation.item.retrieve":
            item = self.conv.get(d["item_id"])
            if item is None:
                raise ProtocolError("item_not_found", f"no item {d['item_id']!r} in this conversation",
                                    param="item_id")
            return self.send(self.ev.make("conversation.item.retrieved", item=item))
        if e.type == "conversation.item.delete":
            item = self.conv.get(d["item_id"])
            if item is None or not self.conv.delete(d["item_id"]):
                raise ProtocolError("item_not_found", f"no item {d['item_id']!r} in this conversation",
                                    param="item_id")
            if item.get("type") == "function_call":
                self.calls.forget(item.get("call_id"))
            return self.send(self.ev.make("conversation.item.deleted", item_id=d["item_id"]))
        if e.type == "response.create":
            if self.replies.answering():
                raise ProtocolError("conversation_already_has_active_response",
                                    f"response {self.replies.current.id} is still in progress; cancel it first")
            r = d.get("response") or {}  # the schema allows null or an object with arrays of modalities
            mods = r.get("output_modalities") or r.get("modalities") or self.cfg.output_modalities
            tools = parse_tools(r["tools"], "response.tools") if r.get("tools") is not None else None
            choice = r.get("tool_choice")
            instructions = r.get("instructions")  # this reply's own, in place of the session's
            if instructions is not None and not isinstance(instructions, str):
                raise ProtocolError("invalid_type", "response.instructions must be a string",
                                    param="response.instructions")
            if choice is not None or tools is not None:  # this reply's own tools and / or choice
                choice = check_tool_choice(choice if choice is not None else self.cfg.tool_choice,
                                           self.cfg.tools if tools is None else tools, "response.tool_choice")
            self.replies.start(speculative=False, modalities=mods, tools=tools, tool_choice=choice,
                               t_speech_end=self.speech_end_time, instructions=instructions)
            return
        if e.type == "response.cancel":
            r = self.replies.current
            if r is None or r.closed or (d.get("response_id") not in (None, r.id)):
                raise ProtocolError("response_cancel_not_active", "there is no active response to cancel",
                                    param="response_id")
            return self.replies.interrupt(r, reason="cancel")
        if e.type == "conversation.item.truncate":
            return self.replies.truncate(d)
        if e.type == "output_audio_buffer.clear":
            current = self.replies.current
            self.send(self.ev.make("output_audio_buffer.cleared", response_id=getattr(current, "id", None)))

    async def _session_update(self, d: dict) -> None:
        new = apply_session_update(self.cfg, d.get("session"))
        first = not self.configured
        if not first and new.input_format.rate != self.cfg.input_format.rate and self.total:
            raise ProtocolError("invalid_value", "the input sample rate cannot change after audio was sent",
                                param="session.audio.input.format.rate")
        if first:  # the slot first: if it cannot be opened, the session stays as it was, unconfigured
            await self.open(system_prompt(new.instructions, new.tools, new.tool_choice))
            self.calls.opened(new.tools, new.tool_choice, new.instructions)
        self.cfg = new
        td = new.turn_detection
        if td is not None:
            self.endpointer.configure(td.threshold, td.silence_duration_ms, td.speculative_silence_ms)
        self.frames.dense_fps, self.frames.sparse_fps = new.dense_fps, new.sparse_fps
        if first:
            self.configured = True
        else:
            if "instructions" in (d.get("session") or {}):
                self.calls.tell(new.instructions)
            self.calls.declare(new.tools, new.tool_choice)  # tools or choice changed: tell the model now
        self.send(self.ev.make("session.updated", session=new.to_json()))

    # ---- audio in ----------------------------------------------------------
    async def _append(self, b64: Any) -> None:
        try:
            samples = decode_pcm16(b64)
        except AudioDecodeError as err:
            raise ProtocolError("invalid_audio", str(err), param="audio") from None
        if not len(samples):
            return
        vad = self.cfg.turn_detection is not None
        audio, probs = await self.inputs.process(self.istate, self.cfg.input_format.rate, samples, vad)
        now = time.perf_counter()
        self.total += len(audio)
        self.clock.append((self.total, now))
        if not vad:
            self.manual_buffer.append(audio)
            if sum(len(a) for a in self.manual_buffer) > self.limits.max_pending_seconds * SR:
                self.manual_buffer = []
                raise ProtocolError("input_buffer_overflow",
                                    f"more than {self.limits.max_pending_seconds:g} s of audio without commit; "
                                    "buffer cleared")
            return
        self.audio = np.concatenate([self.audio, audio])
        self.transcripts.add(audio)  # the turn's audio, for its transcript (before this chunk's turn events)
        for ev in self.endpointer.feed(probs):
            self._on_turn(ev)
        self._semantic_end()
        self._watch_backchannel()
        self._emit_packets()
        # outside a turn keep only the pre-roll (all of a held barge-in or backchannel: it may become a turn)
        if not self.turn_active and self.held is None and self.backchannel is None:
            keep = int(SR * max(0.5, self.cfg.turn_detection.prefix_padding_ms / 1000 + 0.1))
            cut = max(0, len(self.audio) - keep)
            self.audio, self.audio_start = self.audio[cut:], self.audio_start + cut

    def _wall(self, sample: int) -> float:
        for end, t in self.clock:
            if end >= sample:
                return t - (end - sample) / SR
        return time.perf_counter()

    def _packet(self, a: int, b: int, closing: bool = False) -> UserChunk | None:
        a = max(a, self.audio_start)
        if b <= a:
            return None
        seg = self.audio[a - self.audio_start:b - self.audio_start].copy()
        times, frames = self.frames.take_timed(a / SR, b / SR, closing)
        return UserChunk(audio=seg, frames=frames, start_time=a / SR, speaking=True, frame_times=times)

    def _submit(self, chunk: UserChunk | None) -> None:
        if chunk is not None and len(chunk.audio):
            self.slot.submit(Chunk(chunk))

    def _emit_packets(self) -> None:
        while self.turn_active and self.total - self.packet_start >= PACKET:
            self._submit(self._packet(self.packet_start, self.packet_start + PACKET))
            self.packet_start += PACKET
        if self.turn_active:  # the consumed audio is no longer needed
            cut = max(0, self.packet_start - self.audio_start - int(0.1 * SR))
            self.audio, self.audio_start = self.audio[cut:], self.audio_start + cut

    def _flush_partial(self, upto: int) -> None:
        upto = min(upto, self.total)
        self._emit_packets()
        if upto > self.packet_start:  # the turn's last packet, unless the user goes on (a rollback)
            self._submit(self._packet(self.packet_start, upto, closing=True))
            self.packet_start = upto

    def _on_turn(self, ev: TurnEvent) -> None:
        td = self.cfg.turn_detection
        if self._backchannel_event(ev):
            return
        if ev.kind == "speech_started":
            if td.interrupt_response and td.ignore_backchannels and self.backchannels is not None \
                    and self.replies.playing():
                self.held = ev  # over the assistant's voice: decided once its opening is heard (_watch_backchannel)
                return
            self._speech_started(ev)
        elif ev.kind == "speculate" and td.create_response and not self.replies.answering():
            self._flush_partial(ev.sample)
            self.speech_end_time = self._wall(ev.speech_end)
            self.replies.start(speculative=True, modalities=self.cfg.output_modalities,
                               t_speech_end=self.speech_end_time, from_turn=True)
        elif ev.kind == "resumed":
            self.judged = None
            self.replies.roll_back()
        elif ev.kind == "end_of_turn":
            self._end_of_turn(ev)

    def _speech_started(self, ev: TurnEvent) -> None:
        """User speech began: a barge-in if a reply is being delivered; a new user turn."""
        td = self.cfg.turn_detection
        r = self.replies.current
        if r is not None and not r.closed and r.confirmed and td.interrupt_response:
            self._send_speech_started(ev)
            self.replies.interrupt(r, reason="barge_in")
        else:
            if r is None or r.closed:
                self.replies.playback_truncate()
            self._send_speech_started(ev)
        # the user turn starts at the speech, with its pre-roll
        self.turn_active = True
        self.packet_start = max(self.audio_start, ev.sample - SR * td.prefix_padding_ms // 1000)
        self.transcripts.start(self.audio[self.packet_start - self.audio_start:])
        self.frames.start_turn(self.packet_start / SR)  # dense frame slots count from here
        t_held, held = self.frames.take_held_timed()
        if held:  # what the camera saw while the assistant spoke, ahead of the new turn
            self.slot.submit(Chunk(UserChunk(np.zeros(0, np.float32), held, t_held[0], False,
                                             frame_times=t_held)))

    def _end_of_turn(self, ev: TurnEvent) -> None:
        td = self.cfg.turn_detection
        self.speech_end_time = self._wall(ev.speech_end)
        self.send(self.ev.make("input_audio_buffer.speech_stopped", audio_end_ms=ev.speech_end * 1000 // SR,
                               item_id=self.user_item))
        r = self.replies.current
        spec = r is not None and r.speculative and not r.confirmed
        if not spec:
            self._flush_partial(ev.sample)
        self.turn_active = False
        self._committed()
        if spec:
            self.replies.confirm(r)
        elif td.create_response and not self.replies.answering():
            self.replies.start(speculative=False, modalities=self.cfg.output_modalities,
                               t_speech_end=self.speech_end_time, from_turn=True)

    # ---- backchannels (streaming/backchannel.py) ---------------------------------
    def _backchannel_event(self, ev: TurnEvent) -> bool:
        """Endpointer events while a barge-in is held or a backchannel plays out. True: consumed."""
        if self.held is not None and ev.kind in ("speculate", "end_of_turn"):
            self._decide_held(final=True)  # the sound ended before the detector's window: decide on it
        if self.held is not None:
            return True
        if self.backchannel is not None:
            if ev.kind != "end_of_turn":
                return True
            bc, self.backchannel = self.backchannel, None
            a = max(0, bc.sample - self.audio_start)
            if self.backchannels.whole_is_backchannel(self.audio[a:max(a, ev.speech_end - self.audio_start)]):
                return True  # the backchannel is over: it was no turn
            # heard whole, it was no backchannel (a short question): a turn after all, answered now
            self.metrics.inc("omni_backchannels_overruled_total")
            self._speech_started(bc)
        return False

    def _watch_backchannel(self) -> None:
        if self.held is not None:
            self._decide_held(final=False)
        bc = self.backchannel
        ep = self.endpointer
        if bc is not None and ep.speaking and not ep.in_pause and \
                self.total - bc.sample > self.backchannels.max_backchannel_ms * SR // 1000:
            self.backchannel = None  # it went on too long for a backchannel: an interruption after all
            self.metrics.inc("omni_backchannels_overruled_total")
            self._speech_started(bc)

    def _decide_held(self, final: bool) -> None:
        ev, det = self.held, self.backchannels
        w, start = det.window_samples, ev.sample - det.lead_samples  # the window may open before the VAD's start
        if not final and self.total - start < w:
            return
        self.held = None
        a = start - self.audio_start  # before the stream began: silence, as in training
        if det.is_backchannel(span(self.audio, a, a + w)):
            self.backchannel = ev  # the reply plays on; the sound starts no turn
            self.metrics.inc("omni_backchannels_total")
            if self.cfg.debug_events:
                self.send(self.ev.make("omni.backchannel", audio_start_ms=ev.sample * 1000 // SR))
        else:
            self._speech_started(ev)

    # ---- semantic_vad (streaming/semantic_turn.py) ------------------------------
    def _on_turn_end(self, r: Any, p: float) -> None:
        """The engine judged the user turn behind speculative reply `r` (on the loop)."""
        td = self.cfg.turn_detection
        if td is None or td.type != "semantic_vad" or r is not self.replies.current:
            return
        self.metrics.observe("omni_turn_end_probability", p)
        self.judged = (r, p)
        self._semantic_end()

    def _semantic_end(self) -> None:
        """End the turn now if the model judged it complete enough for the silence so far."""
        if self.judged is None:
            return
        r, p = self.judged
        td = self.cfg.turn_detection
        if (td is None or td.type != "semantic_vad" or r is not self.replies.current or r.closed or r.confirmed
                or not self.turn_active):
            self.judged = None
            return
        silence = self.endpointer.silence_ms()
        head = getattr(self.engine.model, "turn_end", None)
        turn = SemanticTurn.for_eagerness(td.eagerness, td.silence_duration_ms, getattr(head, "thresholds", None))
        if not silence or not turn.ends(p, silence):
            return
        self.judged = None
        ev = TurnEvent("end_of_turn", self.endpointer.n * WINDOW, self.endpointer.pause_start * WINDOW)
        self.endpointer.reset()  # this turn is over: speech from here on is a new turn (or a barge-in)
        self.metrics.inc("omni_semantic_turn_ends_total")
        self._on_turn(ev)

    def _send_speech_started(self, ev: TurnEvent) -> None:
        self.user_item = new_id("item")
        self.send(self.ev.make("input_audio_buffer.speech_started", audio_start_ms=ev.sample * 1000 // SR,
                               item_id=self.user_item))

    def _committed(self, content: list[dict] | None = None, audio: np.ndarray | None = None) -> None:
        item_id = self.user_item or new_id("item")
        prev = self.conv.last_id()
        self.send(self.ev.make("input_audio_buffer.committed", item_id=item_id, previous_item_id=prev))
        item = ServerEvents.user_item(item_id, content or [{"type": "input_audio", "transcript": None}])
        self.send(self.ev.make("conversation.item.added", item=item, previous_item_id=prev))
        self.send(self.ev.make("conversation.item.done", item=item, previous_item_id=prev))
        self.conv.add(item)
        self.user_item = None
        self.transcripts.end(item_id, audio)

    def _commit(self) -> None:
        if self.cfg.turn_detection is None:
            audio = np.concatenate(self.manual_buffer) if self.manual_buffer else np.zeros(0, np.float32)
            if not len(audio):
                raise ProtocolError("input_audio_buffer_commit_empty", "the input audio buffer is empty")
            self.manual_buffer = []
            t0 = self.total - len(audio)
            self.frames.start_turn(t0 / SR)
            for a in range(0, len(audio), PACKET):
                seg = audio[a:a + PACKET]
                s0 = t0 + a
                times, frames = self.frames.take_timed(s0 / SR, (s0 + len(seg)) / SR)
                self._submit(UserChunk(seg, frames, s0 / SR, True, frame_times=times))
            return self._committed(audio=audio)
        self._flush_partial(self.total)
        self.turn_active = False
        self.endpointer.reset()
        self._committed()

    def _item_create(self, item: Any) -> None:
        # the schema checked the item's shape and refused the types it does not serve
        if item.get("id") is not None and self.conv.get(item["id"]) is not None:
            raise ProtocolError("invalid_value", f"an item {item['id']!r} already exists", param="item.id")
        kind = item.get("type", "message")
        if kind == "function_call_output":
            return self._announce_item(self.calls.output_item(item))
        if kind == "function_call":
            return self._announce_item(self.calls.call_item(item))
        self._message_item(item)

    def _announce_item(self, body: dict) -> None:
        prev = self.conv.last_id()
        self.conv.add(body)
        self.send(self.ev.make("conversation.item.added", item=body, previous_item_id=prev))
        self.send(self.ev.make("conversation.item.done", item=body, previous_item_id=prev))

    def _message_item(self, item: dict) -> None:
        # check every part before acting on any, so a bad part leaves no trace of the parts before it
        role = item.get("role")
        content = item.get("content")
        parts: list[tuple[str, Any]] = []
        for i, part in enumerate(content):
            kind = part.get("type")
            if kind in ("input_text", "text", "output_text"):
                if not isinstance(part.get("text"), str):
                    raise ProtocolError("invalid_value", "text part needs a string 'text'",
                                        param=f"item.content[{i}].text")
                parts.append(("text", part["text"]))
            elif kind == "input_audio" and role == "user":
                try:
                    parts.append(("audio", decode_pcm16(part.get("audio"))))
                except AudioDecodeError as err:
                    raise ProtocolError("invalid_audio", str(err), param=f"item.content[{i}].audio") from None
            else:
                raise ProtocolError("invalid_value", f"unsupported content type {kind!r} for role {role}",
                                    param=f"item.content[{i}].type")
        item_id = item.get("id") or new_id("item")
        heard: list[tuple[int, np.ndarray]] = []
        for i, (kind, value) in enumerate(parts):
            if kind == "text":
                self.slot.submit(Text(role, value))
                continue
            r = StreamingResampler(self.cfg.input_format.rate, SR)
            a16 = np.concatenate([r.process(value), r.flush()])
            heard.append((i, a16))
            for a in range(0, len(a16), PACKET):
                self._submit(UserChunk(a16[a:a + PACKET], [], a / SR, True))
        # the echo keeps the item's fields but not its audio payloads (the client has them)
        shown = [{k: v for k, v in part.items() if k != "audio"} for part in content]
        for i, _ in heard:
            shown[i].setdefault("transcript", None)
        body = {**item, "content": shown, "id": item_id, "type": "message", "object": "realtime.item",
                "status": "completed"}
        self._announce_item(body)
        for i, a16 in heard:
            self.transcripts.transcribe(item_id, i, a16)

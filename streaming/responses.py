"""A session's replies: start, hold while speculative, confirm, deliver, finish, cut.

`Replies` is the part of a session (streaming/session.py) that turns engine
events into the response.* events of the protocol; it holds the session's
current and recent replies. Output of a
speculative reply is held until the end of turn is confirmed; engine events
of an older epoch (rolled back, cancelled) are dropped; barge-in and
response.cancel share `_interrupt`, which sends exactly one terminal
`response.done`.

A reply's output items appear in the order the model produces them: the spoken
message item opens with its first text or audio delta, and each tool call the
model writes becomes a `function_call` item after it (streaming/calls.py); a
reply with no output at all still ends with an (empty) message item.

Timing: the first delta with speech carries the spans of the path that made it
(streaming/timing.py); the reply adds the hop to the event loop, the hold until
the end of turn was confirmed and the send, and records the breakdown once the
connection's writer has sent it (`Response.first_audio_path`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from streaming.calls import Calls
from streaming.engine import EngineSlot
from streaming.engine_commands import Confirm, EngineEvent, Interrupt, Respond, Rollback, Truncate
from streaming.metrics import Metrics
from streaming.protocol import ProtocolError
from streaming.protocol.audio import encode_pcm16
from streaming.protocol.events import ServerEvents, new_id
from streaming.timing import add_span, breakdown, observe_breakdown, span_end


@dataclass
class Response:
    epoch: int
    id: str
    item_id: str
    speculative: bool
    modalities: list[str]
    confirmed: bool = False
    finished: bool = False  # engine reported done
    closed: bool = False  # response.done sent
    held: list[EngineEvent] = field(default_factory=list)
    transcript: str = ""
    tools: dict[str, Any] = field(default_factory=dict)  # name -> omni.tool_calls.Tool the reply may call
    tool_choice: Any = "auto"
    message_index: int | None = None  # output_index of the message item once opened
    outputs: list[dict] = field(default_factory=list)  # output items in order (the message: a placeholder)
    blocks: int = 0  # tool-call blocks received (valid or not): a barge-in cut keeps them in the context
    delivered_out_samples: int = 0  # audio sent, at the session's output rate
    t_speech_end: float | None = None
    t_spec: float | None = None
    t_confirm: float | None = None
    t_first_audio: float | None = None  # its first audio delta was handed to the connection's writer
    from_turn: bool = False  # started by turn detection (its first-audio path counts from the end of speech)
    first_audio_path: dict[str, float] | None = None  # seconds per component (streaming/timing.py), once sent
    done_info: dict[str, Any] = field(default_factory=dict)



class Replies:
    """The replies of one session. Its collaborators are explicit: `send` (to the
    connection's writer; a second argument is called once the event was sent),
    `slot` (the engine), `config()` (the session's current SessionConfig), the
    conversation, the session's `Calls`, and `error` (sends an error event)."""

    def __init__(self, send: Callable[..., None], ev: ServerEvents, slot: EngineSlot, metrics: Metrics,
                 config: Callable[[], Any], conv: Any, calls: Calls, error: Callable[[ProtocolError], None],
                 model_rate: int) -> None:
        self.send, self.ev, self.slot, self.metrics = send, ev, slot, metrics
        self.config, self.conv, self.calls, self.error = config, conv, calls, error
        self.model_rate = model_rate  # the engine's output rate (what `Interrupt` and `Truncate` count in)
        self.current: Response | None = None
        self.last: Response | None = None  # the last reply that ended
        self.items: dict[str, Response] = {}  # recent replies by message item id (for truncate)
        self.epochs = iter(range(1, 1 << 62))
        # the session's semantic_vad decision, given (reply, P(complete)) of a speculative reply
        self.on_turn_end: Callable[[Response, float], None] | None = None

    def answering(self) -> bool:
        return self.current is not None and not self.current.closed

    def start(self, speculative: bool, modalities: list[str], tools: list[dict] | None = None,
              tool_choice: Any = None, t_speech_end: float | None = None, from_turn: bool = False,
              instructions: str | None = None) -> None:
        cfg = self.config()
        r = Response(next(self.epochs), new_id("resp"), new_id("item"), speculative, list(modalities))
        self.calls.tell(cfg.instructions if instructions is None else instructions)
        opening = self.calls.tool_context(r, cfg.tools if tools is None else tools,
                                          cfg.tool_choice if tool_choice is None else tool_choice)
        r.t_speech_end = t_speech_end
        r.from_turn = from_turn
        r.t_spec = time.perf_counter()
        self.current = r
        self.items[r.item_id] = r
        while len(self.items) > 32:  # only recent replies can still be truncated
            self.items.pop(next(iter(self.items)))
        # the audio stage resamples to the client's rate, off the event loop
        self.slot.submit(Respond(r.epoch, speculative, cfg.max_output_tokens, cfg.output_format.rate, opening))
        if speculative:
            self._debug("speculating", r)
        else:
            self.confirm(r)

    def confirm(self, r: Response) -> None:
        r.confirmed = True
        r.t_confirm = time.perf_counter()
        if r.speculative:
            self.slot.submit(Confirm(r.epoch))
            self._debug("confirmed", r)
        self.metrics.inc("omni_responses_total")
        fmt = self.config().output_format.to_json()
        self.send(self.ev.make("response.created", response=ServerEvents.response(
            r.id, "in_progress", modalities=r.modalities, out_format=fmt)))
        held, r.held = r.held, []
        for e in held:
            self._deliver(r, e)

    def roll_back(self) -> None:
        """The user went on talking: forget the speculative reply, if there is one."""
        r = self.current
        if r is not None and r.speculative and not r.confirmed:
            self.slot.submit(Rollback(r.epoch))
            self.current = None
            self._debug("rolled_back", r)

    def _open_message(self, r: Response) -> None:
        """The reply's spoken message item, announced with its first output."""
        if r.message_index is not None:
            return
        r.message_index = len(r.outputs)
        r.outputs.append({})  # filled in when the item is done
        item = ServerEvents.assistant_item(r.item_id, "in_progress")
        self.send(self.ev.make("response.output_item.added", response_id=r.id, output_index=r.message_index,
                               item=item))
        self.send(self.ev.make("conversation.item.added", item=item, previous_item_id=None))
        self.send(self.ev.make("response.content_part.added", response_id=r.id, item_id=r.item_id,
                               output_index=r.message_index, content_index=0,
                               part={"type": "audio", "transcript": ""}))

    def _debug(self, state: str, r: Response) -> None:
        if self.config().debug_events:
            self.send(self.ev.make("omni.turn", state=state, response_id=r.id))

    def on_engine(self, e: EngineEvent) -> None:
        """An engine event, on the event loop."""
        if e.trace is not None:
            add_span(e.trace, "hop", span_end(e.trace))
        r = self.current
        if e.kind == "context_reset":
            # not an error: the conversation goes on with its most recent text turns
            self.metrics.inc("omni_context_resets_total")
            self.send(self.ev.make("omni.context_reset", reason=e.info.get("reason", ""),
                                   kept_turns=e.info.get("kept_turns", 0)))
            cfg = self.config()
            return self.calls.context_reset(cfg.tools, cfg.tool_choice)
        if e.kind == "truncated":
            return self._on_truncated(e)
        if e.kind == "error":
            return self._on_engine_error(r, e)
        if r is None or e.epoch != r.epoch or r.closed:
            return  # fenced: output of a rolled-back or cancelled response
        if e.kind in ("rolled_back", "interrupted"):
            return
        if e.kind == "turn_end":
            if self.on_turn_end is not None and not r.confirmed:
                self.on_turn_end(r, float(e.info["p"]))
            return
        if e.kind == "block" and not r.confirmed:
            r.held.append(e)
            return
        if e.kind == "block":
            return self.calls.on_block(r, e)  # a tool call, or why it is none (streaming/calls.py)
        if not r.confirmed:
            r.held.append(e)
            return
        self._deliver(r, e)

    def _on_engine_error(self, r: Response | None, e: EngineEvent) -> None:
        """The engine refused or failed a request of this session. Its reply, if the
        error is the reply's, ends failed; the client always hears of it, typed."""
        code = e.info.get("code", "server_error")
        kind = "server_error" if code == "server_error" else "invalid_request_error"
        replying = r is not None and e.epoch == r.epoch and not r.closed
        if replying and not r.confirmed:  # a failed speculation is forgotten; the end of turn starts afresh
            self.current = None
            return
        self.error(ProtocolError(code, e.info.get("message", "the request failed"), type=kind))
        if replying:
            self._finish(r, "failed", {"type": "failed", "error": {"code": code, "message": e.info.get("message")}})

    def _deliver(self, r: Response, e: EngineEvent) -> None:
        if e.kind == "block":
            return self.calls.on_block(r, e)
        out = e.audio  # already at the session's output rate
        speaks = out is not None and len(out) and "audio" in r.modalities
        if e.text or speaks:
            self._open_message(r)
        base = dict(response_id=r.id, item_id=r.item_id, output_index=r.message_index or 0, content_index=0)
        if e.text:
            r.transcript += e.text
            self.send(self.ev.make("response.output_audio_transcript.delta", delta=e.text, **base))
        if speaks:
            first = r.t_first_audio is None
            if first:
                r.t_first_audio = time.perf_counter()
            r.delivered_out_samples += len(out)
            event = self.ev.make("response.output_audio.delta", delta=encode_pcm16(out), **base)
            if first and e.trace is not None:
                add_span(e.trace, "hold", span_end(e.trace))  # held while the end of turn was unconfirmed
                self.send(event, lambda *times: self._first_audio_sent(r, e.trace, *times))
            else:
                self.send(event)
        if e.kind == "done":
            r.finished = True
            r.done_info = e.info
            status = e.info.get("status", "completed")  # "incomplete": cut by the step cap or a full context
            details = {"type": "incomplete", "reason": "max_output_tokens"} if status == "incomplete" else None
            self._finish(r, status, details)

    def _first_audio_sent(self, r: Response, spans: list, t_queued: float, t_send: float, t_sent: float) -> None:
        """The writer sent the reply's first audio: its critical path, by component."""
        add_span(spans, "send_queue", t_queued, t_send)
        add_span(spans, "send", t_send, t_sent)
        origin = r.t_speech_end if r.from_turn and r.t_speech_end is not None else r.t_confirm
        if origin is None:
            return
        r.first_audio_path = breakdown(spans, origin, t_sent)
        observe_breakdown(self.metrics, r.first_audio_path)

    def _metrics_of(self, r: Response) -> dict[str, Any]:
        m: dict[str, Any] = {"speculative": r.speculative}
        if r.t_first_audio is not None and r.t_confirm is not None:
            m["first_audio_after_confirm_s"] = r.t_first_audio - r.t_confirm
            self.metrics.observe("omni_first_audio_after_confirm_seconds", m["first_audio_after_confirm_s"])
        if r.t_first_audio is not None and r.t_speech_end is not None:
            m["first_audio_after_speech_end_s"] = r.t_first_audio - r.t_speech_end
            self.metrics.observe("omni_first_audio_after_speech_end_seconds", m["first_audio_after_speech_end_s"])
        if r.t_confirm is not None and r.t_speech_end is not None:
            m["confirm_after_speech_end_s"] = r.t_confirm - r.t_speech_end
            self.metrics.observe("omni_confirm_after_speech_end_seconds", m["confirm_after_speech_end_s"])
        if r.speculative and r.t_spec is not None and r.t_confirm is not None:
            m["speculative_lead_s"] = r.t_confirm - r.t_spec
            self.metrics.observe("omni_speculative_lead_seconds", m["speculative_lead_s"])
        info = r.done_info
        if info.get("audio_seconds"):
            m["rtf"] = info["decode_seconds"] / info["audio_seconds"]
            self.metrics.observe("omni_response_rtf", m["rtf"])
            live = info.get("live_steps", 0) >= 5  # enough steps after the confirmation to time
            steps, secs = (info["live_steps"], info["live_seconds"]) if live else (info["steps"], info["wall_seconds"])
            m["decode_steps_per_s"] = steps / max(secs, 1e-9)
        m.update({k: info[k] for k in ("steps", "audio_seconds", "decode_seconds") if k in info})
        return m

    def _finish(self, r: Response, status: str, details: dict | None) -> None:
        r.closed = True
        self.last = r
        if not r.outputs:  # nothing was said or called: the reply still has its (empty) message item
            self._open_message(r)
        if r.message_index is not None:
            base = dict(response_id=r.id, item_id=r.item_id, output_index=r.message_index, content_index=0)
            if "audio" in r.modalities:
                self.send(self.ev.make("response.output_audio.done", **base))
            self.send(self.ev.make("response.output_audio_transcript.done", transcript=r.transcript, **base))
            self.send(self.ev.make("response.content_part.done", part={"type": "audio", "transcript": r.transcript},
                                   **base))
            item = ServerEvents.assistant_item(r.item_id, "completed" if status == "completed" else "incomplete",
                                               r.transcript)
            r.outputs[r.message_index] = item
            self.send(self.ev.make("response.output_item.done", response_id=r.id, output_index=r.message_index,
                                   item=item))
            self.send(self.ev.make("conversation.item.done", item=item, previous_item_id=None))
            self.conv.add(item)
        cfg = self.config()
        self.send(self.ev.make("response.done", response=ServerEvents.response(
            r.id, status, list(r.outputs), r.modalities, details, self._metrics_of(r),
            cfg.output_format.to_json())))

    def interrupt(self, r: Response, reason: str) -> None:
        """Barge-in and response.cancel share this path: stop at once, one terminal event."""
        heard = self._model_samples(r.delivered_out_samples) if "audio" in r.modalities else None
        self.slot.submit(Interrupt(r.epoch, heard, len(r.transcript), reason, r.blocks))
        detail_reason = "turn_detected" if reason == "barge_in" else "client_cancelled"
        self._finish(r, "cancelled", {"type": "cancelled", "reason": detail_reason})

    def _model_samples(self, out_samples: int) -> int:
        return out_samples * self.model_rate // self.config().output_format.rate

    def playing(self) -> bool:
        """A reply is being delivered, or the client may still be playing the last one
        (real-time playback from its first audio byte)."""
        r = self.current
        if r is not None and not r.closed and r.confirmed:
            return True
        r = self.last
        if r is None or r.t_first_audio is None or not r.finished:
            return False
        played = (time.perf_counter() - r.t_first_audio) * self.model_rate
        return played < self._model_samples(r.delivered_out_samples)

    def playback_truncate(self) -> None:
        """Speech while the client may still be playing a finished reply: assume
        real-time playback from the first audio byte and cut the reply there;
        conversation.item.truncate from the client refines it."""
        r = self.last
        if r is None or r.t_first_audio is None or not r.finished or r.done_info.get("truncated"):
            return
        played = (time.perf_counter() - r.t_first_audio) * self.model_rate
        if played < self._model_samples(r.delivered_out_samples):
            r.done_info["truncated"] = True
            self.slot.submit(Truncate(r.epoch, int(played)))

    def truncate(self, d: dict) -> None:
        """conversation.item.truncate: the client played only part of a reply."""
        r = self.items.get(d.get("item_id"))
        if r is None:
            raise ProtocolError("item_not_found", f"no assistant item {d.get('item_id')!r}", param="item_id")
        ms = d.get("audio_end_ms")
        if isinstance(ms, bool) or not isinstance(ms, int) or ms < 0:
            raise ProtocolError("invalid_value", "audio_end_ms must be a non-negative integer", param="audio_end_ms")
        rate = self.config().output_format.rate
        total_ms = r.delivered_out_samples * 1000 // rate
        if ms > total_ms + 1:
            raise ProtocolError("invalid_value", f"audio_end_ms {ms} is past the {total_ms} ms of audio sent",
                                param="audio_end_ms")
        heard = ms * self.model_rate // 1000
        r.done_info["truncated"] = True  # the client's report replaces the server's playback estimate
        r.done_info["truncate_ms"] = ms
        r.done_info["truncate_item"] = d.get("content_index", 0)
        if not r.closed:
            r.delivered_out_samples = min(r.delivered_out_samples, ms * rate // 1000)
            self.interrupt(r, reason="cancel")
            self._emit_truncated(r)
        else:
            self.slot.submit(Truncate(r.epoch, heard))

    def _on_truncated(self, e: EngineEvent) -> None:
        for r in self.items.values():
            if r.epoch == e.epoch and "truncate_ms" in r.done_info:
                self._emit_truncated(r)

    def _emit_truncated(self, r: Response) -> None:
        ms = r.done_info.pop("truncate_ms", None)
        if ms is not None:
            self.send(self.ev.make("conversation.item.truncated", item_id=r.item_id,
                                   content_index=r.done_info.get("truncate_item", 0), audio_end_ms=ms))

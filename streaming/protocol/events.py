"""Client and server events, with their names as the `openai` SDK uses them.

Client -> server (parsed and checked against schemas.py here; `parse_client_event`):
  session.update, input_audio_buffer.append / commit / clear,
  conversation.item.create / truncate / retrieve / delete, response.create,
  response.cancel, output_audio_buffer.clear, and the extension
  input_image_buffer.append {image: base64 JPEG, time_ms?} for video frames.

Server -> client (built by `ServerEvents`): session.created / updated,
  input_audio_buffer.speech_started / speech_stopped / committed / cleared,
  conversation.item.added / done / truncated / retrieved / deleted,
  conversation.item.input_audio_transcription.delta / completed / failed,
  response.created, response.output_item.added, response.content_part.added,
  response.output_audio.delta, response.output_audio_transcript.delta,
  response.function_call_arguments.delta / done,
  response.output_audio.done, response.output_audio_transcript.done,
  response.content_part.done, response.output_item.done, response.done, error,
  and, only when the session asks for them (`session.omni.debug_events`),
  omni.turn {state: speculating | rolled_back | confirmed}.

A connection that sends the header `OpenAI-Beta: realtime=v1` gets the beta
names of the output deltas (`response.audio.delta`, ...), which older clients
expect; everything else is shared.
"""

from __future__ import annotations

import itertools
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from streaming.protocol.errors import ProtocolError
from streaming.protocol.safe_json import loads_bounded
from streaming.protocol.schemas import check_event

CLIENT_EVENTS = {
    "session.update": (),
    "input_audio_buffer.append": ("audio",),
    "input_audio_buffer.commit": (),
    "input_audio_buffer.clear": (),
    "conversation.item.create": ("item",),
    "conversation.item.truncate": ("item_id", "audio_end_ms"),
    "conversation.item.delete": ("item_id",),
    "conversation.item.retrieve": ("item_id",),
    "response.create": (),
    "response.cancel": (),
    "output_audio_buffer.clear": (),
    "input_image_buffer.append": ("image",),  # extension: one JPEG video frame
}
UNSUPPORTED: set[str] = set()  # events known but not served (none at present; they get unsupported_event)

BETA_NAMES = {
    "response.output_audio.delta": "response.audio.delta",
    "response.output_audio.done": "response.audio.done",
    "response.output_audio_transcript.delta": "response.audio_transcript.delta",
    "response.output_audio_transcript.done": "response.audio_transcript.done",
    "response.output_text.delta": "response.text.delta",
    "conversation.item.added": "conversation.item.created",
}


@dataclass
class ClientEvent:
    type: str
    event_id: str | None
    data: dict[str, Any] = field(default_factory=dict)


def parse_client_event(raw: str | bytes, max_bytes: int | None = None) -> ClientEvent:
    """Validate one websocket message into a ClientEvent, or raise ProtocolError."""
    size = len(raw)
    if max_bytes is not None and size > max_bytes:
        raise ProtocolError("message_too_large", f"message of {size} bytes exceeds the limit of {max_bytes} bytes")
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("invalid_json", "binary message is not UTF-8 JSON") from None
    obj = loads_bounded(raw)  # bounded nesting, finite numbers, valid Unicode
    if not isinstance(obj, dict):
        raise ProtocolError("invalid_event", "an event must be a JSON object")
    event_id = obj.get("event_id") if isinstance(obj.get("event_id"), str) else None
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("invalid_event", "event has no string 'type'", param="type", event_id=event_id)
    if kind not in CLIENT_EVENTS:
        raise ProtocolError("unknown_event", f"unknown event type {kind!r}", param="type", event_id=event_id)
    if kind in UNSUPPORTED:
        raise ProtocolError("unsupported_event", f"{kind} is not supported by this server", param="type",
                            event_id=event_id)
    for key in CLIENT_EVENTS[kind]:
        if key not in obj:
            raise ProtocolError("missing_field", f"{kind} needs field {key!r}", param=key, event_id=event_id)
    check_event(kind, obj, event_id)  # types, ranges and sizes of every field the server reads
    return ClientEvent(kind, event_id, obj)


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


class ServerEvents:
    """Builds server events (plain dicts) with fresh event ids."""

    def __init__(self, beta: bool = False) -> None:
        self.beta = beta
        self._n = itertools.count()

    def make(self, kind: str, **fields: Any) -> dict[str, Any]:
        if self.beta:
            kind = BETA_NAMES.get(kind, kind)
        return {"type": kind, "event_id": f"event_{next(self._n)}", **fields}

    def error(self, err: ProtocolError) -> dict[str, Any]:
        body = {"type": err.type, "code": err.code, "message": err.message, "param": err.param,
                "event_id": err.event_id}
        return self.make("error", error=body)

    @staticmethod
    def response(resp_id: str, status: str, output: list[dict] | None = None, modalities: list[str] | None = None,
                 status_details: dict | None = None, metrics: dict | None = None,
                 out_format: dict | None = None) -> dict[str, Any]:
        r: dict[str, Any] = {
            "object": "realtime.response",
            "id": resp_id,
            "status": status,
            "status_details": status_details,
            "output": output or [],
            "output_modalities": modalities or ["audio"],
            "conversation_id": None,
            "audio": {"output": {"format": out_format}} if out_format else None,
            "usage": None,
        }
        if metrics is not None:
            r["omni_metrics"] = metrics  # extension: server-side latency breakdown
        return r

    @staticmethod
    def assistant_item(item_id: str, status: str, transcript: str | None = None) -> dict[str, Any]:
        return {
            "id": item_id, "object": "realtime.item", "type": "message", "role": "assistant", "status": status,
            "content": [{"type": "output_audio", "transcript": transcript}],
        }

    @staticmethod
    def function_call_item(item_id: str, call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
        return {"id": item_id, "object": "realtime.item", "type": "function_call", "status": status,
                "call_id": call_id, "name": name, "arguments": arguments}

    @staticmethod
    def user_item(item_id: str, content: list[dict]) -> dict[str, Any]:
        return {"id": item_id, "object": "realtime.item", "type": "message", "role": "user", "status": "completed",
                "content": content}


def dumps(event: dict[str, Any]) -> str:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False)

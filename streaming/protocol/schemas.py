"""The schema of every client event (spec types in validate.py).

`check_event` runs on each parsed message before the session acts on it, so
the session code only ever sees fields of the documented JSON types, finite
numbers in range, and strings and lists of bounded size. What needs more than
the message itself stays where it is checked today, with its own error codes:
supported audio formats and the session's numeric ranges (config.py, e.g.
`unsupported_audio_format`), base64 / pcm16 / JPEG payloads (decoded on
receipt: `invalid_audio`, `invalid_image`), whether an item, a call or a
response exists (`item_not_found`, `call_id_not_found`,
`response_cancel_not_active`), and what a tool's parameter schema may use
(config.py, with omni/tool_calls.py). docs/protocol.md lists the rules in
prose; keep the two in step.
"""

from __future__ import annotations

from typing import Any

from streaming.protocol.errors import ProtocolError
from streaming.protocol.validate import Bool, Either, Enum, Int, List, Null, Num, Obj, Optional, Spec, Str, Tagged

MAX_TEXT = 65536  # characters of instructions or of one text part
MAX_ID = 64  # characters of an item or response id (the server's own are 25)
MAX_PARTS = 64  # content parts of one item
MAX_MEDIA_MS = 10**10  # media times (time_ms, audio_end_ms): about 115 days
ID = Str(MAX_ID)
PAYLOAD = Str(None)  # base64 audio or image; the message size limit bounds it
MODALITIES = List(Enum("text", "audio"), min_items=1, max_items=2)

# an audio format: "pcm16" (beta) or {"type": "audio/pcm", "rate": 24000}; config.py names unsupported ones
FORMAT = Either(Str(64), Obj({"type": Str(64), "rate": Num()}))
# ranges of the numbers: config.py (threshold 0.05-0.99, silence 100-10000 ms, ...)
TURN_DETECTION = Optional(Obj({
    "type": Enum("server_vad", "semantic_vad"),
    "eagerness": Enum("low", "medium", "high", "auto"),
    "threshold": Num(),
    "prefix_padding_ms": Num(),
    "silence_duration_ms": Num(),
    "speculative_silence_ms": Optional(Num()),
    "create_response": Optional(Bool()),
    "interrupt_response": Optional(Bool()),
    "ignore_backchannels": Optional(Bool()),
}))
VOICE = Either(Str(128), Obj(), Null())  # a name, or the GA {"id": ...}; only names are used
MAX_TOKENS = Either(Int(1, 100000), Enum("inf"), Null())
MAX_TOOLS = 128
MCP = "MCP servers are not supported; declare function tools"
# a function tool; what its `parameters` schema may use is checked in config.py (omni/tool_calls.py)
TOOL = Tagged("type", {"function": Obj({
    "type": Str(64),
    "name": Str(64),
    "description": Optional(Str(MAX_TEXT)),
    "parameters": Optional(Obj()),
}, required=("name",))}, refused={"mcp": MCP}, default="function", refused_code="unsupported_tool_type")
TOOLS = Optional(List(TOOL, max_items=MAX_TOOLS))
TOOL_CHOICE = Optional(Either(
    Enum("auto", "none", "required"),
    Tagged("type", {"function": Obj({"type": Str(64), "name": Str(64)}, required=("name",))}, refused={"mcp": MCP},
           refused_code="unsupported_tool_type"),
))
# input transcription: the server uses its own recognizer, whatever model is named (config.py echoes it)
TRANSCRIPTION = Optional(Obj({
    "model": Optional(Str(128)),
    "language": Optional(Str(32)),
    "prompt": Optional(Str(MAX_TEXT)),
}))

SESSION = Obj({
    "type": Str(64),
    "instructions": Optional(Str(MAX_TEXT)),
    "output_modalities": Optional(MODALITIES),
    "modalities": Optional(MODALITIES),
    "max_output_tokens": MAX_TOKENS,
    "max_response_output_tokens": MAX_TOKENS,
    "input_audio_format": FORMAT,
    "output_audio_format": FORMAT,
    "turn_detection": TURN_DETECTION,
    "voice": VOICE,
    "input_audio_transcription": TRANSCRIPTION,
    "tools": TOOLS,
    "tool_choice": TOOL_CHOICE,
    "audio": Optional(Obj({
        "input": Optional(Obj({"format": FORMAT, "turn_detection": TURN_DETECTION, "transcription": TRANSCRIPTION})),
        "output": Optional(Obj({"format": FORMAT, "voice": VOICE})),
    })),
    "omni": Optional(Obj({"debug_events": Bool(), "dense_fps": Num(), "sparse_fps": Num()})),
})

CONTENT_PART = Obj({
    "type": Enum("input_text", "text", "output_text", "input_audio"),
    "text": Str(MAX_TEXT),
    "audio": PAYLOAD,
    "transcript": Optional(Str(MAX_TEXT)),
}, required=("type",))

MESSAGE = Obj({
    "id": Optional(ID),
    "type": Str(64),
    "role": Enum("user", "system", "assistant"),
    "content": List(CONTENT_PART, min_items=1, max_items=MAX_PARTS),
}, required=("role", "content"))
FUNCTION_CALL = Obj({
    "id": Optional(ID),
    "type": Str(64),
    "call_id": ID,
    "name": Str(64),
    "arguments": Str(MAX_TEXT),
}, required=("call_id", "name", "arguments"))
FUNCTION_CALL_OUTPUT = Obj({
    "id": Optional(ID),
    "type": Str(64),
    "call_id": ID,
    "output": Str(MAX_TEXT),
}, required=("call_id", "output"))
# every item type of the Realtime API: accepted, or refused with a code that names it
ITEM = Tagged("type", {"message": MESSAGE, "function_call": FUNCTION_CALL,
                       "function_call_output": FUNCTION_CALL_OUTPUT},
              refused={k: MCP for k in ("mcp_call", "mcp_list_tools", "mcp_approval_request", "mcp_approval_response")},
              default="message", refused_code="unsupported_item_type")

EVENTS: dict[str, Spec] = {
    "session.update": Obj({"session": SESSION}, required=("session",)),
    "input_audio_buffer.append": Obj({"audio": PAYLOAD}, required=("audio",)),
    "input_audio_buffer.commit": Obj(),
    "input_audio_buffer.clear": Obj(),
    "conversation.item.create": Obj({"item": ITEM, "previous_item_id": Optional(ID)}, required=("item",)),
    "conversation.item.truncate": Obj({
        "item_id": ID,
        "content_index": Int(0, MAX_PARTS),
        "audio_end_ms": Int(0, MAX_MEDIA_MS),
    }, required=("item_id", "audio_end_ms")),
    "conversation.item.retrieve": Obj({"item_id": ID}, required=("item_id",)),
    "conversation.item.delete": Obj({"item_id": ID}, required=("item_id",)),
    "response.create": Obj({"response": Optional(Obj({
        "output_modalities": Optional(MODALITIES),
        "modalities": Optional(MODALITIES),
        "tools": TOOLS,
        "tool_choice": TOOL_CHOICE,
    }))}),
    "response.cancel": Obj({"response_id": Optional(ID)}),
    "output_audio_buffer.clear": Obj(),
    "input_image_buffer.append": Obj({"image": PAYLOAD, "time_ms": Optional(Num(0, MAX_MEDIA_MS))},
                                     required=("image",)),
}


def check_event(kind: str, obj: dict[str, Any], event_id: str | None) -> None:
    """Raise a ProtocolError (echoing `event_id`) if `obj` does not fit the schema of `kind`."""
    spec = EVENTS.get(kind)
    if spec is None:
        return
    try:
        spec.check(obj, "")
    except ProtocolError as err:
        err.event_id = event_id
        raise

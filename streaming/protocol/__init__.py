"""The wire protocol of the real-time server, defined once.

OpenAI-Realtime-compatible JSON events (the names the current `openai` SDK's
realtime client sends and expects), a documented extension event for video
frames, the schema every client event is checked against before the server
acts on it (schemas.py, validate.py, safe_json.py; frames: image.py), the
session configuration they negotiate, and pcm16 audio helpers. This package
imports numpy and the pure-Python omni.tool_calls only (Pillow on the first
frame check), so thin clients (the demo) can use it.
See docs/protocol.md for the prose version.
"""

from streaming.protocol.audio import (
    StreamingResampler,
    decode_pcm16,
    encode_pcm16,
    pcm16_bytes_to_float,
    float_to_pcm16_bytes,
)
from streaming.protocol.config import (
    AudioFormat,
    SessionConfig,
    TurnDetection,
    apply_session_update,
)
from streaming.protocol.events import (
    CLIENT_EVENTS,
    ClientEvent,
    ProtocolError,
    ServerEvents,
    parse_client_event,
)

__all__ = [
    "AudioFormat",
    "CLIENT_EVENTS",
    "ClientEvent",
    "ProtocolError",
    "ServerEvents",
    "SessionConfig",
    "StreamingResampler",
    "TurnDetection",
    "apply_session_update",
    "decode_pcm16",
    "encode_pcm16",
    "float_to_pcm16_bytes",
    "parse_client_event",
    "pcm16_bytes_to_float",
]

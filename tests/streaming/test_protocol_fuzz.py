"""Property-based fuzzing of the realtime protocol against a live server.

Hypothesis draws short conversations of valid, mutated and garbage client
messages (wrong types, missing and extra fields, NaN / huge numbers, deep
nesting, broken JSON, invalid UTF-8, corrupt JPEG frames) and plays each one
over a fresh websocket, then sends a probe event. Properties:

  - the probe is answered: the session survived every message and still talks;
  - every error event has a documented code and names a message (no silent close);
  - the server logs no error (a traceback means validation missed something);
  - a well-behaved session running beside the fuzzer all along completes every turn.

Bounded for the suite (a few seconds to ~30 s on a 2-core CPU); the longer run
with figures is bench/protocol_fuzz.py.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from live_server import LiveServer, connect, recv_json, until
from streaming_helpers import ScriptedModel

from streaming.protocol import encode_pcm16

REPLY = "Sure. The sky is blue, mostly. Bye now!"
# every code the protocol documents (docs/protocol.md, "Errors")
CODES = {
    "invalid_json", "nesting_too_deep", "invalid_event", "unknown_event", "unsupported_event", "missing_field",
    "invalid_type", "invalid_value", "message_too_large", "session_not_configured", "unsupported_audio_format",
    "invalid_audio", "invalid_image", "input_buffer_overflow", "input_audio_buffer_commit_empty",
    "conversation_already_has_active_response", "response_cancel_not_active", "item_not_found",
    "server_error", "context_reset", "unsupported_item_type", "unsupported_tool_type", "call_id_not_found",
    "call_already_answered",
}
# The random model may open a tool call it never closes or fill it with junk: the server then says so
# (fail closed). Those are the model's errors, not the client's, and are allowed here.
MODEL_CODES = {
    "tool_call_incomplete", "tool_call_invalid_json", "tool_call_invalid_arguments", "tool_call_not_allowed",
    "tool_call_unknown_function",
}


def _jpeg(shade: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((16, 24, 3), shade, np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


JPEG = _jpeg(120)
B64_JPEG = base64.b64encode(JPEG).decode()
B64_AUDIO = encode_pcm16((0.05 * np.sin(np.arange(2400) / 5)).astype(np.float32))  # 0.1 s at 24 kHz
B64_SECOND = encode_pcm16(np.zeros(26400, np.float32))  # 1.1 s at 24 kHz: a full packet when committed
TEXT_ITEM = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}


def templates() -> list[dict]:
    """One valid example of every client event (fresh objects: they get mutated)."""
    return [
        {"type": "session.update", "session": {"type": "realtime", "instructions": "be brief",
                                               "output_modalities": ["audio"], "max_output_tokens": 4,
                                               "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000},
                                                                   "turn_detection": None},
                                                         "output": {"format": "pcm16", "voice": "alloy"}},
                                               "omni": {"debug_events": True, "dense_fps": 2.0}}},
        {"type": "session.update", "session": {"turn_detection": {
            "type": "semantic_vad", "eagerness": "high", "threshold": 0.5, "silence_duration_ms": 500,
            "speculative_silence_ms": 200, "create_response": True, "interrupt_response": True}}},
        {"type": "input_audio_buffer.append", "audio": B64_AUDIO},
        {"type": "input_audio_buffer.append", "audio": B64_SECOND},
        {"type": "input_audio_buffer.commit"},
        {"type": "input_audio_buffer.clear"},
        {"type": "conversation.item.create", "item": json.loads(json.dumps(TEXT_ITEM))},
        {"type": "conversation.item.create", "item": {"type": "message", "role": "user", "content": [
            {"type": "input_audio", "audio": B64_AUDIO}]}},
        {"type": "conversation.item.truncate", "item_id": "item_x", "content_index": 0, "audio_end_ms": 100},
        {"type": "conversation.item.create", "item": {"type": "function_call_output", "call_id": "call_x",
                                                      "output": "{}"}},
        {"type": "conversation.item.create", "item": {"type": "function_call", "call_id": "call_y", "name": "f",
                                                      "arguments": "{}"}},
        {"type": "conversation.item.retrieve", "item_id": "item_x"},
        {"type": "conversation.item.delete", "item_id": "item_x"},
        {"type": "session.update", "session": {"tools": [{"type": "function", "name": "f", "parameters": {
            "type": "object", "properties": {"on": {"type": "boolean"}}, "required": ["on"]}}],
            "tool_choice": {"type": "function", "name": "f"}, "audio": {"input": {"transcription": {"model": "m"}}}}},
        {"type": "response.create", "response": {"tools": [], "tool_choice": "none"}},
        {"type": "response.create", "response": {"output_modalities": ["text"]}},
        {"type": "response.cancel"},
        {"type": "output_audio_buffer.clear"},
        {"type": "input_image_buffer.append", "image": B64_JPEG, "time_ms": 300},
    ]


KEYS = ["type", "session", "audio", "input", "output", "format", "rate", "turn_detection", "eagerness",
        "threshold", "item", "content", "text", "role", "response", "output_modalities", "time_ms", "image",
        "item_id", "audio_end_ms", "content_index", "response_id", "omni", "max_output_tokens", "event_id",
        "tools", "tool_choice", "name", "parameters", "call_id", "output", "arguments", "transcription"]
LEAF = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10)
        | st.sampled_from([10**400, -(10**30), 2**63, 0, -1, 1e308, "inf", "pcm16", "audio", "text", "",
                           "semantic_vad", "server_vad", "message", "user", "audio/pcm", B64_AUDIO[:9]]))
JSON = st.recursive(LEAF, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.sampled_from(KEYS) | st.text(
    max_size=5), c, max_size=3), max_leaves=8)


def paths(obj, prefix=()):
    """Every (container path, key) inside obj."""
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.append(prefix + (k,))
            out += paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.append(prefix + (i,))
            out += paths(v, prefix + (i,))
    return out


@st.composite
def mutated(draw) -> str:
    """A valid event with one to three fields replaced, deleted or added."""
    event = draw(st.sampled_from(range(len(templates()))))
    event = templates()[event]
    for _ in range(draw(st.integers(1, 3))):
        where = paths(event)
        if not where:
            break
        path = draw(st.sampled_from(where))
        parent = event
        for k in path[:-1]:
            parent = parent[k]
        action = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        if action == "replace":
            parent[path[-1]] = draw(JSON)
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.sampled_from(KEYS))] = draw(JSON)
    return json.dumps(event)  # NaN / Infinity come out as the bare literals


@st.composite
def raw_text(draw) -> str | bytes:
    """Broken messages: cut JSON, deep nesting, odd literals, invalid UTF-8."""
    base = json.dumps(draw(st.sampled_from(templates())))
    kind = draw(st.sampled_from(["cut", "deep", "literal", "surrogate", "bytes", "text", "fake_jpeg"]))
    if kind == "cut":
        return base[:draw(st.integers(0, len(base)))]
    if kind == "deep":
        n = draw(st.integers(30, 5000))
        return '{"type":"session.update","session":{"instructions":' + "[" * n + "]" * n + "}}"
    if kind == "literal":
        lit = draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "9" * 5000, "-0", "1E400"]))
        return base.replace("300", lit).replace("100", lit).replace("24000", lit).replace('"high"', lit)
    if kind == "surrogate":
        return base.replace("be brief", "\\udc80").replace("hi", "\\ud83d")
    if kind == "bytes":
        return draw(st.binary(max_size=40))
    if kind == "fake_jpeg":
        data = bytearray(JPEG)
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
        cut = draw(st.integers(2, len(data)))
        return json.dumps({"type": "input_image_buffer.append", "image": base64.b64encode(bytes(data[:cut])).decode(),
                           "time_ms": draw(st.integers(0, 2000))})
    return draw(st.text(max_size=30))


MESSAGE = st.one_of(st.sampled_from(templates()).map(json.dumps), mutated(), raw_text(), JSON.map(json.dumps))


class GoodSession:
    """A well-behaved client on its own thread and loop: text turns, one after another,
    for as long as the fuzzer runs. Anything but a completed scripted reply is a failure."""

    def __init__(self, url: str) -> None:
        self.url, self.turns, self.failures = url, 0, []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        try:
            async with connect(self.url, max_size=None) as ws:
                await recv_json(ws)
                await ws.send(json.dumps({"type": "session.update", "session": {
                    "audio": {"input": {"turn_detection": None}}}}))
                await until(ws, lambda e: e["type"] == "session.updated")
                while not self.stop.is_set():
                    await ws.send(json.dumps({"type": "conversation.item.create", "item": TEXT_ITEM}))
                    await ws.send(json.dumps({"type": "response.create"}))
                    seen: list[dict] = []
                    done = await until(ws, lambda e: e["type"] == "response.done", 30, seen)
                    errors = [e for e in seen if e["type"] == "error"]
                    transcript = done["response"]["output"][0]["content"][0]["transcript"]
                    if errors or done["response"]["status"] != "completed" or transcript != REPLY:
                        self.failures.append((errors, done["response"]["status"], transcript))
                    self.turns += 1
        except Exception as e:  # a closed connection or a timeout is a failure too
            self.failures.append(repr(e))


@pytest.fixture(scope="module")
def fuzz_server():
    with LiveServer(ScriptedModel(max_slots=3), max_message_bytes=256_000) as live:
        good = GoodSession(live.url)
        good.thread.start()
        yield live, good
        good.stop.set()
        good.thread.join(40)
    assert not good.failures, good.failures[:3]
    assert good.turns > 0


async def play(url: str, configure: bool, messages: list) -> tuple[list[dict], str | None]:
    """Send the messages, then a probe; return the error events and why the session
    failed (None: it answered the probe)."""
    async with connect(url, max_size=None) as ws:
        await recv_json(ws)
        if configure:
            await ws.send(json.dumps({"type": "session.update", "session": {"audio": {"input": {
                "turn_detection": None}}}}))
        for m in messages:
            await ws.send(m)
        await ws.send(json.dumps({"type": "omni.probe", "event_id": "probe"}))
        seen: list[dict] = []
        try:
            await until(ws, lambda e: e["type"] == "error" and e["error"]["event_id"] == "probe", 20, seen)
        except Exception as e:
            return [s for s in seen if s["type"] == "error"], f"no answer to the probe: {e!r}"
        return [s for s in seen if s["type"] == "error"], None


@settings(max_examples=80, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(configure=st.booleans(), messages=st.lists(MESSAGE, min_size=1, max_size=6))
def test_fuzzed_sessions_never_die_and_never_disturb_others(fuzz_server, configure, messages):
    live, good = fuzz_server
    n_logged = len(live.errors.records)
    errors, lost = asyncio.run(play(live.url, configure, messages))
    assert lost is None, lost
    for e in errors:
        assert e["error"]["message"], e
        if e["error"]["type"] == "tool_call_error":
            assert e["error"]["code"] in MODEL_CODES, e
            continue
        assert e["error"]["code"] in CODES, e
        assert e["error"]["type"] == "invalid_request_error", e  # a server_error means validation missed it
    assert len(live.errors.records) == n_logged, live.errors.text()
    assert not good.failures, good.failures[:3]

"""Hostile input over a real websocket: every malformed client event gets a
typed `error` naming the problem, the session stays open, and a following
valid turn still works; the server logs no traceback. The first cases are
messages that once ended the session with no error at all (an unhandled
exception in the session); then corrupt video frames, non-finite numbers,
the last-resort guard, the status of a reply cut by the step cap, and a
first session.update whose slot cannot be opened."""

from __future__ import annotations

import asyncio
import base64
import io
import json

import numpy as np
import pytest
from live_server import LiveServer, connect, recv_json, until
from streaming_helpers import ScriptedModel

from streaming.protocol import encode_pcm16, parse_client_event
from streaming.protocol.errors import ProtocolError
from streaming.protocol.safe_json import nesting_depth
from streaming.session import Session

REPLY = "Sure. The sky is blue, mostly. Bye now!"  # ScriptedModel's reply
SR = 16000


def jpeg(h: int = 24, w: int = 32, shade: int = 90) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((h, w, 3), shade, np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def ev(kind: str, **fields) -> str:
    return json.dumps({"type": kind, "event_id": "evt_bad", **fields})


def session_update(session: dict) -> str:
    return ev("session.update", session=session)


def image_event(time_literal: str, image: bytes | None = None) -> str:
    """An image event whose time_ms is written as raw JSON (NaN, 1e999, 10**400 ...)."""
    return ('{"type":"input_image_buffer.append","event_id":"evt_bad","image":"%s","time_ms":%s}'
            % (b64(image or jpeg()), time_literal))


def deep_objects(n: int) -> str:
    return '{"a":' * n + "1" + "}" * n


TD = "session.audio.input.turn_detection"
CASES = {
    # each of these once ended the session with close code 1000 and no error event
    "nested arrays": ("[" * 100_000 + "]" * 100_000, "nesting_too_deep", None),
    "nested objects": (deep_objects(50_000), "nesting_too_deep", None),
    "audio.input string": (session_update({"audio": {"input": "pcm16"}}), "invalid_type", "session.audio.input"),
    "audio.input list": (session_update({"audio": {"input": [1, 2]}}), "invalid_type", "session.audio.input"),
    "audio.output string": (session_update({"audio": {"output": "x"}}), "invalid_type", "session.audio.output"),
    "audio.output list": (session_update({"audio": {"output": []}}), "invalid_type", "session.audio.output"),
    "eagerness list": (session_update({"audio": {"input": {"turn_detection": {
        "type": "semantic_vad", "eagerness": ["high"]}}}}), "invalid_type", f"{TD}.eagerness"),
    "eagerness object": (session_update({"audio": {"input": {"turn_detection": {
        "type": "semantic_vad", "eagerness": {"x": 1}}}}}), "invalid_type", f"{TD}.eagerness"),
    "response string": (ev("response.create", response="now"), "invalid_type", "response"),
    "response number": (ev("response.create", response=7), "invalid_type", "response"),
    "output_modalities number": (ev("response.create", response={"output_modalities": 3}), "invalid_type",
                                 "response.output_modalities"),
    "time_ms 10**400": (image_event(str(10**400)), "invalid_value", "time_ms"),
    "truncate item_id list": (ev("conversation.item.truncate", item_id=["a"], audio_end_ms=0), "invalid_type",
                              "item_id"),
    "truncate item_id object": (ev("conversation.item.truncate", item_id={"a": 1}, audio_end_ms=0),
                                "invalid_type", "item_id"),
    # corrupt frames are refused on receipt, not when a packet picks them
    "fake jpeg": (ev("input_image_buffer.append", image=b64(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)),
                  "invalid_image", "image"),
    "truncated jpeg": (ev("input_image_buffer.append", image=b64(jpeg(64, 64)[:300])), "invalid_image", "image"),
    "jpeg too large": (ev("input_image_buffer.append", image=b64(jpeg(8, 5000))), "invalid_image", "image"),
    # non-finite and out-of-range numbers
    "time_ms NaN": (image_event("NaN"), "invalid_value", "time_ms"),
    "time_ms Infinity": (image_event("Infinity"), "invalid_value", "time_ms"),
    "time_ms -Infinity": (image_event("-Infinity"), "invalid_value", "time_ms"),
    "time_ms 1e999": (image_event("1e999"), "invalid_value", "time_ms"),
    "time_ms negative": (image_event("-5"), "invalid_value", "time_ms"),
    "time_ms string": (image_event('"5"'), "invalid_type", "time_ms"),
    "threshold NaN": ('{"type":"session.update","event_id":"evt_bad","session":{"turn_detection":'
                      '{"threshold":NaN}}}', "invalid_value", "session.turn_detection.threshold"),
    "integer of 5000 digits": ('{"type":"response.create","event_id":"evt_bad","x":' + "9" * 5000 + "}",
                               "invalid_json", None),
    "audio_end_ms float": (ev("conversation.item.truncate", item_id="item_x", audio_end_ms=1.5), "invalid_type",
                           "audio_end_ms"),
    # other types, sizes and values
    "eagerness unknown": (session_update({"turn_detection": {"type": "semantic_vad", "eagerness": "eager"}}),
                          "invalid_value", "session.turn_detection.eagerness"),
    "modalities string": (session_update({"output_modalities": "audio"}), "invalid_type",
                          "session.output_modalities"),
    "debug_events number": (session_update({"omni": {"debug_events": 1}}), "invalid_type",
                            "session.omni.debug_events"),
    "lone surrogate": ('{"type":"session.update","event_id":"evt_bad","session":{"instructions":"a\\ud800"}}',
                       "invalid_value", "session.instructions"),
    "instructions too long": (session_update({"instructions": "x" * 70_000}), "invalid_value",
                              "session.instructions"),
    "item content not a list": (ev("conversation.item.create", item={"role": "user", "content": "hi"}),
                                "invalid_type", "item.content"),
    "item text number": (ev("conversation.item.create", item={"role": "user", "content": [
        {"type": "input_text", "text": 5}]}), "invalid_type", "item.content[0].text"),
    "item role missing": (ev("conversation.item.create", item={"content": [{"type": "input_text", "text": "x"}]}),
                          "missing_field", "item.role"),
    "cancel id object": (ev("response.cancel", response_id={}), "invalid_type", "response_id"),
    "image number": (ev("input_image_buffer.append", image=12), "invalid_type", "image"),
    "audio list": (ev("input_audio_buffer.append", audio=[1, 2]), "invalid_type", "audio"),
}


@pytest.fixture(scope="module")
def server():
    with LiveServer(ScriptedModel(max_slots=4)) as live:
        yield live


@pytest.fixture(autouse=True)
def no_server_faults(server):
    """No test of this module may make the server log an error (a traceback); the two
    that provoke one on purpose remove the record they expect."""
    n = len(server.errors.records)
    yield
    new = server.errors.records[n:]
    assert not new, "server logged errors:\n" + "\n".join(server.errors.format(r) for r in new)


def run(coro, timeout: float = 60.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def configured(ws, **session) -> None:
    await recv_json(ws)  # session.created
    await ws.send(json.dumps({"type": "session.update", "session": {
        "type": "realtime", "audio": {"input": {"format": {"type": "audio/pcm", "rate": SR},
                                                "turn_detection": None}}, **session}}))
    await until(ws, lambda e: e["type"] == "session.updated")


async def text_turn(ws, text: str = "hello") -> dict:
    """A valid manual turn; returns its response.done."""
    await ws.send(json.dumps({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}}))
    await ws.send(json.dumps({"type": "response.create"}))
    return await until(ws, lambda e: e["type"] in ("response.done", "error"), 20)


@pytest.mark.parametrize("name", list(CASES))
def test_malformed_event_gets_a_typed_error_and_the_session_goes_on(server, name):
    raw, code, param = CASES[name]

    async def main():
        async with connect(server.url, max_size=None) as ws:
            await configured(ws)
            await ws.send(raw)
            err = await until(ws, lambda e: e["type"] == "error")
            done = await text_turn(ws)
            return err["error"], done

    err, done = run(main())
    assert (err["code"], err["param"]) == (code, param), err
    assert err["type"] == "invalid_request_error" and err["message"]
    if code not in ("nesting_too_deep", "invalid_json"):  # parsed far enough to know the event
        assert err["event_id"] == "evt_bad"
    assert done["type"] == "response.done", done
    assert done["response"]["status"] == "completed"
    assert done["response"]["output"][0]["content"][0]["transcript"] == REPLY


def test_the_same_errors_before_session_update(server):
    """Schema errors come first: an unconfigured session gets them too and stays usable."""
    async def main():
        async with connect(server.url, max_size=None) as ws:
            await recv_json(ws)
            codes = []
            for name in ("response string", "truncate item_id list", "nested arrays", "time_ms NaN"):
                await ws.send(CASES[name][0])
                codes.append((await until(ws, lambda e: e["type"] == "error"))["error"]["code"])
            await ws.send(ev("input_image_buffer.append", image=b64(jpeg())))  # valid, but too early
            codes.append((await until(ws, lambda e: e["type"] == "error"))["error"]["code"])
            await ws.send(json.dumps({"type": "session.update", "session": {"audio": {"input": {
                "turn_detection": None}}}}))
            await until(ws, lambda e: e["type"] == "session.updated")
            return codes, await text_turn(ws)

    codes, done = run(main())
    assert codes == ["invalid_type", "invalid_type", "nesting_too_deep", "invalid_value", "session_not_configured"]
    assert done["response"]["status"] == "completed"


def test_a_corrupt_frame_never_reaches_a_packet(server):
    """Only frames that decode are kept; the packet of the committed turn takes the good ones."""
    model = server.model

    async def main():
        async with connect(server.url, max_size=None) as ws:
            await configured(ws)
            n = len(model.calls)
            fake = b"\xff\xd8\xff\xe0" + bytes(300)
            for t, data in ((100, fake), (200, jpeg()), (700, jpeg(64, 64)[:400]), (800, jpeg(shade=10))):
                await ws.send(json.dumps({"type": "input_image_buffer.append", "image": b64(data), "time_ms": t}))
            audio = (0.1 * np.sin(np.arange(int(1.2 * SR)) / 8)).astype(np.float32)
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": encode_pcm16(audio)}))
            await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
            await ws.send(json.dumps({"type": "response.create"}))
            seen: list[dict] = []
            done = await until(ws, lambda e: e["type"] == "response.done", 20, seen)
            return [e for e in seen if e["type"] == "error"], done, model.calls[n:]

    errors, done, calls = run(main())
    assert [(e["error"]["code"], e["error"]["param"]) for e in errors] == [("invalid_image", "image")] * 2
    assert done["response"]["status"] == "completed"
    encodes = [c for c in calls if c[0] == "encode"]
    assert [c[3] for c in encodes] == [2, 0]  # the 1 s packet: the two good frames; the 0.2 s rest: none


def test_an_unexpected_failure_is_a_server_error_and_the_session_goes_on(server, monkeypatch):
    """The last resort: an exception the validation did not foresee becomes an error event
    (type server_error, logged with its traceback), not the end of the session."""
    def broken(self, *a, **k):
        raise RuntimeError("a bug the schema did not catch")

    monkeypatch.setattr(Session, "_commit", broken)
    n = len(server.errors.records)

    async def main():
        async with connect(server.url, max_size=None) as ws:
            await configured(ws)
            await ws.send(json.dumps({"type": "input_audio_buffer.commit", "event_id": "evt_commit"}))
            err = await until(ws, lambda e: e["type"] == "error")
            return err["error"], await text_turn(ws)

    err, done = run(main())
    assert (err["type"], err["code"], err["event_id"]) == ("server_error", "server_error", "evt_commit")
    assert done["response"]["status"] == "completed"
    logged = server.errors.records[n:]
    assert len(logged) == 1 and logged[0].exc_info and "a bug the schema did not catch" in server.errors.text()
    del server.errors.records[n:]  # expected here


def test_depth_scan_is_cheap_and_ignores_brackets_in_strings():
    import time

    assert nesting_depth('{"a": "[[[[[[", "b": [[1], {"c": ["]]]"]}]}') == 4
    t0 = time.perf_counter()
    assert nesting_depth("[" * 1_000_000) == 1_000_000
    assert time.perf_counter() - t0 < 1.0
    # an escaped quote does not end the string early
    assert nesting_depth(r'["\"[[[[", [[]]]') == 3
    with pytest.raises(ProtocolError) as e:
        parse_client_event("[" * 33 + "]" * 33)
    assert e.value.code == "nesting_too_deep"
    assert parse_client_event('{"type":"response.create","x":' + "[" * 30 + "]" * 30 + "}").type == "response.create"


def test_reply_cut_by_the_step_cap_is_incomplete():
    """The real model path (the `debug` OmniModel, random weights: it babbles on): a reply
    that reaches the server's step cap is reported `incomplete`, not `completed`."""
    import torch

    from omni.config import get_omni_config
    from omni.generation import GenerationOptions
    from omni.model import OmniModel
    from omni.realtime import RealtimeOmni

    cap = 6
    torch.manual_seed(0)
    omni = RealtimeOmni(OmniModel(get_omni_config("debug")), max_slots=1, capacity=1024,
                        options=GenerationOptions(max_new_tokens=cap))  # as streaming/model_loader.py sets it

    async def main():
        with LiveServer(omni, max_steps=cap) as live:
            async with connect(live.url, max_size=None) as ws:
                await configured(ws, output_modalities=["text"])
                return await text_turn(ws, "tell me a long story"), live.errors.text()

    done, faults = run(main(), 120)
    r = done["response"]
    assert r["omni_metrics"]["steps"] == cap
    assert r["status"] == "incomplete", r
    assert r["status_details"] == {"type": "incomplete", "reason": "max_output_tokens"}
    assert not faults


def test_a_session_whose_slot_cannot_open_stays_unconfigured_and_can_retry(server, monkeypatch):
    """The first session.update opens the session's slot; when that fails, the session
    keeps its old configuration (unconfigured) and a later session.update succeeds."""
    model = server.model
    real_open = model.open_slot
    calls = []

    def flaky_open(system_prompt=None):
        calls.append(system_prompt)
        if len(calls) == 1:
            raise RuntimeError("no slot this time")
        return real_open(system_prompt)

    monkeypatch.setattr(model, "open_slot", flaky_open)
    n = len(server.errors.records)

    async def main():
        async with connect(server.url, max_size=None) as ws:
            await recv_json(ws)
            update = {"type": "session.update", "session": {"instructions": "be kind", "audio": {"input": {
                "turn_detection": None}}}}
            await ws.send(json.dumps(update))
            first = await until(ws, lambda e: e["type"] in ("error", "session.updated"))
            await ws.send(json.dumps({"type": "response.create"}))
            early = await until(ws, lambda e: e["type"] in ("error", "response.created"))
            await ws.send(json.dumps(update))
            second = await until(ws, lambda e: e["type"] in ("error", "session.updated"))
            return first, early, second, await text_turn(ws)

    first, early, second, done = run(main())
    assert first["type"] == "error" and first["error"]["code"] == "server_error"
    assert early["error"]["code"] == "session_not_configured"
    assert second["type"] == "session.updated" and second["session"]["instructions"] == "be kind"
    assert done["response"]["status"] == "completed" and calls == ["be kind", "be kind"]
    assert len(server.errors.records) == n + 1  # the failed open, logged with its traceback
    del server.errors.records[n:]


def test_input_rate_changed_before_any_audio_is_used(server):
    """session.update may change the input rate until audio was sent; the audio then
    goes through a resampler for the new rate (1 s at 24 kHz is 1 s at 16 kHz)."""
    model = server.model

    async def main():
        async with connect(server.url, max_size=None) as ws:
            await configured(ws)  # 16 kHz
            await ws.send(json.dumps({"type": "session.update", "session": {"audio": {"input": {
                "format": {"type": "audio/pcm", "rate": 24000}}}}}))
            await until(ws, lambda e: e["type"] == "session.updated")
            n = len(model.calls)
            await ws.send(json.dumps({"type": "input_audio_buffer.append",
                                      "audio": encode_pcm16(np.zeros(24000, np.float32))}))
            await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
            await ws.send(json.dumps({"type": "response.create"}))
            await until(ws, lambda e: e["type"] == "response.done", 20)
            return [c for c in model.calls[n:] if c[0] == "encode"]

    encodes = run(main())
    assert sum(c[2] for c in encodes) == pytest.approx(SR, abs=40)

"""Input transcripts: with audio.input.transcription on, the user's words arrive
as conversation.item.input_audio_transcription.delta / .completed for the user
item, from the server's recognizer in its own process, without holding up the
turn; conversation.item.retrieve returns the item with its transcript; delete
removes it. Settings the server cannot honour are echoed as what it uses."""

from __future__ import annotations

import asyncio
import os

import numpy as np
from streaming_helpers import ScriptedModel, run, serving, silence

from streaming.client import RealtimeClient
from streaming.protocol import SessionConfig, apply_session_update, encode_pcm16

SR = 16000



def test_spoken_turn_gets_its_words_and_the_item_can_be_retrieved_and_deleted(voice):
    q = voice("what color is the circle")  # a question of the default world
    model = ScriptedModel()

    async def main():
        async with serving(model) as srv, RealtimeClient(srv.url) as c:
            session = await c.configure(transcription={"model": "gpt-4o-mini-transcribe"})
            await c.stream_audio(np.concatenate([silence(0.3), q, silence(1.0)]), SR, realtime=False)
            r = await c.wait_response(20)
            done = await c.wait_for(lambda e: e["type"] == "conversation.item.input_audio_transcription.completed",
                                    60)
            n = len(c.events)
            for ev in ({"type": "conversation.item.retrieve", "item_id": done["item_id"]},
                       {"type": "conversation.item.delete", "item_id": done["item_id"]},
                       {"type": "conversation.item.retrieve", "item_id": done["item_id"]},
                       {"type": "conversation.item.retrieve", "item_id": r.item_id}):
                await c.send(ev)
            while len([e for e in c.events[n:] if e["type"] in (
                    "conversation.item.retrieved", "conversation.item.deleted", "error")]) < 4:
                await asyncio.sleep(0.05)
            return c, session, r, done, n

    c, session, r, done, n = run(main())
    assert session["audio"]["input"]["transcription"] == {"model": "world-sphinx", "language": "en"}
    assert {"param": "session.audio.input.transcription.model", "requested": "gpt-4o-mini-transcribe",
            "used": "world-sphinx"} in session["omni"]["adjusted"]
    committed = next(e for e in c.events if e["type"] == "input_audio_buffer.committed")
    assert done["item_id"] == committed["item_id"] and done["content_index"] == 0
    words = done["transcript"].split()
    assert len(set(words) & {"what", "color", "is", "the", "circle"}) >= 4, done["transcript"]
    deltas = [e["delta"] for e in c.events if e["type"] == "conversation.item.input_audio_transcription.delta"]
    assert "".join(deltas) == done["transcript"] and done["usage"]["type"] == "duration"
    assert c.input_transcripts[done["item_id"]] == done["transcript"]
    got = [e for e in c.events[n:] if e["type"] in ("conversation.item.retrieved", "conversation.item.deleted", "error")]
    assert got[0]["item"]["content"][0]["transcript"] == done["transcript"]
    assert got[1]["item_id"] == done["item_id"]
    assert got[2]["type"] == "error" and got[2]["error"]["code"] == "item_not_found"
    assert got[3]["item"]["type"] == "message" and got[3]["item"]["content"][0]["transcript"] == r.transcript


def test_transcription_runs_in_its_own_process_and_never_holds_the_turn(voice):
    q = voice("Hello there.")
    model = ScriptedModel()

    async def main():
        async with serving(model, transcriber="streaming_helpers:SlowTranscriber",
                           transcriber_args={"seconds": 2.0}) as srv, RealtimeClient(srv.url) as c:
            await c.configure(transcription={})
            # the first item: an audio item (its recognizer process starts now)
            await c.send({"type": "conversation.item.create", "item": {"type": "message", "role": "user", "content": [
                {"type": "input_audio", "audio": encode_pcm16(np.zeros(8000, np.float32))}]}})
            await c.wait_for(lambda e: e["type"] == "conversation.item.input_audio_transcription.completed", 60)
            n = len(c.events)
            await c.stream_audio(np.concatenate([q, silence(1.0)]), SR, realtime=False)
            r = await c.wait_response(20, start=n)
            done = await c.wait_for(lambda e: e["type"] == "conversation.item.input_audio_transcription.completed",
                                    30, start=n)
            return c, r, done, n

    c, r, done, n = run(main())
    kinds = [e["type"] for e in c.events[n:]]
    # the reply was complete long before the (2 s) transcript: the turn never waited for it
    assert r.status == "completed"
    assert kinds.index("response.done") < kinds.index("conversation.item.input_audio_transcription.completed")
    pid = int(done["transcript"].split()[1])
    assert pid != os.getpid()


def test_unsupported_settings_are_echoed_as_what_the_server_uses():
    asked = {"voice": "alloy", "turn_detection": {"type": "semantic_vad", "eagerness": "low"},
             "input_audio_transcription": {"model": "whisper-1", "language": "de"}}
    cfg = apply_session_update(SessionConfig(transcriber="world-sphinx"), asked)
    out = cfg.to_json()
    assert out["audio"]["output"]["voice"] == "default"
    assert out["audio"]["input"]["turn_detection"]["type"] == "server_vad"
    assert out["audio"]["input"]["turn_detection"]["silence_duration_ms"] == 1000
    assert out["audio"]["input"]["transcription"] == {"model": "world-sphinx", "language": "en"}
    assert {(a["param"], a["requested"], a["used"]) for a in out["omni"]["adjusted"]} == {
        ("session.voice", "alloy", "default"),
        ("session.turn_detection.type", "semantic_vad", "server_vad"),
        ("session.input_audio_transcription.model", "whisper-1", "world-sphinx"),
        ("session.input_audio_transcription.language", "de", "en"),
    }
    # a server without a recognizer says so: transcription null, and why
    none = apply_session_update(SessionConfig(), {"audio": {"input": {"transcription": {}}}}).to_json()
    assert none["audio"]["input"]["transcription"] is None
    assert none["omni"]["adjusted"] == [{"param": "session.audio.input.transcription.model", "requested": "(any)",
                                         "used": None}]
    # asking again for what the server uses clears the note; turning transcription off does too
    again = apply_session_update(cfg, {"voice": "default", "input_audio_transcription": None})
    assert {a["param"] for a in again.to_json()["omni"]["adjusted"]} == {"session.turn_detection.type"}

"""The websocket server end to end with a scripted model: real websockets,
real silero-vad, espeak-ng speech. Turn-taking, gating, barge-in, errors,
admission, security, metrics, and the unmodified `openai` SDK as a client."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import urllib.request

import numpy as np
import pytest
from streaming_helpers import ScriptedModel, run, serving, silence
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from streaming.client import RealtimeClient
from streaming.protocol import encode_pcm16

SR = 16000



def types(c: RealtimeClient) -> list[str]:
    return [e["type"] for e in c.events]


def test_full_turn_gated_audio_and_latency(voice):
    q = voice("What color is the sky?")
    model = ScriptedModel()

    async def main():
        async with serving(model) as srv, RealtimeClient(srv.url) as c:
            await c.configure(omni={"debug_events": True})
            await c.stream_audio(np.concatenate([silence(0.3), q, silence(1.0)]), SR, realtime=True)
            r = await c.wait_response(timeout=20)
            return c, r, srv.metrics.render()

    c, r, prom = run(main())
    assert r.status == "completed" and r.transcript == "Sure. The sky is blue, mostly. Bye now!"
    assert len(r.waveform()) == pytest.approx(8 * 0.06 * 24000, abs=48)  # 8 codec frames at 24 kHz
    t = types(c)
    order = ["input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
             "input_audio_buffer.committed", "response.created", "response.output_audio.delta", "response.done"]
    assert [t.index(k) for k in order] == sorted(t.index(k) for k in order)
    # speculation started before the end of turn; no audio left before it was confirmed
    turn = [e["state"] for e in c.events if e["type"] == "omni.turn"]
    assert turn == ["speculating", "confirmed"]
    assert t.index("omni.turn") < t.index("input_audio_buffer.speech_stopped")
    first_audio = t.index("response.output_audio.delta")
    assert first_audio > t.index("input_audio_buffer.speech_stopped")
    m = r.server_metrics
    assert m["speculative"] and m["speculative_lead_s"] > 0.2  # decoding began >= 200 ms before confirmation
    assert 0 <= m["first_audio_after_confirm_s"] < m["first_audio_after_speech_end_s"]
    assert "omni_first_audio_after_confirm_seconds_count 1" in prom
    assert "omni_responses_total 1" in prom


def test_rollback_when_user_resumes_matches_never_speculated(voice):
    a, b = voice("Hello there."), voice("How are you today?")
    audio = np.concatenate([silence(0.3), a, silence(0.4), b, silence(1.0)])
    model = ScriptedModel(max_slots=2)

    async def main():
        async with serving(model) as srv, RealtimeClient(srv.url) as spec, RealtimeClient(srv.url) as plain:
            await spec.configure(omni={"debug_events": True})
            await plain.configure(turn_detection={"type": "server_vad", "speculative_silence_ms": None})
            await asyncio.gather(spec.stream_audio(audio, SR), plain.stream_audio(audio, SR))
            rs, rp = await asyncio.gather(spec.wait_response(20), plain.wait_response(20))
            return spec, rs, rp, srv.metrics.counter("omni_rollbacks_total")

    spec, rs, rp, rollbacks = run(main())
    states = [e["state"] for e in spec.events if e["type"] == "omni.turn"]
    assert states == ["speculating", "rolled_back", "speculating", "confirmed"]
    assert rollbacks == 1
    assert rs.transcript == rp.transcript and len(spec.replies) == 1
    # the rolled-back attempt left no trace: the speculating session's context up to its reply is
    # the never-speculating one's (which only also holds the extra silence up to its later start)
    spec_ctx, plain_ctx = model.context(0), model.context(1)
    k, kp = spec_ctx.index(("begin",)), plain_ctx.index(("begin",))
    assert spec_ctx[:k] == plain_ctx[:k]
    assert all(t[0] == "audio" for t in plain_ctx[k:kp]) and kp - k <= 6  # <= 400 ms of silence
    assert spec_ctx[k:] == plain_ctx[kp:]
    assert sum(1 for t in spec_ctx if t == ("begin",)) == 1


def test_barge_in_stops_at_once_and_starts_next_turn(voice):
    q, again = voice("Tell me a story."), voice("Stop please.")
    reply = " ".join(f"word{i}{'.' if i % 5 == 4 else ''}" for i in range(60))
    model = ScriptedModel(reply=reply, step_delay=0.04)

    async def main():
        async with serving(model) as srv, RealtimeClient(srv.url) as c:
            await c.configure()
            await c.stream_audio(np.concatenate([q, silence(0.8)]), SR, realtime=False)
            await c.wait_for(lambda e: e["type"] == "response.output_audio.delta", 20)
            await c.wait_for(lambda e: e["type"] == "response.output_audio_transcript.delta"
                             and "word12" in e["delta"], 20)
            n = len(c.events)
            await c.stream_audio(np.concatenate([again, silence(0.8)]), SR, realtime=False)
            first = await c.wait_response(20)
            second = await c.wait_response(30, start=c.events.index(
                next(e for e in c.events if e["type"] == "response.done")) + 1)
            return c, n, first, second, srv.metrics.counter("omni_interruptions_total")

    c, n, first, second, interruptions = run(main())
    assert first.status == "cancelled" and first.status_details["reason"] == "turn_detected"
    assert interruptions == 1 and second.status == "completed"
    done_idx = next(i for i, e in enumerate(c.events) if e["type"] == "response.done")
    # speech_started reaches the client before the cancelled response.done; nothing of it after
    assert any(e["type"] == "input_audio_buffer.speech_started" for e in c.events[n:done_idx])
    assert not [e for e in c.events[done_idx:] if e.get("response_id") == first.id and "delta" in e["type"]]
    # context: the interrupted reply ends at a sentence end, is closed, then the new turn's audio follows
    ctx = model.context(0)
    end = ctx.index(("end",))
    kept = "".join(t[1] for t in ctx[:end] if t[0] == "tok").strip()
    assert kept.endswith(".") and len(kept) < len(reply) and kept in reply
    assert ctx[end + 1][0] == "audio"


def test_malformed_input_gets_errors_and_others_keep_working(voice):
    q = voice("Is it sunny?")
    model = ScriptedModel(max_slots=2)

    async def main():
        async with serving(model, max_message_bytes=64_000) as srv, RealtimeClient(srv.url) as good:
            await good.configure()
            talk = asyncio.create_task(good.stream_audio(np.concatenate([q, silence(1.0)]), SR))
            async with connect(srv.url) as ws:
                got = [json.loads(await ws.recv())]  # session.created
                bad = [
                    json.dumps({"type": "input_audio_buffer.append", "audio": encode_pcm16(silence(0.1))}),
                    json.dumps({"type": "input_image_buffer.append", "image": "AAAA"}),
                    "{oops",
                    json.dumps({"type": "no.such.event"}),
                    json.dumps({"type": "session.update", "session": {
                        "audio": {"input": {"format": {"type": "audio/pcmu"}}}}}),
                    json.dumps({"type": "session.update", "session": {}}),
                    json.dumps({"type": "input_audio_buffer.append", "audio": "@@not-base64@@"}),
                    json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(b"abc").decode()}),
                    json.dumps({"type": "input_audio_buffer.append", "audio": "A" * 70_000}),
                    json.dumps({"type": "input_image_buffer.append", "image": base64.b64encode(b"GIF89a").decode()}),
                ]
                for m in bad:
                    await ws.send(m)
                while len([g for g in got if g["type"] in ("error", "session.updated")]) < len(bad):
                    got.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
            await talk
            r = await good.wait_response(20)
            return got, r

    got, r = run(main())
    codes = [g["error"]["code"] if g["type"] == "error" else g["type"] for g in got[1:]]
    assert codes == ["session_not_configured", "session_not_configured", "invalid_json", "unknown_event",
                     "unsupported_audio_format", "session.updated", "invalid_audio", "invalid_audio",
                     "message_too_large", "invalid_image"]
    fmt = next(g for g in got if g["type"] == "error" and g["error"]["code"] == "unsupported_audio_format")
    assert fmt["error"]["param"] == "session.audio.input.format"
    assert r.status == "completed"


def test_admission_control_and_disconnect_mid_answer_frees_the_slot(voice):
    q = voice("Hi.")
    model = ScriptedModel(max_slots=2, reply=" ".join(["la"] * 200), step_delay=0.02)

    async def main():
        async with serving(model) as srv:
            a, b = RealtimeClient(srv.url), RealtimeClient(srv.url)
            await a.connect()
            await b.connect()
            await a.configure()  # a holds a slot too
            async with connect(srv.url) as ws:  # third: refused with a typed error, then 1013
                e = json.loads(await ws.recv())
                with pytest.raises(ConnectionClosed) as closed:
                    await asyncio.wait_for(ws.recv(), 5)
            await b.configure()
            await b.stream_audio(np.concatenate([q, silence(0.8)]), SR, realtime=False)
            await b.wait_for(lambda e: e["type"] == "response.output_audio.delta", 20)
            await b.close()  # mid-answer
            t0 = time.perf_counter()
            while not (srv.active == 1 and len(model.free) == 1) and time.perf_counter() - t0 < 15:
                await asyncio.sleep(0.02)
            freed = (srv.active, len(model.free))
            print(f"slot freed {time.perf_counter() - t0:.3f} s after the disconnect")
            async with RealtimeClient(srv.url) as d:
                await d.configure()
                ok = d.session["id"]
            await a.close()
            return e, closed.value.rcvd.code, freed, ok

    e, code, freed, ok = run(main())
    assert e["type"] == "error" and e["error"]["code"] == "too_many_sessions"
    assert code == 1013
    assert freed == (1, 1)
    assert ok


def test_api_key_origin_metrics_endpoint():
    model = ScriptedModel()

    async def main():
        async with serving(model, api_key="s3cret") as srv:
            with pytest.raises(InvalidStatus) as no_key:
                async with connect(srv.url):
                    pass
            with pytest.raises(InvalidStatus) as bad_origin:
                async with connect(srv.url, origin="https://evil.example",
                                   additional_headers={"Authorization": "Bearer s3cret"}):
                    pass
            async with RealtimeClient(srv.url, api_key="s3cret", origin=f"http://127.0.0.1:{srv.port}") as c:
                await c.configure()
            url = f"http://127.0.0.1:{srv.port}/metrics"
            body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
            return no_key.value.response.status_code, bad_origin.value.response.status_code, body

    no_key, bad_origin, body = run(main())
    assert (no_key, bad_origin) == (401, 403)
    assert "# TYPE omni_sessions_total counter" in body and "omni_sessions_total 1" in body


def test_manual_turns_text_items_and_cancel_errors():
    model = ScriptedModel()

    async def main():
        async with serving(model) as srv, RealtimeClient(srv.url) as c:
            await c.configure(turn_detection=None, output_modalities=["text"])
            await c.send({"type": "response.cancel"})
            await c.send({"type": "conversation.item.create", "item": {
                "type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi there"}]}})
            await c.send({"type": "response.create"})
            r = await c.wait_response(20)
            return c, r

    c, r = run(main())
    assert c.errors[0]["code"] == "response_cancel_not_active"
    assert r.transcript.startswith("Sure.") and r.waveform().size == 0  # text only
    assert ("user", "hi there") in model.context(0)


def test_openai_sdk_client_unchanged_except_url(voice):
    openai = pytest.importorskip("openai")
    q = voice("What is two plus two?")
    model = ScriptedModel()

    async def main():
        async with serving(model, api_key="sk-local") as srv:
            client = openai.AsyncOpenAI(api_key="sk-local", websocket_base_url=f"ws://127.0.0.1:{srv.port}/v1")
            seen, transcript, audio = [], "", b""
            async with client.realtime.connect(model="gpt-realtime") as conn:
                await conn.session.update(session={"type": "realtime", "output_modalities": ["audio"],
                                                   "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000},
                                                                       "turn_detection": {"type": "server_vad"}}}})
                from streaming.protocol.audio import resample

                pcm = resample(np.concatenate([q, silence(1.0)]), SR, 24000)
                for i in range(0, len(pcm), 4800):
                    await conn.input_audio_buffer.append(audio=encode_pcm16(pcm[i:i + 4800]))
                async for event in conn:
                    seen.append(event.type)
                    if event.type == "response.output_audio_transcript.delta":
                        transcript += event.delta
                    elif event.type == "response.output_audio.delta":
                        audio += base64.b64decode(event.delta)
                    elif event.type == "response.done":
                        assert event.response.status == "completed"
                        break
            return seen, transcript, audio

    seen, transcript, audio = run(main())
    assert "session.updated" in seen and "input_audio_buffer.speech_started" in seen
    assert transcript == "Sure. The sky is blue, mostly. Bye now!"
    assert len(audio) == pytest.approx(2 * 8 * 0.06 * 24000, abs=200)


def _jpeg(i: int) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((24, 32, 3), (i * 40) % 256, np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def test_video_frames_dense_while_speaking_sparse_while_answering(voice):
    q1, q2 = voice("What do you see?"), voice("And now?")
    model = ScriptedModel(reply=" ".join(["la"] * 40), step_delay=0.03)

    async def main():
        async with serving(model) as srv, RealtimeClient(srv.url) as c:
            await c.configure()
            a1 = np.concatenate([q1, silence(0.8)])
            frames = [(k / 4, _jpeg(k)) for k in range(int(len(q1) / SR * 4))]  # 4 FPS offered
            await c.stream_audio(a1, SR, realtime=False, frames=frames)
            await c.wait_for(lambda e: e["type"] == "response.output_audio.delta", 20)
            t = len(a1) / SR
            for k in range(12):  # 3 s of camera at 4 FPS while the assistant answers
                await c.append_image(_jpeg(100 + k), (t + k / 4) * 1000)
            await c.wait_response(20)
            n = len(c.events)
            await c.stream_audio(np.concatenate([q2, silence(0.8)]), SR, realtime=False)
            await c.wait_response(20, start=n)
        return [call for call in model.calls if call[0] == "encode"]

    encodes = run(main())
    first_turn = encodes[:next(i for i, e in enumerate(encodes) if not e[4])]
    full = [e for e in first_turn if e[2] == SR]
    assert full and all(e[3] == 2 for e in full)  # dense: 2 frames per 1 s packet (of 4 offered)
    sparse = [e for e in encodes if not e[4]]
    assert len(sparse) == 1 and sparse[0][2] == 0 and sparse[0][3] == 2  # 0.5 FPS over 3 s, no audio
    # the sparse chunk comes right before the second turn's first packet
    i = encodes.index(sparse[0])
    assert encodes[i + 1][4] and encodes[i + 1][2] > 0


def test_client_truncate_after_playback_and_idle_timeout(voice):
    q, q2 = voice("Say something."), voice("What now?")  # not a backchannel: it takes the turn
    model = ScriptedModel()

    async def main():
        async with serving(model, idle_timeout_s=1.5) as srv, RealtimeClient(srv.url) as c:
            await c.configure()
            await c.stream_audio(np.concatenate([q, silence(0.8)]), SR, realtime=False)
            r = await c.wait_response(20)
            # the user heard 130 ms (2 codec frames: "Sure. The") before speaking again
            await c.send({"type": "conversation.item.truncate", "item_id": r.item_id, "content_index": 0,
                          "audio_end_ms": 130})
            e = await c.wait_for(lambda e: e["type"] in ("conversation.item.truncated", "error"), 10)
            await c.send({"type": "conversation.item.truncate", "item_id": "item_nope", "content_index": 0,
                          "audio_end_ms": 10})
            err = await c.wait_for(lambda e: e["type"] == "error", 10)
            n = len(c.events)
            await c.stream_audio(np.concatenate([q2, silence(0.8)]), SR, realtime=False)
            await c.wait_response(20, start=n)
            idle = await c.wait_for(lambda e: e["type"] == "error" and e["error"]["code"] == "session_idle_timeout",
                                    10)
            await asyncio.wait_for(c.closed.wait(), 10)
            return e, err, idle

    e, err, idle = run(main())
    assert e["type"] == "conversation.item.truncated" and e["audio_end_ms"] == 130
    assert err["error"]["code"] == "item_not_found" and err["error"]["param"] == "item_id"
    ctx = model.context(0)
    end = ctx.index(("end",))
    assert [t[1] for t in ctx[:end] if t[0] == "tok"] == ["Sure. "]  # cut at the last punctuation heard
    assert idle


def test_beta_clients_get_beta_event_names():
    model = ScriptedModel()

    async def main():
        async with serving(model) as srv:
            async with connect(srv.url, additional_headers={"OpenAI-Beta": "realtime=v1"}) as ws:
                seen = [json.loads(await ws.recv())["type"]]
                for ev in ({"type": "session.update", "session": {"turn_detection": None, "input_audio_format": "pcm16"}},
                           {"type": "conversation.item.create", "item": {"type": "message", "role": "user",
                                                                        "content": [{"type": "input_text", "text": "hi"}]}},
                           {"type": "response.create"}):
                    await ws.send(json.dumps(ev))
                while seen[-1] != "response.done":
                    seen.append(json.loads(await asyncio.wait_for(ws.recv(), 10))["type"])
            return seen

    seen = run(main())
    assert "response.audio.delta" in seen and "response.audio_transcript.delta" in seen
    assert "response.output_audio.delta" not in seen and "conversation.item.created" in seen

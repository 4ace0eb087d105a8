"""The server on the real model: the `debug` OmniModel behind RealtimeOmni
(random weights, so replies are babble; every stage is the real code path).
Real websockets, real silero-vad, espeak-ng speech."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
import torch

from omni.realtime_api import UserChunk
from streaming.client import RealtimeClient
from streaming.engine import Engine
from streaming.engine_commands import Chunk, Respond, Rollback
import streaming_helpers as helpers
from streaming_helpers import debug_realtime

SR = 16000
MAX_STEPS = 24


@pytest.fixture(scope="module")
def omni():
    return debug_realtime(max_slots=3, capacity=1536, max_steps=MAX_STEPS)


def run(coro, timeout: float = 90.0):
    return helpers.run(coro, timeout)


def serving(model, **kw):
    return helpers.serving(model, max_steps=MAX_STEPS, **kw)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(SR * seconds), np.float32)


def test_full_turn_then_multi_turn_memory(omni, voice):
    q1, q2 = voice("What color is the sky?"), voice("And the grass?")

    async def conversation(first: bool):
        async with serving(omni) as srv, RealtimeClient(srv.url) as c:
            await c.configure()
            lengths = []
            replies = []
            qs = [q1, q2] if first else [q2]
            for q in qs:
                n = len(c.events)
                await c.stream_audio(np.concatenate([q, silence(0.9)]), SR, realtime=False)
                replies.append(await c.wait_response(60, start=n))
                lengths.append(omni.slot_length(0))
            return replies, lengths, c

    (r1, r2), lengths, c = run(conversation(True))
    assert r1.status in ("completed", "incomplete") and r2.status in ("completed", "incomplete")
    assert r1.transcript and len(r1.waveform()) > 0
    assert r1.server_metrics["steps"] <= MAX_STEPS and r1.server_metrics["audio_seconds"] > 0
    # audio length matches the codec frames the model produced (60 ms each), resampled to 24 kHz
    assert len(r1.waveform()) / 24000 == pytest.approx(r1.server_metrics["audio_seconds"], abs=0.25)
    assert lengths[1] > lengths[0] > 0  # the context keeps growing across turns
    # the second turn depends on the first: a fresh session asked only q2 answers differently
    (fresh,), _, _ = run(conversation(False))
    assert fresh.transcript != r2.transcript or not np.array_equal(fresh.waveform(), r2.waveform())


def test_rollback_leaves_kv_cache_identical_to_never_speculating(omni, voice):
    """Same packets into two slots; one speculates (decodes 5 steps) and rolls back.
    A third slot gets the same audio in whole 1 s packets: the same context."""
    q = voice("Hello there, how are you today?")
    eng = Engine(omni).start()
    events: list = []
    try:
        ha = eng.open(events.append).result(30)
        hb = eng.open(events.append).result(30)
        hc = eng.open(events.append).result(30)
        a, b, c = eng.slots[ha].slot, eng.slots[hb].slot, eng.slots[hc].slot  # model slots behind the handles
        pieces = [(0, SR), (SR, SR + 5000), (SR + 5000, len(q))]  # 1 s packet, partial, rest
        assert len(q) > 2 * SR
        for s in (ha, hb):
            for lo, hi in pieces[:2]:
                eng.submit(s, Chunk(UserChunk(q[lo:hi].copy(), [], lo / SR, True)))
        eng.submit(ha, Respond(1, True, 5))
        eng.barrier().result(60)
        deadline = time.time() + 60
        while not any(e.kind == "done" for e in events) and time.time() < deadline:
            time.sleep(0.02)
        assert any(e.kind == "done" for e in events), "the speculative decode did not run"
        keep = omni.slot_length(b)  # the context both share before a's reply
        assert omni.slot_length(a) > keep  # the reply is in a's cache
        eng.submit(ha, Rollback(1))
        for s in (ha, hb):
            lo, hi = pieces[2]
            eng.submit(s, Chunk(UserChunk(q[lo:hi].copy(), [], lo / SR, True)))
        eng.barrier().result(60)
        la, lb = omni.slot_length(a), omni.slot_length(b)
        kv = omni.cache.kv
        assert la == lb
        # what the rollback must not touch is bitwise the same; the rest was prefilled after it,
        # in batches whose make-up depends on thread timing (a batch's width can round the last bit)
        assert torch.equal(kv[:, a, :keep], kv[:, b, :keep])
        torch.testing.assert_close(kv[:, a, keep:la], kv[:, b, keep:lb], atol=1e-5, rtol=1e-5)
        assert omni.slot_token_ids(a) == omni.slot_token_ids(b)
        # packet boundaries do not change the context (the encoder's rounding aside);
        # c goes alone so that its prefill batches leave a's and b's shapes alone
        for lo in range(0, len(q), SR):
            eng.submit(hc, Chunk(UserChunk(q[lo:lo + SR].copy(), [], lo / SR, True)))
        eng.barrier().result(60)
        assert omni.slot_token_ids(c) == omni.slot_token_ids(b)
        torch.testing.assert_close(kv[:, c, :la], kv[:, b, :lb], atol=1e-4, rtol=1e-4)
    finally:
        eng.stop()  # closes the slots


def test_barge_in_and_two_sessions_isolated(omni, voice):
    q, stop = voice("Tell me a long story about the sea."), voice("Wait, stop.")

    async def main():
        async with serving(omni) as srv:
            async with RealtimeClient(srv.url) as a, RealtimeClient(srv.url) as b:
                await asyncio.gather(a.configure(), b.configure())
                await asyncio.gather(a.stream_audio(np.concatenate([q, silence(0.8)]), SR, realtime=False),
                                     b.stream_audio(np.concatenate([q, silence(0.8)]), SR, realtime=False))
                # a barges in once its first audio arrives; b listens to the end
                await a.wait_for(lambda e: e["type"] == "response.output_audio.delta", 60)
                await a.stream_audio(np.concatenate([stop, silence(0.8)]), SR, realtime=False)
                ra = await a.wait_response(60)
                rb = await b.wait_response(60)
                done_a = [e for e in a.events if e["type"] == "response.done"]
                while len(done_a) < 2:
                    await a.wait_for(lambda e: e["type"] == "response.done" and e not in done_a, 60)
                    done_a = [e for e in a.events if e["type"] == "response.done"]
            return ra, rb, done_a, srv.metrics.counter("omni_interruptions_total")

    ra, rb, done_a, interruptions = run(main())
    assert ra.status == "cancelled" and interruptions == 1
    assert done_a[1]["response"]["status"] in ("completed", "incomplete")  # the interrupting turn was answered
    assert rb.status in ("completed", "incomplete")
    # a and b heard the same question in the same batches: a's cut reply is a prefix of b's,
    # and a's barge-in did not disturb b, which went on to the end
    assert rb.transcript.startswith(ra.transcript)
    wa, wb = ra.waveform(), rb.waveform()
    assert 0 < len(wa) < len(wb)
    np.testing.assert_allclose(wa, wb[:len(wa)], atol=1e-4)


def test_serve_loads_a_checkpoint_directory(omni, tmp_path):
    """`omni serve --model DIR` path: a saved checkpoint comes back with the same weights."""
    from streaming.model_loader import load_realtime_model

    omni.model.save_pretrained(str(tmp_path / "ckpt"))
    rt, desc = load_realtime_model(str(tmp_path / "ckpt"), device="cpu", max_slots=1, capacity=256, max_steps=4)
    assert "checkpoint" in desc and rt.max_slots == 1
    a = dict(omni.model.llm.named_parameters())
    b = dict(rt.model.llm.named_parameters())
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in list(a)[:5])


def test_dtype_choice():
    from streaming.model_loader import pick_dtype

    # auto: bf16 on a GPU (the shipped weights' own precision), fp32 on CPU
    assert pick_dtype("auto", "cuda:1") == torch.bfloat16 and pick_dtype(None, "cuda") == torch.bfloat16
    assert pick_dtype("auto", "cpu") == torch.float32
    assert pick_dtype("fp32", "cuda") == torch.float32 and pick_dtype("fp16", "cpu") == torch.float16
    with pytest.raises(ValueError, match="dtype"):
        pick_dtype("int8", "cpu")


def test_decode_mode_choice(omni):
    from streaming.model_loader import load_realtime_model, pick_decode_mode

    assert pick_decode_mode("auto", "cuda:1") == "graph" and pick_decode_mode("auto", "cpu") == "eager"
    with pytest.raises(ValueError, match="decode mode"):
        pick_decode_mode("fast", "cpu")
    rt, desc = load_realtime_model(device="cpu", max_slots=1, capacity=64, max_steps=2, decode_mode="static")
    assert rt.model.decode_mode == "static" and "decode mode static" in desc
    assert "float32" in desc and next(rt.model.llm.parameters()).dtype == torch.float32  # auto on CPU
    with pytest.raises(ValueError, match="CUDA"):
        load_realtime_model(device="cpu", max_slots=1, capacity=64, decode_mode="graph")


def test_rollback_over_the_wire_on_the_real_model(omni, voice):
    a, b = voice("Hello there."), voice("How are you today?")
    audio = np.concatenate([silence(0.3), a, silence(0.4), b, silence(1.0)])

    async def main():
        async with serving(omni) as srv, RealtimeClient(srv.url) as c:
            await c.configure(omni={"debug_events": True})
            await c.stream_audio(audio, SR, realtime=True)
            r = await c.wait_response(60)
            return c, r, srv.metrics.counter("omni_rollbacks_total")

    c, r, rollbacks = run(main())
    assert [e["state"] for e in c.events if e["type"] == "omni.turn"] == \
        ["speculating", "rolled_back", "speculating", "confirmed"]
    assert rollbacks == 1 and len(c.replies) == 1 and r.status in ("completed", "incomplete")


def test_bad_input_and_a_vanishing_client_leave_others_unharmed(omni, voice):
    import json

    from websockets.asyncio.client import connect

    q = voice("Is it sunny?")

    async def main():
        async with serving(omni) as srv, RealtimeClient(srv.url) as good:
            await good.configure()
            talk = asyncio.create_task(good.stream_audio(np.concatenate([q, silence(0.9)]), SR, realtime=False))
            async with connect(srv.url) as ws:
                await ws.recv()  # session.created
                for m in ["{bad", json.dumps({"type": "input_audio_buffer.append", "audio": "AAA"}),
                          json.dumps({"type": "session.update", "session": {"audio": {"input": {
                              "format": {"type": "audio/pcm", "rate": 8000}}}}})]:
                    await ws.send(m)
                codes = [json.loads(await asyncio.wait_for(ws.recv(), 10))["error"]["code"] for _ in range(3)]
            leaver = RealtimeClient(srv.url)
            await leaver.connect()
            await leaver.configure()
            await leaver.stream_audio(np.concatenate([q, silence(0.9)]), SR, realtime=False)
            await leaver.wait_for(lambda e: e["type"] == "response.created", 60)
            await leaver.close()  # gone mid-answer
            await talk
            r = await good.wait_response(60)
            t0 = time.perf_counter()
            while len(omni._slots) != 1 and time.perf_counter() - t0 < 15:
                await asyncio.sleep(0.02)
            return codes, r, len(omni._slots)

    codes, r, open_slots = run(main())
    assert codes == ["invalid_json", "session_not_configured", "unsupported_audio_format"]
    assert r.status in ("completed", "incomplete") and len(r.waveform()) > 0
    assert open_slots == 1  # only the good session still holds a KV-cache slot

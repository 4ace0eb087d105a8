"""The client's microphone stays open after the question until the server ends the turn.

A server under semantic_vad may wait for more silence than a fixed tail holds (it judged
the question unfinished); a client that stopped sending audio would then wait forever.
The server here is a stand-in that counts the audio it gets and ends the turn only
after 2.2 s of it, well past the question and its 0.5 s tail.
"""

from __future__ import annotations

import asyncio
import base64
import json

import numpy as np
from websockets.asyncio.server import serve

from streaming.client import RealtimeClient

RATE = 16000


async def _turn_ends_after(ws, seconds: float, got: dict) -> None:
    await ws.send(json.dumps({"type": "session.created", "session": {
        "audio": {"input": {"format": {"rate": RATE}}, "output": {"format": {"rate": 24000}}}}}))
    async for raw in ws:
        e = json.loads(raw)
        if e["type"] != "input_audio_buffer.append":
            continue
        got["samples"] += len(base64.b64decode(e["audio"])) // 2
        if not got["committed"] and got["samples"] >= seconds * RATE:
            got["committed"] = True
            await ws.send(json.dumps({"type": "input_audio_buffer.committed", "item_id": "item_1"}))


def test_silence_goes_on_until_the_turn_is_committed_and_then_stops() -> None:
    async def main() -> tuple[bool, dict, float]:
        got = {"samples": 0, "committed": False}
        async with serve(lambda ws: _turn_ends_after(ws, 2.2, got), "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            async with RealtimeClient(f"ws://127.0.0.1:{port}") as c:
                c.in_rate = RATE
                question = np.full(int(1.0 * RATE), 0.1, np.float32)
                n = len(c.events)
                await c.stream_audio(np.concatenate([question, np.zeros(RATE // 2, np.float32)]), RATE, realtime=False)
                sent_before = got["samples"]
                ended = await c.keep_silent_until(lambda e: e["type"] == "input_audio_buffer.committed",
                                                  start=n, limit_s=10)
                await asyncio.sleep(0.3)  # nothing more once the turn ended
                return ended, got, sent_before

    ended, got, sent_before = asyncio.run(main())
    assert sent_before < 2.2 * RATE  # the question and its tail alone do not end the turn
    assert ended and got["committed"]
    assert 2.2 * RATE <= got["samples"] <= 2.5 * RATE  # silence went on until the commit, then stopped


def test_a_turn_that_never_ends_gives_up_at_the_limit() -> None:
    async def main() -> tuple[bool, dict]:
        got = {"samples": 0, "committed": False}
        async with serve(lambda ws: _turn_ends_after(ws, 1e9, got), "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            async with RealtimeClient(f"ws://127.0.0.1:{port}") as c:
                c.in_rate = RATE
                ended = await c.keep_silent_until(lambda e: e["type"] == "input_audio_buffer.committed", limit_s=0.5)
                await asyncio.sleep(0.2)
                return ended, got

    ended, got = asyncio.run(main())
    assert not ended and 0.3 * RATE <= got["samples"] <= 0.7 * RATE  # real time: ~0.5 s of silence

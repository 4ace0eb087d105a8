"""The client places the server's speech events in its own time: `audio_start_ms` counts
all the session's input audio (not each turn's), and `RealtimeClient.input_time` says
when the client sent the audio at such a point, gaps between appends included."""

from __future__ import annotations

import asyncio
import time

import numpy as np
from streaming_helpers import ScriptedModel, run, serving, silence

from streaming.client import RealtimeClient

SR = 16000


def test_input_time_is_when_each_piece_was_sent_less_what_followed_it_in_the_piece():
    async def main() -> tuple[RealtimeClient, list[tuple[float, float]]]:
        c = RealtimeClient("ws://unused")
        c.in_rate = SR

        async def sent(event: dict) -> None:
            pass

        c.send = sent
        times = []
        for gap in (0.0, 0.3, 0.0):  # 40 ms pieces; nothing is sent for 0.3 s before the second
            await asyncio.sleep(gap)
            before = time.perf_counter()
            await c.append_audio(silence(0.04))
            times.append((before, time.perf_counter()))
        await c.append_audio(np.zeros(0, np.float32))  # nothing sent: nothing counted
        return c, times

    c, times = run(main())
    for k, (before, after) in enumerate(times):
        at = c.input_time(40 * k + 10)  # 30 ms before the end of piece k
        assert before - 0.03 <= at <= after - 0.03
    assert c.input_time(120) is not None and c.input_time(121) is None  # never sent that far
    c.sent_audio.popleft()
    assert c.input_time(10) is None  # forgotten


def test_speech_events_point_at_when_the_client_sent_each_turns_speech(voice):
    q = voice("What color is the sky?")
    model = ScriptedModel(reply="Blue.")

    async def main() -> tuple[RealtimeClient, list[float]]:
        async with serving(model) as srv, RealtimeClient(srv.url) as c:
            await c.configure()
            spoken = []
            for lead in (0.5, 1.5):
                n = len(c.events)
                t0 = time.perf_counter()
                spoken.append(t0 + lead)  # paced in real time from t0: the speech goes out from then
                await c.stream_audio(np.concatenate([silence(lead), q, silence(1.2)]), SR, realtime=True, t0=t0)
                await c.wait_response(20, start=n)
                await asyncio.sleep(0.5)  # no audio for a while: the server's count of it stands still
            return c, spoken

    c, spoken = run(main())
    starts = [e for e in c.events if e["type"] == "input_audio_buffer.speech_started"]
    assert len(starts) == 2
    assert starts[1]["audio_start_ms"] > 1000 * (0.5 + len(q) / SR + 1.2)  # counted from the session's start
    for e, t in zip(starts, spoken):
        # the voice detector finds the speech within a few 32 ms windows of its start (and a busy
        # machine may send a piece late)
        assert -0.1 < c.input_time(e["audio_start_ms"]) - t < 0.5, (e, t)

"""Where a turn's time goes: one real spoken turn through the server (scripted
model, real websockets and silero-vad) leaves per-stage queue and compute
histograms on /metrics, and the first-audio critical path of its reply, whose
components are non-negative and add up to no more than the measured total."""

from __future__ import annotations

import asyncio
import re
import urllib.request

import numpy as np
import pytest
from live_server import LiveServer
from streaming_helpers import ScriptedModel

from streaming.client import RealtimeClient
from streaming.timing import COMPONENTS, STAGES, add_span, breakdown

SR = 16000


def _series(prom: str, suffix: str) -> dict[tuple[str, str], float]:
    """{(metric, label value): value} of the histogram lines ending in `suffix` (_count or _sum)."""
    out = {}
    for m in re.finditer(rf'^(\w+){suffix}\{{\w+="([\w]+)"\}} (\S+)$', prom, re.M):
        out[(m.group(1), m.group(2))] = float(m.group(3))
    return out


def test_a_turn_reports_stage_timings_and_its_first_audio_path(voice):
    q = voice("What color is the sky?")
    with LiveServer(ScriptedModel()) as live:
        async def main():
            async with RealtimeClient(live.url) as c:
                await c.configure()
                audio = np.concatenate([np.zeros(SR // 4, np.float32), q, np.zeros(SR, np.float32)])
                await c.stream_audio(audio, SR, realtime=True)
                return await c.wait_response(timeout=30)

        r = asyncio.run(asyncio.wait_for(main(), 60))
        # the first-audio path is recorded once the writer has sent the delta: before response.done
        url = f"http://127.0.0.1:{live.srv.port}/metrics"
        prom = urllib.request.urlopen(url, timeout=10).read().decode()
        metrics = live.srv.metrics
    assert r.status == "completed" and r.waveform().size > 0
    assert not live.errors.records, live.errors.text()

    counts = _series(prom, "_count")
    for stage in STAGES:
        for name in ("omni_stage_queue_seconds", "omni_stage_compute_seconds"):
            assert counts.get((name, stage), 0) > 0, f"{name}{{stage={stage}}} has no samples"
    assert "# TYPE omni_stage_queue_seconds histogram" in prom
    assert prom.count("# TYPE omni_stage_queue_seconds histogram") == 1  # one family, one series per stage
    assert f'omni_stage_compute_seconds_bucket{{stage="decode",le="+Inf"}}' in prom

    # one reply: each component histogram holds exactly its value
    sums = _series(prom, "_sum")
    parts = {name: sums[("omni_first_audio_path_seconds", name)] for name in (*COMPONENTS, "other")}
    total = metrics.samples("omni_first_audio_path_total_seconds")
    assert len(total) == 1 and total[0] > 0
    assert all(v >= 0 for v in parts.values()), parts
    assert sum(parts.values()) - parts["other"] <= total[0] + 1e-9
    assert sum(parts.values()) == pytest.approx(total[0], abs=1e-4)  # `other` is what no span covered
    # from the end of speech: the end-of-turn wait shows as the hold of the speculative reply or as input
    assert parts["hold"] + parts["input"] > 0.1, parts
    # the speech-end latency the reply reports covers the path up to handing the audio to the writer
    assert r.server_metrics["first_audio_after_speech_end_s"] <= total[0] + 1e-6


def test_breakdown_clips_to_the_window_and_never_overlaps():
    spans: list = []
    add_span(spans, "input", 0.0, 10.0)
    add_span(spans, "encode_queue", 9.0, 10.5)  # starts before the last span ended: moved to its end
    add_span(spans, "encode", 10.5, 11.0)
    add_span(spans, "decode", 10.0, 12.0)  # out of order: made sequential
    add_span(spans, "send", 13.0, 14.0)
    parts = breakdown(spans, origin=10.2, end=13.5)
    assert parts["input"] == 0.0
    assert parts["encode_queue"] == pytest.approx(0.3)
    assert parts["encode"] == pytest.approx(0.5)
    assert parts["decode"] == pytest.approx(1.0)
    assert parts["send"] == pytest.approx(0.5)
    assert parts["other"] == pytest.approx(1.0)  # 12.0 .. 13.0
    assert parts["total"] == pytest.approx(3.3)
    assert sum(v for k, v in parts.items() if k != "total") == pytest.approx(parts["total"])

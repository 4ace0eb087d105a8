"""Where a turn's time goes: per-stage timings and the first-audio critical path.

Every stage of the pipeline records, for each packet, step or event it handles,
how long it waited in its queue and how long the work took, as the histograms
`omni_stage_queue_seconds{stage=...}` and `omni_stage_compute_seconds{stage=...}`
(stages: input, encode, prefill, decode, audio, send). A batched call counts,
for every item it carried, the whole call: that is the latency the item saw.

For one reply, the path that produced its first audio byte is a chain of spans
(component, start, end) that each stage appends to as the work moves on: the
turn's last packet (encode, prefill), the reply's start, its decode steps up to
the first step with speech, the codec decoding of that frame, the hop to the
event loop, the hold while the end of turn was not yet confirmed, the send.
`breakdown` clips the chain to [origin, first audio byte sent] (origin: the end
of user speech, or the end-of-turn confirmation when the reply was not started
by turn detection); what no span covers is `other`. The spans are made
sequential (each starts no earlier than the one before ends), so the components
are non-negative and add up to the total exactly, `other` included.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

STAGES = ("input", "encode", "prefill", "decode", "audio", "send")
QUEUE = "omni_stage_queue_seconds"
COMPUTE = "omni_stage_compute_seconds"
PATH = "omni_first_audio_path_seconds"
PATH_TOTAL = "omni_first_audio_path_total_seconds"

# the first-audio path, in order
COMPONENTS = (
    "input",  # input conditioning, VAD and end-of-turn detection until the turn's last packet reached the engine
    "encode_queue", "encode",  # that packet waiting for, then in, the encoder stage
    "prefill_queue", "prefill",  # waiting for, then in, the batched prefill
    "respond_queue", "begin",  # the reply waiting to begin (after the packet), then begin_response
    "decode_queue", "decode",  # the decode steps up to the first one with speech: waiting, computing
    "audio_queue", "audio_decode",  # that frame waiting for, then in, the codec decoder (stage 4)
    "hop",  # from the audio stage's thread to the session's event loop
    "hold",  # speculative output held until the end of turn was confirmed
    "send_queue", "send",  # waiting for the connection's writer, then the websocket send
)


def observe_stage(metrics: Any, stage: str, queued: float, compute: float) -> None:
    metrics.observe(QUEUE, max(0.0, queued), {"stage": stage})
    metrics.observe(COMPUTE, max(0.0, compute), {"stage": stage})


def span_end(spans: list[tuple[str, float, float]]) -> float:
    return spans[-1][2] if spans else 0.0


def add_span(spans: list[tuple[str, float, float]], component: str, start: float, end: float | None = None) -> float:
    """Append a span that starts no earlier than the last one ends; returns its end."""
    end = time.perf_counter() if end is None else end
    start = max(start, span_end(spans))
    spans.append((component, start, max(start, end)))
    return spans[-1][2]


def breakdown(spans: list[tuple[str, float, float]], origin: float, end: float) -> dict[str, float]:
    """Seconds per component of [origin, end], plus `other` (not covered) and `total`."""
    out = dict.fromkeys(COMPONENTS, 0.0)
    covered = 0.0
    for name, a, b in spans:
        d = max(0.0, min(b, end) - max(a, origin))
        out[name] = out.get(name, 0.0) + d
        covered += d
    total = max(0.0, end - origin)
    out["other"] = max(0.0, total - covered)
    out["total"] = total
    return out


def observe_breakdown(metrics: Any, parts: dict[str, float]) -> None:
    for name, v in parts.items():
        if name == "total":
            metrics.observe(PATH_TOTAL, v)
        else:
            metrics.observe(PATH, v, {"component": name})


def path_stats(metrics: Any) -> dict[str, dict]:
    """p50 / p95 (ms) and count of each component of the replies' first-audio paths so far
    (`observe_breakdown`), `other` and their `total`: what a benchmark reports."""

    def stats(vals: list[float]) -> dict:
        if not vals:
            return {"p50": None, "p95": None, "n": 0}
        return {"p50": float(np.percentile(vals, 50)) * 1000, "p95": float(np.percentile(vals, 95)) * 1000,
                "n": len(vals)}

    out = {name: stats(metrics.samples(PATH, {"component": name})) for name in (*COMPONENTS, "other")}
    out["total"] = stats(metrics.samples(PATH_TOTAL))
    return out

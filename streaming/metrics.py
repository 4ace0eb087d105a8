"""Server metrics in the Prometheus text exposition format (served at /metrics).

Counters, gauges and histograms with fixed buckets, written from the engine
thread and the event loop (hence the lock). Latency names, all in seconds:

  omni_first_audio_after_confirm_seconds     first audio byte out - end-of-turn confirmation
  omni_first_audio_after_speech_end_seconds  first audio byte out - end of user speech
  omni_confirm_after_speech_end_seconds      end-of-turn confirmation - end of user speech
  omni_speculative_lead_seconds              confirmation - speculative decode start
  omni_response_rtf                          decode wall time / audio seconds produced
  omni_prefill_packet_seconds, omni_decode_step_seconds
  omni_stage_queue_seconds{stage}, omni_stage_compute_seconds{stage}
                                             per packet / step / event of each pipeline stage
  omni_first_audio_path_seconds{component}   a reply's first-audio critical path, by component
  omni_first_audio_path_total_seconds        ...and its whole length (streaming/timing.py)
Counters: omni_rollbacks_total, omni_interruptions_total, omni_responses_total,
omni_sessions_total, omni_sessions_rejected_total, omni_protocol_errors_total.
"""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0)
RATIO_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 4.0, 8.0)
COUNT_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
PROBABILITY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
# stage timings and path components are often well under a millisecond (a send, a queue hop)
FINE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025) + LATENCY_BUCKETS

HELP = {
    "omni_first_audio_after_confirm_seconds": "first audio byte out minus end-of-turn confirmation",
    "omni_first_audio_after_speech_end_seconds": "first audio byte out minus end of user speech",
    "omni_confirm_after_speech_end_seconds": "end-of-turn confirmation minus end of user speech",
    "omni_speculative_lead_seconds": "end-of-turn confirmation minus speculative decode start",
    "omni_response_rtf": "decode wall time per second of produced audio",
    "omni_prefill_packet_seconds": "encode + prefill time per 1 s packet",
    "omni_decode_step_seconds": "one batched decode step (LLM + codec decoder)",
    "omni_rollbacks_total": "speculative responses rolled back because the user resumed",
    "omni_interruptions_total": "responses stopped by user speech (barge-in)",
    "omni_turn_end_probability": "semantic_vad: the model's P(the user turn is complete) at each speculation",
    "omni_semantic_turn_ends_total": "user turns ended by the model's judgment before the longest silence",
    "omni_backchannels_total": "speech over a reply let through as a backchannel (the reply played on)",
    "omni_backchannels_overruled_total": "backchannels that went on too long and became interruptions",
    "omni_cancellations_total": "responses stopped by response.cancel",
    "omni_responses_total": "responses delivered",
    "omni_sessions_total": "sessions admitted",
    "omni_sessions_rejected_total": "connections refused because the server was full",
    "omni_sessions_active": "sessions currently open",
    "omni_protocol_errors_total": "error events sent for bad client input",
    "omni_input_batch_size": "audio appends conditioned together in one round of the input stage",
    "omni_input_round_seconds": "one round of the input stage (resampling + batched silero-vad)",
    "omni_input_restarts_total": "input processes started again after one stopped",
    "omni_input_states": "sessions whose resampler and VAD state the input process holds",
    "omni_stage_queue_seconds": "time a packet, step or event waited for its pipeline stage",
    "omni_stage_compute_seconds": "time the stage's (batched) call took for a packet, step or event",
    "omni_first_audio_path_seconds": "one component of the path from end of speech (or confirmation) "
                                     "to the first audio byte sent",
    "omni_first_audio_path_total_seconds": "end of speech (or confirmation) to the first audio byte sent",
}


def _buckets(name: str) -> tuple:
    if name.endswith("_probability"):
        return PROBABILITY_BUCKETS
    if name.endswith("_rtf"):
        return RATIO_BUCKETS
    if name.endswith("_size"):
        return COUNT_BUCKETS
    if name.startswith(("omni_stage_", "omni_first_audio_path_")):
        return FINE_BUCKETS
    return LATENCY_BUCKETS


class Metrics:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counters: dict[str, float] = defaultdict(float)
        self.gauges: dict[str, float] = defaultdict(float)
        # (name, sorted label pairs) -> [bucket counts, sum, count, raw samples]
        self.hist: dict[tuple[str, tuple], list] = {}

    def inc(self, name: str, value: float = 1.0) -> None:
        with self.lock:
            self.counters[name] += value

    def set(self, name: str, value: float) -> None:
        with self.lock:
            self.gauges[name] = value

    def observe(self, name: str, value: float, labels: dict[str, str] | None = None) -> None:
        key = (name, tuple(sorted((labels or {}).items())))
        with self.lock:
            h = self.hist.get(key)
            if h is None:
                h = self.hist[key] = [[0] * (len(_buckets(name)) + 1), 0.0, 0, []]
            h[0][bisect.bisect_left(_buckets(name), value)] += 1
            h[1] += value
            h[2] += 1
            if len(h[3]) < 100000:  # raw samples for percentiles in benchmarks
                h[3].append(value)

    def samples(self, name: str, labels: dict[str, str] | None = None) -> list[float]:
        key = (name, tuple(sorted((labels or {}).items())))
        with self.lock:
            return list(self.hist.get(key, [None, 0, 0, []])[3])

    def counter(self, name: str) -> float:
        with self.lock:
            return self.counters.get(name, 0.0)

    def render(self) -> str:
        lines: list[str] = []
        with self.lock:
            for name in sorted(self.counters):
                lines += [f"# HELP {name} {HELP.get(name, name)}", f"# TYPE {name} counter",
                          f"{name} {self.counters[name]:g}"]
            for name in sorted(self.gauges):
                lines += [f"# HELP {name} {HELP.get(name, name)}", f"# TYPE {name} gauge",
                          f"{name} {self.gauges[name]:g}"]
            family = None
            for name, labels in sorted(self.hist):
                counts, total, n, _ = self.hist[(name, labels)]
                if name != family:  # one HELP and TYPE per metric, then each label set's series
                    family = name
                    lines += [f"# HELP {name} {HELP.get(name, name)}", f"# TYPE {name} histogram"]
                tags = "".join(f'{k}="{v}",' for k, v in labels)
                acc = 0
                for b, c in zip(_buckets(name), counts):
                    acc += c
                    lines.append(f'{name}_bucket{{{tags}le="{b:g}"}} {acc}')
                lines.append(f'{name}_bucket{{{tags}le="+Inf"}} {n}')
                sel = f"{{{tags[:-1]}}}" if tags else ""
                lines += [f"{name}_sum{sel} {total:.6g}", f"{name}_count{sel} {n}"]
        return "\n".join(lines) + "\n"

"""Scoring of bench/turn_taking.py on hand-made event timelines, and a smoke run of the bench."""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("turn_taking_bench", ROOT / "bench" / "turn_taking.py")
tt = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = tt  # dataclasses look their module up
_spec.loader.exec_module(tt)


def audio(t: float, rid: str = "r1", dur: float = 0.24) -> dict:
    return {"type": "audio", "t": t, "rid": rid, "dur": dur}


def created(t: float, rid: str = "r1") -> dict:
    return {"type": "response.created", "t": t, "rid": rid}


def done(t: float, rid: str = "r1", status: str = "completed") -> dict:
    return {"type": "response.done", "t": t, "rid": rid, "status": status}


def started(t: float) -> dict:
    return {"type": "input_audio_buffer.speech_started", "t": t}


def reply(t0: float, n: int = 10, rid: str = "r1", gap: float = 0.05, dur: float = 0.24) -> list[dict]:
    """A reply generated faster than real time: n deltas of `dur` s arriving every `gap` s."""
    return [created(t0 - 0.01, rid)] + [audio(t0 + i * gap, rid, dur) for i in range(n)] + \
        [done(t0 + (n - 1) * gap + 0.01, rid)]


def timeline(*parts) -> list[dict]:
    return sorted([e for p in parts for e in (p if isinstance(p, list) else [p])], key=lambda e: e["t"])


# ---- pause handling --------------------------------------------------------

def test_pause_takeover_inside_the_pause():
    ev = timeline(started(0.3), reply(1.65))
    s = tt.score_pause(ev, pause_start=1.0, pause_end=2.0)
    assert s["takeover"] and s["takeover_created"]
    assert s["takeover_after_pause_start_ms"] == pytest.approx(650)


def test_pause_no_takeover_when_the_reply_comes_after_the_second_part_starts():
    ev = timeline(started(0.3), reply(2.4))
    s = tt.score_pause(ev, pause_start=1.0, pause_end=1.5)
    assert not s["takeover"] and not s["takeover_created"]
    assert s["takeover_after_pause_start_ms"] is None


def test_pause_created_in_the_pause_but_audio_after_is_no_audio_takeover():
    ev = timeline(created(1.4), audio(1.6), done(1.7))
    s = tt.score_pause(ev, pause_start=1.0, pause_end=1.5)
    assert not s["takeover"] and s["takeover_created"]


# ---- smooth turn-taking ----------------------------------------------------

def test_smooth_latency_from_end_of_speech():
    ev = timeline(started(0.35), reply(2.65))
    s = tt.score_smooth(ev, speech_start=0.3, speech_end=2.0, window=3.0)
    assert s["takeover"] and not s["early"]
    assert s["latency_ms"] == pytest.approx(650)
    assert s["created_latency_ms"] == pytest.approx(640)


def test_smooth_too_late_or_early_is_no_takeover():
    late = tt.score_smooth(timeline(reply(5.5)), 0.3, 2.0, window=3.0)
    assert not late["takeover"] and late["latency_ms"] == pytest.approx(3500)
    early = tt.score_smooth(timeline(reply(1.2)), 0.3, 2.0, window=3.0)
    assert not early["takeover"] and early["early"]
    none = tt.score_smooth(timeline(started(0.35)), 0.3, 2.0)
    assert not none["takeover"] and none["latency_ms"] is None


# ---- playback model --------------------------------------------------------

def test_playback_end_real_time_and_underrun():
    assert tt.playback_end(reply(3.0, n=10), "r1") == pytest.approx(3.0 + 2.4)
    # the third delta arrives after the first two have played: playback waits for it
    ev = [audio(1.0), audio(1.1), audio(2.0)]
    assert tt.playback_end(ev, "r1") == pytest.approx(2.24)
    assert tt.playback_end(ev, "other") is None


# ---- user interruption -----------------------------------------------------

def test_interruption_stop_latency_and_new_reply():
    ev = timeline(reply(3.0), started(4.12), reply(5.8, rid="r2"))
    s = tt.score_interruption(ev, onset=4.0, speech_end=5.1, window=2.0, respond_window=3.0)
    assert s["valid"] and s["takeover"] and s["rid"] == "r1"
    assert s["stop_latency_ms"] == pytest.approx(120)
    assert s["playback_left_ms"] == pytest.approx(1400)
    assert not s["still_generating"] and s["cancelled_latency_ms"] is None
    assert s["responded"] and s["response_latency_ms"] == pytest.approx(700)


def test_interruption_cancelled_while_generating():
    ev = timeline(created(2.99), [audio(3.0 + 0.2 * i) for i in range(6)], started(4.11),
                  done(4.13, status="cancelled"))
    s = tt.score_interruption(ev, onset=4.0, speech_end=5.0)
    assert s["takeover"] and s["still_generating"]
    assert s["stop_latency_ms"] == pytest.approx(110)
    assert s["cancelled_latency_ms"] == pytest.approx(130)
    assert not s["responded"]


def test_interruption_not_stopped():
    # no stop signal at all
    assert not tt.score_interruption(timeline(reply(3.0)), onset=4.0, speech_end=5.0)["takeover"]
    # speech_started, but the reply keeps streaming audio afterwards
    ev = timeline(created(2.99), [audio(3.0 + 0.2 * i) for i in range(10)], started(4.1), done(5.0))
    s = tt.score_interruption(ev, onset=4.0, speech_end=5.0)
    assert s["valid"] and not s["takeover"] and s["deltas_after_stop"] > 0
    # the stop comes too late (outside the window)
    ev = timeline(reply(3.0, n=30), started(6.5))
    s = tt.score_interruption(ev, onset=4.0, speech_end=5.0, window=2.0)
    assert s["valid"] and not s["takeover"] and s["stop_latency_ms"] == pytest.approx(2500)


def test_interruption_after_playback_ended_is_invalid():
    s = tt.score_interruption(timeline(reply(3.0), started(6.1)), onset=6.0, speech_end=7.0)
    assert not s["valid"] and not s["takeover"]
    s = tt.score_interruption(timeline(started(6.1)), onset=6.0, speech_end=7.0)
    assert not s["valid"]


# ---- backchannel -----------------------------------------------------------

def test_backchannel_wrong_stop_and_turn_taken():
    ev = timeline(reply(3.0), started(4.09), reply(5.2, rid="r2"))
    s = tt.score_backchannel(ev, onset=4.0)
    assert s["valid"] and s["wrong_stop"] and s["took_turn"]
    assert s["stop_latency_ms"] == pytest.approx(90)


def test_backchannel_ignored():
    s = tt.score_backchannel(timeline(reply(3.0)), onset=4.0)
    assert s["valid"] and not s["wrong_stop"] and not s["took_turn"]
    # a stop signal after the reply finished playing is not a stop of it
    s = tt.score_backchannel(timeline(reply(3.0), started(5.6)), onset=4.0)
    assert s["valid"] and not s["wrong_stop"]


# ---- where the user speaks over a reply ---------------------------------------

class _Events:
    """What `reply_audio_s` reads of a RealtimeClient: its events and `wait_for`."""

    def __init__(self, events: list[dict]) -> None:
        self.events = events

    async def wait_for(self, pred, timeout: float) -> dict:
        hit = next((e for e in self.events if pred(e)), None)
        if hit is None:
            await asyncio.sleep(timeout)
            raise asyncio.TimeoutError
        return hit


def _delta(t: float, seconds: float, rid: str = "r1") -> dict:
    pcm = b"\0\0" * int(round(seconds * tt.OUT_RATE))
    return {"type": "response.output_audio.delta", "_t": t, "response_id": rid, "delta": base64.b64encode(pcm).decode()}


def test_reply_length_places_the_onset_inside_a_short_reply():
    """A trained model's replies are ~1 s: the onset is a fraction of the reply's own audio,
    all of it once the reply is done, else what came by the wait's end."""
    now = time.perf_counter()
    first = _delta(now, 0.4)
    done_ = {"type": "response.done", "_t": now + 0.01, "response": {"id": "r1", "status": "completed"}}
    c = _Events([first, _delta(now + 0.005, 0.5), _delta(now, 9.0, rid="r0"), done_])
    assert asyncio.run(tt.reply_audio_s(c, first, wait_s=0.5)) == pytest.approx(0.9)
    c = _Events([first, _delta(now + 0.005, 0.5)])  # still generating: what came
    assert asyncio.run(tt.reply_audio_s(c, first, wait_s=0.05)) == pytest.approx(0.9)


def test_trial_onsets_are_fractions_of_the_playback():
    import argparse

    args = argparse.Namespace(seed=0, pause_trials=0, smooth_trials=0, interruption_trials=20, backchannel_trials=20)
    trials = tt.plan_trials(args)
    for t in trials:
        lo, hi = tt.INTERRUPT_AT if t.category == "interruption" else tt.BACKCHANNEL_AT
        assert lo <= t.at <= hi < 1


# ---- aggregation -----------------------------------------------------------

def test_summarize_buckets_and_rates():
    trials = [
        {"category": "pause", "pause_ms": 450, "score": {"takeover": False, "takeover_created": False}},
        {"category": "pause", "pause_ms": 1000, "score": {"takeover": True, "takeover_created": True}},
        {"category": "pause", "pause_ms": 1500, "score": {"takeover": True, "takeover_created": True}},
        {"category": "smooth", "score": tt.score_smooth(timeline(reply(2.6)), 0.3, 2.0)},
        {"category": "smooth", "score": tt.score_smooth(timeline(reply(2.8)), 0.3, 2.0)},
        {"category": "interruption", "score": tt.score_interruption(timeline(reply(3.0), started(4.1)), 4.0, 5.0)},
        {"category": "interruption", "score": tt.score_interruption(timeline(reply(3.0)), 6.0, 7.0)},  # invalid
        {"category": "backchannel", "score": tt.score_backchannel(timeline(reply(3.0), started(4.1)), 4.0)},
        {"category": "backchannel", "score": tt.score_backchannel(timeline(reply(3.0)), 4.0)},
        {"category": "smooth", "index": 9, "error": "TimeoutError()"},
    ]
    s = tt.summarize(trials)
    assert s["pause"]["300-600"]["rate"] == 0 and s["pause"]["300-600"]["n"] == 1
    assert s["pause"]["900-1200"]["rate"] == 1 and s["pause"]["1200-1500"]["n"] == 1
    assert s["pause"]["600-900"]["n"] == 0 and s["pause"]["600-900"]["rate"] is None
    assert s["smooth"]["takeover"]["rate"] == 1
    assert s["smooth"]["latency_ms"]["p50"] == pytest.approx(700)
    assert s["interruption"]["takeover"] == {"rate": 1.0, "k": 1, "n": 1} and s["interruption"]["invalid"] == 1
    assert s["interruption"]["stop_latency_ms"]["p50"] == pytest.approx(100)
    assert s["backchannel"]["wrong_stop"]["rate"] == 0.5
    assert s["failed"] == 1
    assert len(tt.table_rows([{"mode": "server_vad", "summary": s}])) == 12


def test_compact_events_from_client_events():
    raw = [{"type": "response.created", "_t": 1.0, "response": {"id": "r1"}},
           {"type": "response.output_audio.delta", "_t": 1.1, "response_id": "r1",
            "delta": base64.b64encode(b"\0\0" * 2400).decode()},
           {"type": "input_audio_buffer.speech_started", "_t": 1.2},
           {"type": "response.done", "_t": 1.3, "response": {"id": "r1", "status": "cancelled"}},
           {"type": "response.output_audio_transcript.delta", "_t": 1.1}]
    ev = tt.compact_events(raw)
    assert [e["type"] for e in ev] == ["response.created", "audio", "input_audio_buffer.speech_started",
                                       "response.done"]
    assert ev[1]["dur"] == pytest.approx(0.1) and ev[3]["status"] == "cancelled"


# ---- smoke run ---------------------------------------------------------------

@pytest.mark.slow
def test_bench_smoke_run(tmp_path: Path):
    """One trial per category against the random debug model on the CPU, in real time."""
    cmd = [sys.executable, str(ROOT / "bench" / "turn_taking.py"), "--flavor", "debug", "--device", "cpu",
           "--modes", "server_vad", "--pause-trials", "1", "--smooth-trials", "1", "--interruption-trials", "1",
           "--backchannel-trials", "1", "--max-steps", "60", "--out-dir", str(tmp_path), "--tag", "smoke"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    data = json.loads((tmp_path / "turn_taking_smoke.json").read_text())
    assert (tmp_path / "turn_taking_smoke.png").stat().st_size > 0
    m = data["modes"][0]
    assert m["mode"] == "server_vad" and m["summary"]["failed"] == 0
    assert len(m["trials"]) == 4 and all("score" in t for t in m["trials"])
    # a complete question is answered, after the 600 ms end-of-turn silence
    assert m["summary"]["smooth"]["takeover"]["rate"] == 1
    assert m["summary"]["smooth"]["latency_ms"]["p50"] > 500
    assert "takeover in pause" in r.stdout
    # the server's own first-audio path of every reply, each component counted for each reply
    path = m["first_audio_path_ms"]
    assert path["total"]["n"] >= 1 and path["total"]["n"] == path["decode"]["n"]
    assert path["total"]["p50"] > 500 and "first-audio path p50 ms" in r.stdout


def test_mode_specs_parse_to_turn_detection():
    mode_turn_detection = tt.mode_turn_detection
    assert mode_turn_detection("server_vad") == {"type": "server_vad"}
    assert mode_turn_detection("semantic_vad:low+every-sound") == {
        "type": "semantic_vad", "eagerness": "low", "ignore_backchannels": False}
    assert mode_turn_detection("semantic_vad+spec64") == {"type": "semantic_vad", "speculative_silence_ms": 64}
    # +table changes what the server compares with, not the session's settings
    assert mode_turn_detection("semantic_vad+table") == {"type": "semantic_vad"}
    assert tt.mode_uses_table("semantic_vad:high+table") and not tt.mode_uses_table("semantic_vad:high")
    for bad in ("vad", "server_vad+loud", "semantic_vad+specx"):
        with pytest.raises(SystemExit):
            mode_turn_detection(bad)

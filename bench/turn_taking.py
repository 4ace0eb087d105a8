"""Turn-taking of the realtime server in the Full-Duplex-Bench v1 terms.

Scripted users (espeak-ng, held-out voices and questions of the default world,
optional white background noise) talk to an in-process `OmniServer` over real
websockets in real time: a microphone task sends 40 ms `input_audio_buffer.append`
chunks paced by the wall clock, silence (or noise) unless the trial's script has
queued speech. Every time below is on one clock (perf_counter): a user sample s
of a trial is "spoken" at t0 + s/16000 (t0: the stream's start; its chunk leaves
at most 40 ms later, as from a microphone), server events at their receive time.

Four trial categories (FDB v1: pause handling, smooth turn-taking, user
interruption, backchannel):

  pause         a question split at a word boundary with 300-1500 ms of silence
                (or noise) inside it. Takeover = the first `response.output_audio.delta`
                arrives inside the pause, i.e. at or after the end of the first part and
                before the second part begins (lower is better). Reported per pause bucket
                300-600 / 600-900 / 900-1200 / 1200-1500 ms; the same rate with
                `response.created` as the signal is in the JSON.
  smooth        a complete question then silence. Takeover = first audio delta of a reply
                within --window s after the end of user speech (the last speech sample);
                latency = that first delta's arrival - end of speech (p50/p95). A reply
                whose audio starts before the end of speech counts as "early", not a takeover.
  interruption  a question; once the reply plays, the user asks a new question 20-70 % of the
                way through the reply's playback (its length is known once the reply is
                generated, or from what arrived in its first --onset-wait s: a trained
                model's replies are as short as its answers). The reply is "audible" from
                its first delta until its simulated real-time playback ends (deltas queue
                back to back). The server's stop signal is the first `input_audio_buffer.speech_started` or
                `response.done` with status cancelled of that reply, received after the
                user's onset; a client following the protocol stops playing then
                (the server cuts the reply's context at the same moment, docs/protocol.md
                "Barge-in"). Takeover = a stop signal within --window s of the onset,
                while the reply is still audible, with no delta of that reply after it.
                Stop latency = stop signal - onset of the interrupting speech. Also in the
                JSON: latency to `response.done` cancelled (only when the reply was still
                generating; replies generated faster than real time are often complete
                before the user speaks, and then cut by the client and the server's
                playback estimate instead), and whether / how fast a new reply answers the
                interruption (first audio of a new reply after its end of speech).
  backchannel   "uh-huh" / "yeah" / "okay" / "mm-hmm" 20-60 % of the way through the reply's
                playback.
                Wrong stop = the same stop signal arrives while the reply is audible (lower
                is better). Also: the rate at which a new reply starts after it (the model
                took the turn).

Each --modes entry is run with the same trials: `server_vad` (the default, VAD
only: silero-vad, 600 ms end of turn, speculative decoding from 200 ms) and
`semantic_vad` (the model judges whether the turn is complete, streaming/semantic_turn.py;
a model without an end-of-turn head gets server VAD with the eagerness's silence
instead, and the echo, recorded in the JSON, says so). VAD-only turn-taking does not
depend on the model's words, so the random `debug` model measures it; semantic_vad
needs the trained model and its head:

    python bench/turn_taking.py --flavor debug --device cpu \
        --modes server_vad+every-sound,server_vad                          # ~6 min on a 2-core CPU
    python bench/turn_taking.py --model omni/pretrained/default --tag default_cpu \
        --modes server_vad,semantic_vad                                    # the default model and its head
    python bench/turn_taking.py --modes server_vad --pause-trials 4 --smooth-trials 1 \\
        --interruption-trials 1 --backchannel-trials 1                    # smoke run
    python bench/turn_taking.py --noise-snr 20                             # white noise at 20 dB SNR

Writes bench/results/turn_taking_<tag>.json and .png and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SR = 16000
CHUNK = SR * 40 // 1000  # 40 ms appends
OUT_RATE = 24000
BUCKETS = ((300, 600), (600, 900), (900, 1200), (1200, 1500))
BACKCHANNELS = ("uh-huh", "yeah", "okay", "mm-hmm")
# espeak-ng reads these spellings as the sounds (it spells out "mm-hmm" otherwise)
BACKCHANNEL_SPOKEN = {"uh-huh": "uh huh", "yeah": "yeah", "okay": "okay", "mm-hmm": "mmm hmm"}
AUDIO_DELTA = ("response.output_audio.delta", "response.audio.delta")
LEAD_S = 0.3  # silence before the first words of a trial
INTERRUPT_AT = (0.2, 0.7)  # where in the reply's playback the user interrupts (fraction)
BACKCHANNEL_AT = (0.2, 0.6)  # ... says uh-huh
MIN_ONSET_S = 0.1  # the user never speaks sooner than this after the reply's first audio


# ---------------------------------------------------------------------------
# scoring: pure functions of a compact event timeline
#   events: [{"type", "t", "rid"?, "status"?, "dur"?}] sorted by t (seconds, one clock);
#   audio deltas carry "dur" (seconds of audio), response.* events "rid".
# ---------------------------------------------------------------------------

def compact_events(raw: list[dict]) -> list[dict]:
    """RealtimeClient.events -> the compact timeline the scoring reads."""
    out = []
    for e in raw:
        kind, t = e["type"], e["_t"]
        if kind in AUDIO_DELTA:
            n = len(base64.b64decode(e["delta"])) // 2
            out.append({"type": "audio", "t": t, "rid": e["response_id"], "dur": n / OUT_RATE})
        elif kind == "response.created":
            out.append({"type": kind, "t": t, "rid": e["response"]["id"]})
        elif kind == "response.done":
            out.append({"type": kind, "t": t, "rid": e["response"]["id"], "status": e["response"]["status"]})
        elif kind.startswith("input_audio_buffer.") or kind in ("conversation.item.truncated", "error"):
            out.append({"type": kind, "t": t})
    return out


def first_audio(events: list[dict], after: float = -np.inf, before: float = np.inf) -> dict | None:
    """The first audio delta with after <= t < before."""
    return next((e for e in events if e["type"] == "audio" and after <= e["t"] < before), None)


def first_audio_of(events: list[dict], rid: str) -> float | None:
    e = next((e for e in events if e["type"] == "audio" and e["rid"] == rid), None)
    return None if e is None else e["t"]


def playback_end(events: list[dict], rid: str) -> float | None:
    """When real-time playback of reply `rid` ends if nothing stops it: its deltas play
    back to back from the first one's arrival (a late delta starts when it arrives)."""
    end = None
    for e in events:
        if e["type"] == "audio" and e["rid"] == rid:
            end = max(end if end is not None else e["t"], e["t"]) + e["dur"]
    return end


def playing_reply(events: list[dict], t: float) -> str | None:
    """The last reply whose first audio arrived before t."""
    rid = None
    for e in events:
        if e["t"] >= t:
            break
        if e["type"] == "audio" and (rid is None or e["rid"] != rid):
            rid = e["rid"]
    return rid


def stop_signal(events: list[dict], rid: str, onset: float) -> float | None:
    """The first `input_audio_buffer.speech_started`, or `response.done` cancelled of `rid`,
    received at or after `onset`."""
    for e in events:
        if e["t"] < onset:
            continue
        if e["type"] == "input_audio_buffer.speech_started":
            return e["t"]
        if e["type"] == "response.done" and e["rid"] == rid and e["status"] == "cancelled":
            return e["t"]
    return None


def score_pause(events: list[dict], pause_start: float, pause_end: float) -> dict:
    """Takeover inside a pause: the first audio delta (or response.created) in [pause_start, pause_end)."""
    a = first_audio(events, pause_start, pause_end)
    c = next((e for e in events if e["type"] == "response.created" and pause_start <= e["t"] < pause_end), None)
    return {"takeover": a is not None, "takeover_created": c is not None,
            "takeover_after_pause_start_ms": None if a is None else (a["t"] - pause_start) * 1000}


def score_smooth(events: list[dict], speech_start: float, speech_end: float, window: float = 3.0) -> dict:
    """Takeover after a complete question: first audio within `window` s of the end of speech."""
    a = first_audio(events, speech_start)
    if a is None:
        return {"takeover": False, "early": False, "latency_ms": None, "created_latency_ms": None}
    latency = a["t"] - speech_end
    c = next((e for e in events if e["type"] == "response.created" and e["t"] >= speech_start), None)
    return {"takeover": 0 <= latency <= window, "early": latency < 0, "latency_ms": latency * 1000,
            "created_latency_ms": None if c is None else (c["t"] - speech_end) * 1000}


def audible_stop(events: list[dict], onset: float, window: float) -> dict:
    """Did the reply that was playing at `onset` stop because of the user's speech at `onset`?"""
    rid = playing_reply(events, onset)
    if rid is None:
        return {"valid": False, "why": "no reply was playing"}
    end = playback_end(events, rid)
    if end is None or end <= onset:
        return {"valid": False, "why": "the reply had finished playing", "rid": rid}
    stop = stop_signal(events, rid, onset)
    after = [e for e in events if e["type"] == "audio" and e["rid"] == rid and stop is not None and e["t"] > stop]
    done = next((e for e in events if e["type"] == "response.done" and e["rid"] == rid), None)
    stopped = stop is not None and stop - onset <= window and stop < end and not after
    last = max((e["t"] for e in events if e["type"] == "audio" and e["rid"] == rid), default=None)
    return {
        "valid": True, "rid": rid, "stopped": stopped,
        "stop_latency_ms": None if stop is None else (stop - onset) * 1000,
        "deltas_after_stop": len(after),
        "playback_left_ms": (end - onset) * 1000,
        "still_generating": done is None or done["t"] >= onset,
        "cancelled_latency_ms": (done["t"] - onset) * 1000 if done and done["status"] == "cancelled"
        and done["t"] >= onset else None,
        "last_delta_after_onset_ms": None if last is None else (last - onset) * 1000,
    }


def score_interruption(events: list[dict], onset: float, speech_end: float, window: float = 2.0,
                       respond_window: float = 3.0) -> dict:
    """User interruption: the playing reply stops (takeover) and a new reply answers."""
    s = audible_stop(events, onset, window)
    if not s["valid"]:
        return {**s, "takeover": False, "responded": False, "response_latency_ms": None}
    a = next((e for e in events if e["type"] == "audio" and e["t"] >= onset and e["rid"] != s["rid"]), None)
    latency = None if a is None else a["t"] - speech_end
    return {**s, "takeover": s["stopped"], "responded": latency is not None and 0 <= latency <= respond_window,
            "response_latency_ms": None if latency is None else latency * 1000}


def score_backchannel(events: list[dict], onset: float, window: float = 2.0) -> dict:
    """Backchannel: the playing reply must not stop; a new reply after it is a taken turn."""
    s = audible_stop(events, onset, window)
    if not s["valid"]:
        return {**s, "wrong_stop": False, "took_turn": False}
    new = next((e for e in events if e["type"] == "response.created" and e["t"] >= onset), None)
    return {**s, "wrong_stop": s["stopped"], "took_turn": new is not None}


def rate(flags: list[bool]) -> dict:
    n = len(flags)
    return {"rate": (sum(flags) / n) if n else None, "k": int(sum(flags)), "n": n}


def pcts(vals: list[float | None]) -> dict:
    v = [x for x in vals if x is not None]
    if not v:
        return {"p50": None, "p95": None, "n": 0}
    return {"p50": float(np.percentile(v, 50)), "p95": float(np.percentile(v, 95)), "n": len(v)}


def summarize(trials: list[dict]) -> dict:
    """Per-category rates and latencies of one mode's scored trials."""
    by = {c: [t for t in trials if t["category"] == c and "score" in t]
          for c in ("pause", "smooth", "interruption", "backchannel")}
    out: dict = {"pause": {}}
    for lo, hi in BUCKETS:
        ts = [t for t in by["pause"] if lo <= t["pause_ms"] < hi or (hi == BUCKETS[-1][1] and t["pause_ms"] == hi)]
        out["pause"][f"{lo}-{hi}"] = {**rate([t["score"]["takeover"] for t in ts]),
                                      "created": rate([t["score"]["takeover_created"] for t in ts])}
    out["pause"]["all"] = rate([t["score"]["takeover"] for t in by["pause"]])
    sm = [t["score"] for t in by["smooth"]]
    out["smooth"] = {"takeover": rate([s["takeover"] for s in sm]), "early": rate([s["early"] for s in sm]),
                     "latency_ms": pcts([s["latency_ms"] for s in sm if s["takeover"]]),
                     "created_latency_ms": pcts([s["created_latency_ms"] for s in sm if s["takeover"]])}
    it = [t["score"] for t in by["interruption"]]
    iv = [s for s in it if s["valid"]]
    out["interruption"] = {"takeover": rate([s["takeover"] for s in iv]), "invalid": len(it) - len(iv),
                           "stop_latency_ms": pcts([s["stop_latency_ms"] for s in iv if s["takeover"]]),
                           "cancelled_latency_ms": pcts([s["cancelled_latency_ms"] for s in iv]),
                           "still_generating": rate([s["still_generating"] for s in iv]),
                           "responded": rate([s["responded"] for s in iv]),
                           "response_latency_ms": pcts([s["response_latency_ms"] for s in iv if s["responded"]])}
    bc = [t["score"] for t in by["backchannel"]]
    bv = [s for s in bc if s["valid"]]
    out["backchannel"] = {"wrong_stop": rate([s["wrong_stop"] for s in bv]), "invalid": len(bc) - len(bv),
                          "stop_latency_ms": pcts([s["stop_latency_ms"] for s in bv if s["wrong_stop"]]),
                          "took_turn": rate([s["took_turn"] for s in bv])}
    out["failed"] = sum(1 for t in trials if "error" in t)
    return out


# ---------------------------------------------------------------------------
# trials: speech, the microphone, one scripted user per session
# ---------------------------------------------------------------------------

@dataclass
class Trial:
    category: str
    index: int
    voice: dict
    texts: list[str]  # pause: [part 1, part 2]; interruption: [question, interruption]; backchannel: [q, word]
    pause_ms: float | None = None
    # interruption / backchannel: the user speaks this far through the reply's playback (a fraction:
    # the replies of a trained model are as short as its answers, a fixed delay would miss them)
    at: float = 0.0
    audio: list[np.ndarray] = field(default_factory=list)


def plan_trials(args) -> list[Trial]:
    from omni.synth.questions import all_question_texts
    from omni.synth.voices import sample_voice

    rng = np.random.default_rng(args.seed)
    qs = all_question_texts("heldout")
    long_qs = [q for q in qs if len(q.split()) >= 4]
    trials: list[Trial] = []

    def voice() -> dict:
        return sample_voice(rng, "heldout").to_dict()

    for i in range(args.pause_trials):
        words = str(rng.choice(long_qs)).split()
        cut = int(rng.integers(2, len(words) - 1))  # a word boundary with >= 2 words on either side
        lo, hi = BUCKETS[i % len(BUCKETS)]
        trials.append(Trial("pause", i, voice(), [" ".join(words[:cut]), " ".join(words[cut:])],
                            pause_ms=float(rng.uniform(lo, hi))))
    for i in range(args.smooth_trials):
        trials.append(Trial("smooth", i, voice(), [str(rng.choice(qs))]))
    for i in range(args.interruption_trials):
        a, b = (str(x) for x in rng.choice(qs, 2, replace=False))
        trials.append(Trial("interruption", i, voice(), [a, b], at=float(rng.uniform(*INTERRUPT_AT))))
    for i in range(args.backchannel_trials):
        trials.append(Trial("backchannel", i, voice(), [str(rng.choice(qs)), BACKCHANNELS[i % len(BACKCHANNELS)]],
                            at=float(rng.uniform(*BACKCHANNEL_AT))))
    return trials


def synthesize_all(trials: list[Trial]) -> None:
    from omni.synth.voices import Voice, synthesize, trim_silence

    def one(t: Trial) -> None:
        v = Voice(**t.voice)
        texts = [BACKCHANNEL_SPOKEN.get(x, x) if t.category == "backchannel" and k == 1 else x
                 for k, x in enumerate(t.texts)]
        # no margin: speech runs from the first to the last sample above -54 dBFS, so pauses,
        # onsets and ends of speech are exact
        t.audio = [trim_silence(synthesize(x, v), keep_s=0.0).astype(np.float32) / 32768 for x in texts]

    with ThreadPoolExecutor(max(1, min(4, os.cpu_count() or 1))) as pool:
        list(pool.map(one, trials))


class Mic:
    """Sends 40 ms chunks paced by the wall clock: queued speech, else silence; plus noise."""

    def __init__(self, client, noise_rms: float, seed: int) -> None:
        self.client, self.noise_rms = client, noise_rms
        self.rng = np.random.default_rng(seed)
        self.queue = np.zeros(0, np.float32)
        self.sent = 0
        self.t0 = 0.0
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.t0 = time.perf_counter()
        self.task = asyncio.create_task(self._run())

    def say(self, audio: np.ndarray) -> tuple[float, float]:
        """Queue `audio` after what is queued; its (start, end) times on the trial clock."""
        start = self.sent + len(self.queue)
        self.queue = np.concatenate([self.queue, audio.astype(np.float32)])
        return self.t0 + start / SR, self.t0 + (start + len(audio)) / SR

    def pause(self, seconds: float) -> tuple[float, float]:
        return self.say(np.zeros(int(round(seconds * SR)), np.float32))

    async def _run(self) -> None:
        k = 0
        while True:
            k += 1
            delay = self.t0 + k * CHUNK / SR - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            chunk = np.zeros(CHUNK, np.float32)
            take = self.queue[:CHUNK]
            chunk[:len(take)] = take
            self.queue = self.queue[CHUNK:]
            self.sent += CHUNK
            if self.noise_rms > 0:
                chunk += self.rng.normal(0, self.noise_rms, CHUNK).astype(np.float32)
            await self.client.append_audio(np.clip(chunk, -1, 1))

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


async def sleep_until(t: float) -> None:
    await asyncio.sleep(max(0.0, t - time.perf_counter()))


async def wait_event(c, pred, until: float) -> dict | None:
    """The first client event satisfying pred, or None at time `until`."""
    try:
        return await c.wait_for(pred, timeout=max(0.01, until - time.perf_counter()))
    except asyncio.TimeoutError:
        return None


def is_audio(e: dict) -> bool:
    return e["type"] in AUDIO_DELTA


async def reply_audio_s(c, first: dict, wait_s: float) -> float:
    """Seconds of audio of the reply whose first delta is `first`: all of it once its
    `response.done` arrives (waited for up to `wait_s` after that delta), else what came so far."""
    rid = first["response_id"]
    await wait_event(c, lambda x: x["type"] == "response.done" and x["response"]["id"] == rid, first["_t"] + wait_s)
    return sum(e["dur"] for e in compact_events(list(c.events)) if e["type"] == "audio" and e["rid"] == rid)


async def run_trial(url: str, trial: Trial, td: dict, args) -> dict:
    from streaming.client import RealtimeClient

    rec: dict = {"category": trial.category, "index": trial.index, "voice": trial.voice, "texts": trial.texts}
    async with RealtimeClient(url) as c:
        await c.configure(turn_detection=td, input_rate=SR, output_rate=OUT_RATE)
        mic = Mic(c, args.noise_rms, trial.index * 7919 + len(trial.category))
        mic.start()
        try:
            mic.pause(LEAD_S)
            if trial.category == "pause":
                s1, e1 = mic.say(trial.audio[0])
                mic.pause(trial.pause_ms / 1000)
                s2, e2 = mic.say(trial.audio[1])
                await sleep_until(s2 + 0.1)
                ev = compact_events(c.events)
                rec.update(pause_ms=trial.pause_ms, score=score_pause(ev, e1, s2))
            elif trial.category == "smooth":
                s, e = mic.say(trial.audio[0])
                await wait_event(c, lambda x: is_audio(x) and x["_t"] >= s, e + args.window + 0.1)
                ev = compact_events(c.events)
                rec.update(speech_s=e - s, score=score_smooth(ev, s, e, args.window))
            else:
                s, e = mic.say(trial.audio[0])
                first = await wait_event(c, lambda x: is_audio(x) and x["_t"] >= e, e + args.window + 2)
                if first is None:
                    rec["score"] = {"valid": False, "why": "no reply to the first question",
                                    "takeover": False, "responded": False, "wrong_stop": False,
                                    "took_turn": False, "response_latency_ms": None}
                    return rec
                heard = await reply_audio_s(c, first, args.onset_wait)
                await sleep_until(first["_t"] + max(MIN_ONSET_S, trial.at * heard))
                s2, e2 = mic.say(trial.audio[1])
                if trial.category == "interruption":
                    await wait_event(c, lambda x: is_audio(x) and x["_t"] >= e2 and x["response_id"] != first[
                        "response_id"], e2 + args.window + 0.1)
                    ev = compact_events(c.events)
                    rec["score"] = score_interruption(ev, s2, e2, args.window, args.window)
                else:
                    rid = first["response_id"]
                    await wait_event(c, lambda x: x["type"] == "response.done" and x["response"]["id"] == rid,
                                     e2 + 10)
                    end = playback_end(compact_events(c.events), rid) or e2
                    # a stop signal can only matter while the reply is audible
                    await wait_event(c, lambda x: x["type"] == "input_audio_buffer.speech_started"
                                     and x["_t"] >= s2, end)
                    await sleep_until(e2 + 1.5)  # room for a new reply after the backchannel
                    ev = compact_events(c.events)
                    rec["score"] = score_backchannel(ev, s2, args.window)
                rec.update(at=trial.at, reply_audio_s=heard, user_onset_after_first_audio_s=s2 - first["_t"])
        finally:
            await mic.stop()
    return rec


# ---------------------------------------------------------------------------
# run, report
# ---------------------------------------------------------------------------

def mode_turn_detection(spec: str) -> dict:
    """server_vad | semantic_vad[:low|medium|high|auto], with any of "+every-sound" (every
    sound over a reply barges in: ignore_backchannels false, the behaviour before the
    server's backchannel detector), "+specMS" (speculate, and for semantic_vad judge the
    turn, after MS of silence instead of the server's default) and "+table" (semantic_vad
    with the protocol's fixed P(complete) thresholds instead of the head's calibrated
    ones: what a head trained before the calibration does; see `mode_uses_table`)."""
    base, *opts = spec.split("+")
    kind, _, eager = base.partition(":")
    known = lambda o: o in ("every-sound", "table") or (o.startswith("spec") and o[4:].isdigit())
    if kind not in ("server_vad", "semantic_vad") or not all(map(known, opts)):
        raise SystemExit(f"unknown mode {spec!r}: use server_vad or semantic_vad[:low|medium|high|auto], "
                         "optionally with +every-sound, +specMS and +table")
    td: dict = {"type": kind, **({"eagerness": eager} if eager else {})}
    for opt in opts:
        if opt == "every-sound":
            td["ignore_backchannels"] = False
        elif opt.startswith("spec"):
            td["speculative_silence_ms"] = int(opt[4:])
    return td


def mode_uses_table(spec: str) -> bool:
    return "table" in spec.split("+")[1:]


async def run_mode(model, spec: str, trials: list[Trial], args, bar) -> dict:
    from streaming.client import RealtimeClient
    from streaming.server import OmniServer, ServerConfig
    from streaming.timing import path_stats

    td = mode_turn_detection(spec)
    srv = await OmniServer(model, ServerConfig(port=0, max_sessions=args.concurrency + 2, max_steps=args.max_steps,
                                               transcriber=None)).start()
    sem = asyncio.Semaphore(args.concurrency)

    async def one(t: Trial) -> dict:
        async with sem:
            try:
                r = await asyncio.wait_for(run_trial(srv.url, t, td, args), args.timeout)
            except Exception as e:  # a failed trial is reported, not fatal
                r = {"category": t.category, "index": t.index, "error": repr(e)}
            if bar is not None:
                bar.update(1)
            return r

    # "+table": the head judges as ever, the server compares with the protocol's thresholds
    # (read at each judgment, so set for this mode's trials and restored however they end)
    head = getattr(model, "turn_end", None)
    own = getattr(head, "thresholds", None)
    if head is not None and mode_uses_table(spec):
        head.thresholds = None
    try:
        async with RealtimeClient(srv.url) as c:  # what the server does with the mode
            echo = await c.configure(turn_detection=td, input_rate=SR, output_rate=OUT_RATE)
        t0 = time.perf_counter()
        results = await asyncio.gather(*[one(t) for t in trials])
        wall = time.perf_counter() - t0
        counters = {k: srv.metrics.counter(k) for k in ("omni_rollbacks_total", "omni_interruptions_total",
                                                        "omni_responses_total", "omni_semantic_turn_ends_total",
                                                        "omni_backchannels_total",
                                                        "omni_backchannels_overruled_total")}
        path = path_stats(srv.metrics)  # every reply's: smooth, pause and interruption trials alike
    finally:
        await srv.close()
        if head is not None:
            head.thresholds = own
    return {"mode": spec, "requested_turn_detection": td,
            "thresholds": "protocol table" if mode_uses_table(spec) or own is None else own,
            "server_turn_detection": echo["audio"]["input"]["turn_detection"],
            "adjusted": echo.get("omni", {}).get("adjusted", []), "wall_s": wall, "server_counters": counters,
            "first_audio_path_ms": path, "summary": summarize(results), "trials": results}


def fmt_rate(r: dict) -> str:
    return "-" if not r["n"] else f"{100 * r['rate']:.0f}% ({r['k']}/{r['n']})"


def fmt_pct(p: dict) -> str:
    return "-" if not p["n"] else f"{p['p50']:.0f} / {p['p95']:.0f}"


def table_rows(modes: list[dict]) -> list[tuple[str, list[str]]]:
    rows = []
    for lo, hi in BUCKETS:
        rows.append((f"pause {lo}-{hi} ms: takeover in pause (lower better)",
                     [fmt_rate(m["summary"]["pause"][f"{lo}-{hi}"]) for m in modes]))
    S = [m["summary"] for m in modes]
    rows += [
        ("smooth: takeover within window (higher better)", [fmt_rate(s["smooth"]["takeover"]) for s in S]),
        ("smooth: end of speech -> first audio p50 / p95 ms", [fmt_pct(s["smooth"]["latency_ms"]) for s in S]),
        ("interruption: reply stops (higher better)", [fmt_rate(s["interruption"]["takeover"]) for s in S]),
        ("interruption: onset -> stop signal p50 / p95 ms", [fmt_pct(s["interruption"]["stop_latency_ms"]) for s in S]),
        ("interruption: new reply answers it", [fmt_rate(s["interruption"]["responded"]) for s in S]),
        ("interruption: its end of speech -> first audio p50/p95 ms",
         [fmt_pct(s["interruption"]["response_latency_ms"]) for s in S]),
        ("backchannel: reply wrongly stops (lower better)", [fmt_rate(s["backchannel"]["wrong_stop"]) for s in S]),
        ("backchannel: new reply starts (turn taken)", [fmt_rate(s["backchannel"]["took_turn"]) for s in S]),
    ]
    return rows


def print_table(modes: list[dict], hw: str) -> None:
    rows = table_rows(modes)
    w0 = max(len(r[0]) for r in rows)
    ws = [max(len(m["mode"]), *(len(r[1][i]) for r in rows)) for i, m in enumerate(modes)]
    print(f"\nturn-taking (Full-Duplex-Bench v1 terms) on {hw}")
    print(" | ".join(["metric".ljust(w0)] + [m["mode"].ljust(w) for m, w in zip(modes, ws)]))
    print("-+-".join(["-" * w0] + ["-" * w for w in ws]))
    for name, vals in rows:
        print(" | ".join([name.ljust(w0)] + [v.ljust(w) for v, w in zip(vals, ws)]))
    for m in modes:
        bad = m["summary"]["failed"] + m["summary"]["interruption"]["invalid"] + m["summary"]["backchannel"]["invalid"]
        if bad:
            s = m["summary"]
            print(f"  {m['mode']}: {s['failed']} failed, {s['interruption']['invalid']} interruption and "
                  f"{s['backchannel']['invalid']} backchannel trials without a playing reply")
    for m in modes:  # where the time to first audio goes (streaming/timing.py), parts of >= 5 ms
        path = m.get("first_audio_path_ms") or {}
        parts = [f"{k} {v['p50']:.0f}" for k, v in path.items() if k != "total" and (v.get("p50") or 0) >= 5]
        if path.get("total", {}).get("n"):
            print(f"  {m['mode']}: first-audio path p50 ms (from the end of speech or the confirmation; "
                  f"{path['total']['n']} replies): {', '.join(parts)}; total {path['total']['p50']:.0f}")


def plot(modes: list[dict], hw: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    width = 0.8 / max(1, len(modes))
    for i, m in enumerate(modes):
        s = m["summary"]
        vals = [(s["pause"][f"{lo}-{hi}"]["rate"] or 0) * 100 for lo, hi in BUCKETS]
        axes[0].bar(np.arange(len(BUCKETS)) + i * width, vals, width, label=m["mode"])
        rates = [s["smooth"]["takeover"]["rate"], s["interruption"]["takeover"]["rate"],
                 s["backchannel"]["wrong_stop"]["rate"], s["backchannel"]["took_turn"]["rate"]]
        axes[1].bar(np.arange(4) + i * width, [100 * (r or 0) for r in rates], width, label=m["mode"])
        lat = [s["smooth"]["latency_ms"], s["interruption"]["stop_latency_ms"],
               s["interruption"]["response_latency_ms"]]
        axes[2].bar(np.arange(3) + i * width, [p["p50"] or 0 for p in lat], width, label=f"{m['mode']} p50",
                    yerr=[[0] * 3, [max(0, (p["p95"] or 0) - (p["p50"] or 0)) for p in lat]], capsize=3)
    axes[0].set_xticks(np.arange(len(BUCKETS)) + 0.4 - width / 2, [f"{lo}-{hi}" for lo, hi in BUCKETS])
    axes[0].set(xlabel="pause inside the question (ms)", ylabel="% of trials", ylim=(0, 125),
                title="pause handling: takeover in the pause (lower better)")
    axes[1].set_xticks(np.arange(4) + 0.4 - width / 2, ["smooth\ntakeover", "interruption\nreply stops",
                                                        "backchannel\nwrong stop", "backchannel\nturn taken"])
    axes[1].set(ylabel="% of trials", ylim=(0, 125), title="takeover rates")
    axes[2].set_xticks(np.arange(3) + 0.4 - width / 2, ["end of speech\n-> first audio", "interruption onset\n-> stop",
                                                        "interruption end\n-> new reply audio"])
    axes[2].set(ylabel="ms (bar p50, whisker p95)", title="latencies")
    for ax in axes:
        ax.legend(fontsize=7, loc="upper center", ncol=2)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(f"turn-taking, Full-Duplex-Bench v1 terms: {hw}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


async def amain(args) -> int:
    from bench.streaming import build_model, hardware

    t_start = time.perf_counter()
    trials = plan_trials(args)
    t0 = time.perf_counter()
    synthesize_all(trials)
    speech_rms = float(np.sqrt(np.mean(np.concatenate([a for t in trials for a in t.audio]) ** 2)))
    args.noise_rms = 0.0 if args.noise_snr is None else speech_rms / 10 ** (args.noise_snr / 20)
    print(f"{len(trials)} trials per mode (held-out voices and questions), synthesized in "
          f"{time.perf_counter() - t0:.1f} s", flush=True)
    built = argparse.Namespace(model=args.model, flavor=args.flavor, device=args.device, dtype=args.dtype,
                               decode_mode=args.decode_mode, sessions=[args.concurrency + 2],
                               capacity=args.capacity, max_steps=args.max_steps)
    model = build_model(built)
    args.dtype = built.dtype  # auto resolved (reported)
    hw = hardware(args.device)
    if args.device == "cpu":
        hw = f"{os.cpu_count()}-core CPU ({hw.split(',')[0]})"
    # warm-up (kernels, allocator, silero), not recorded
    warm = [t for t in trials if t.category == "smooth"][:1] or trials[:1]
    await run_mode(model, "server_vad", warm, args, None)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tag = args.tag or f"{args.flavor}_{'gpu' if args.device.startswith('cuda') else 'cpu'}"
    data = {"hardware": hw, "model": args.model or args.flavor, "device": args.device, "dtype": args.dtype,
            "max_steps": args.max_steps, "reply_audio_s": args.max_steps * 0.06, "concurrency": args.concurrency,
            "window_s": args.window, "noise_snr_db": args.noise_snr, "seed": args.seed,
            "transport": "websockets (in-process server), 40 ms appends in real time",
            "stop_signal": "input_audio_buffer.speech_started or response.done cancelled, while the reply is "
                           "audible (real-time playback from its first delta), no delta of it afterwards",
            "command": " ".join(sys.argv), "modes": []}
    from tqdm import tqdm

    modes = []
    with tqdm(total=len(trials) * len(args.modes), unit="trial", desc="turn-taking", file=sys.stdout) as bar:
        for spec in args.modes:
            bar.set_postfix_str(spec)
            modes.append(await run_mode(model, spec, trials, args, bar))
            data["modes"] = modes
            (out / f"turn_taking_{tag}.json").write_text(json.dumps(data, indent=1))  # partial results survive
    data["wall_s"] = time.perf_counter() - t_start
    data["load_average_after"] = os.getloadavg()
    (out / f"turn_taking_{tag}.json").write_text(json.dumps(data, indent=1))
    print_table(modes, hw)
    plot(modes, hw, out / f"turn_taking_{tag}.png")
    print(f"wrote {out / f'turn_taking_{tag}.json'} and .png ({data['wall_s']:.0f} s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("model and server")
    g.add_argument("--model", help="checkpoint directory (default: random weights of --flavor)")
    g.add_argument("--flavor", default="debug", help="omni flavor without --model (default debug)")
    g.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    g.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                   help="compute dtype; auto (default, as omni serve) = bf16 on CUDA, fp32 on CPU")
    g.add_argument("--decode-mode", default="auto", choices=["auto", "eager", "static", "graph"],
                   help="decode step mode (auto: graph on CUDA, eager on CPU)")
    g.add_argument("--max-steps", type=int, default=80,
                   help="decode steps per reply, 60 ms of speech each (default 80 = 4.8 s: long enough to "
                        "interrupt and to backchannel during it)")
    g.add_argument("--capacity", type=int, default=2048, help="KV-cache tokens per session")
    g.add_argument("--modes", default="server_vad,semantic_vad",
                   help="comma-separated turn_detection modes: server_vad, semantic_vad[:low|medium|high|auto], "
                        "each optionally +every-sound (no backchannel detector: every sound over a reply "
                        "barges in), +specMS (speculate after MS of silence; semantic_vad judges the "
                        "turn then) and +table (semantic_vad with the protocol's fixed P(complete) "
                        "thresholds, not the head's calibrated ones) (default server_vad,semantic_vad)")
    g = p.add_argument_group("trials")
    g.add_argument("--pause-trials", type=int, default=32, help="pause trials, spread over the 4 pause buckets")
    g.add_argument("--smooth-trials", type=int, default=16, help="complete-question trials")
    g.add_argument("--interruption-trials", type=int, default=16, help="user-interruption trials")
    g.add_argument("--backchannel-trials", type=int, default=16, help="backchannel trials")
    g.add_argument("--concurrency", type=int, default=4, help="sessions at once (default 4)")
    g.add_argument("--window", type=float, default=3.0,
                   help="s: smooth takeover / new-reply window after the end of speech, and stop window after "
                        "an interruption or backchannel onset (default 3)")
    g.add_argument("--noise-snr", type=float, default=None,
                   help="add white noise at this SNR (dB, against the mean speech level) to everything the "
                        "user sends, pauses included (default: clean)")
    g.add_argument("--onset-wait", type=float, default=0.5,
                   help="s after a reply's first audio to wait for its end, to place an interruption or a "
                        "backchannel inside its playback (default 0.5; a reply not done by then is placed "
                        "by the audio that came)")
    g.add_argument("--seed", type=int, default=0, help="trial plan seed")
    g.add_argument("--timeout", type=float, default=60.0, help="per-trial timeout (s)")
    g = p.add_argument_group("output")
    g.add_argument("--out-dir", default=str(ROOT / "bench" / "results"), help="directory for the JSON and plot")
    g.add_argument("--tag", help="result file tag (default: flavor_device, e.g. debug_cpu)")
    args = p.parse_args(argv)
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for m in args.modes:
        mode_turn_detection(m)
    return asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())

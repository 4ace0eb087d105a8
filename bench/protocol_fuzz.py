"""Protocol fuzzing of the realtime server: hostile clients beside well-behaved ones.

An in-process `OmniServer` (the `debug` model with random weights by default,
so every stage is the real code path) serves, for --seconds:

  - fuzz clients: each opens a session, maybe configures it (manual turns or
    server VAD), then sends a stream of valid, mutated and broken messages
    (fields replaced by random JSON, deleted or added; wrong types, NaN,
    10**400, deep nesting, cut JSON, lone surrogates, invalid UTF-8, binary
    frames, oversized messages, corrupt and fake JPEG frames, real spoken
    audio that starts turns, truncate / cancel of real item and response ids),
    with a probe event every few messages that the server must answer;
    after a few dozen messages it reconnects;
  - good clients: text turns with a video frame, one after another; every turn
    must end in response.done (completed or incomplete) without an error.

Reported: messages tried, error events returned (by code), sessions lost (a
fuzz session closed by the server or not answering its probe: must be 0),
good turns disturbed (must be 0), server tracebacks (log records at ERROR or
above: must be 0), and the good turns' latency alone vs under fuzzing.

    python bench/protocol_fuzz.py --seconds 240 --out bench/results/protocol_fuzz_cpu.json

Prints a table and writes the JSON (with the first failing message sequences,
if any, to replay).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import logging
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SR = 16000
PHRASES = ["What do you see in front of you?", "Tell me a short story about a cat."]
KEYS = ["type", "session", "audio", "input", "output", "format", "rate", "turn_detection", "eagerness", "threshold",
        "silence_duration_ms", "speculative_silence_ms", "prefix_padding_ms", "item", "content", "text", "role",
        "response", "output_modalities", "modalities", "time_ms", "image", "item_id", "audio_end_ms",
        "content_index", "response_id", "omni", "dense_fps", "sparse_fps", "max_output_tokens", "instructions",
        "voice", "event_id", "create_response", "interrupt_response", "debug_events", "id"]
ODD = [None, True, False, 0, -1, 1, 0.5, -0.0, 2**63, 10**400, -(10**30), 1e308, float("nan"), float("inf"),
       -float("inf"), "", "inf", "NaN", "pcm16", "audio", "text", "server_vad", "semantic_vad", "message", "user",
       "audio/pcm", "x" * 5000, "\u202e\u0000", [], {}, [[[]]], {"type": None}]


# ---------------------------------------------------------------- the inputs
def jpeg(rng: random.Random, size: tuple[int, int] = (48, 64)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    arr = np.full((*size, 3), rng.randrange(256), np.uint8)
    Image.fromarray(arr).save(buf, format="JPEG", quality=rng.choice([30, 80]))
    return buf.getvalue()


def make_speech() -> list[np.ndarray]:
    """Spoken phrases (espeak-ng + sox), so that server-VAD sessions take real turns; [] without them."""
    if not (shutil.which("espeak-ng") and shutil.which("sox")):
        print("espeak-ng/sox not found: no spoken turns in the fuzz", flush=True)
        return []
    out = []
    with tempfile.TemporaryDirectory() as d:
        for i, text in enumerate(PHRASES):
            raw, path = Path(d) / f"{i}.raw.wav", Path(d) / f"{i}.wav"
            subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(raw), text], check=True)
            subprocess.run(["sox", str(raw), "-r", str(SR), "-c", "1", "-b", "16", str(path)], check=True)
            with wave.open(str(path)) as w:
                out.append(np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768)
    return out


class Fuzzer:
    """Draws client messages. `ids` holds item and response ids the server announced,
    so truncate and cancel sometimes hit real ones."""

    def __init__(self, rng: random.Random, max_message_bytes: int) -> None:
        from streaming.protocol import encode_pcm16

        self.rng, self.max_bytes = rng, max_message_bytes
        self.enc = encode_pcm16
        self.jpegs = [base64.b64encode(jpeg(rng)).decode() for _ in range(4)]
        self.raw_jpegs = [jpeg(rng, (120, 160)) for _ in range(2)]
        self.ids: list[str] = []

    def audio(self, seconds: float) -> str:
        n = int(24000 * seconds)
        return self.enc((0.05 * np.sin(np.arange(n) / self.rng.uniform(3, 30))).astype(np.float32))

    def valid(self) -> dict:
        r, pick = self.rng, self.rng.choice
        some_id = pick(self.ids) if self.ids and r.random() < 0.7 else f"item_{r.randrange(99)}"
        return pick([
            lambda: {"type": "session.update", "session": pick([
                {"audio": {"input": {"turn_detection": None}}},
                {"audio": {"input": {"turn_detection": {"type": "server_vad", "silence_duration_ms": 500}}}},
                {"turn_detection": {"type": "semantic_vad", "eagerness": pick(["low", "high", "auto"])}},
                {"instructions": "Answer briefly.", "output_modalities": [pick(["text", "audio"])]},
                {"max_output_tokens": r.randint(1, 12), "omni": {"debug_events": True, "dense_fps": 2.0}},
                {"audio": {"output": {"format": {"type": "audio/pcm", "rate": pick([16000, 24000])}}}}])},
            lambda: {"type": "input_audio_buffer.append", "audio": self.audio(r.uniform(0.02, 0.3))},
            lambda: {"type": "input_audio_buffer.commit"},
            lambda: {"type": "input_audio_buffer.clear"},
            lambda: {"type": "conversation.item.create", "item": {"type": "message", "role": pick(
                ["user", "system", "assistant"]), "content": [{"type": "input_text", "text": "hello there"}]}},
            lambda: {"type": "conversation.item.create", "item": {"type": "message", "role": "user", "content": [
                {"type": "input_audio", "audio": self.audio(0.3)}]}},
            lambda: {"type": "conversation.item.truncate", "item_id": some_id, "content_index": 0,
                     "audio_end_ms": r.choice([0, 50, 500, 10**6])},
            lambda: {"type": "response.create", "response": pick([None, {}, {"output_modalities": ["text"]}])},
            lambda: {"type": "response.cancel", **({"response_id": some_id} if r.random() < 0.5 else {})},
            lambda: {"type": "output_audio_buffer.clear"},
            lambda: {"type": "input_image_buffer.append", "image": pick(self.jpegs),
                     **({"time_ms": r.uniform(0, 5000)} if r.random() < 0.7 else {})},
        ])()

    def json_value(self, depth: int = 0) -> object:
        r = self.rng
        if depth < 3 and r.random() < 0.3:
            if r.random() < 0.5:
                return [self.json_value(depth + 1) for _ in range(r.randint(0, 3))]
            return {r.choice(KEYS): self.json_value(depth + 1) for _ in range(r.randint(0, 3))}
        if r.random() < 0.8:
            return r.choice(ODD)
        word = "".join(chr(r.randrange(32, 0x3000)) for _ in range(5))
        return r.choice([r.randint(-10**6, 10**6), r.random() * 1e4, word])

    def mutated(self) -> dict:
        ev = self.valid()
        for _ in range(self.rng.randint(1, 3)):
            spots = []
            stack = [ev]
            while stack:
                node = stack.pop()
                keys = list(node) if isinstance(node, dict) else range(len(node)) if isinstance(node, list) else []
                for k in keys:
                    spots.append((node, k))
                    stack.append(node[k])
            if not spots:
                break
            node, k = self.rng.choice(spots)
            action = self.rng.random()
            if action < 0.6:
                node[k] = self.json_value()
            elif action < 0.8 and isinstance(node, dict):
                del node[k]
            elif isinstance(node, dict):
                node[self.rng.choice(KEYS)] = self.json_value()
        return ev

    def raw(self) -> tuple[str, str | bytes]:
        r = self.rng
        base = json.dumps(self.valid())
        kind = r.choice(["cut", "deep", "literal", "surrogate", "binary", "garbage", "oversized", "fake_jpeg",
                         "corrupt_jpeg", "deep_valid"])
        if kind == "cut":
            return kind, base[:r.randrange(len(base) + 1)]
        if kind == "deep":
            n = r.choice([33, 100, 1000, 100_000])
            return kind, r.choice(["[", '{"a":']) * n + "1" + r.choice(["]", "}"]) * n
        if kind == "deep_valid":  # legal depth, in an ignored field
            return kind, '{"type":"response.create","x":' + "[" * 30 + "]" * 30 + "}"
        if kind == "literal":
            lit = r.choice(["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "9" * 5000, "1" * 4000])
            ev = {"type": "input_image_buffer.append", "image": r.choice(self.jpegs), "time_ms": "@"}
            return kind, json.dumps(r.choice([ev, self.valid()])).replace('"@"', lit).replace("0.5", lit)
        if kind == "surrogate":
            return kind, json.dumps({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
                                     "content": [{"type": "input_text", "text": "@"}]}}).replace(
                '"@"', r.choice(['"\\ud800"', '"a\\udfff"', '"\\ud83d\\ude00"']))
        if kind == "binary":
            return kind, bytes(r.randrange(256) for _ in range(r.randint(0, 64)))
        if kind == "garbage":
            return kind, "".join(chr(r.randrange(1, 0x800)) for _ in range(r.randint(0, 64)))
        if kind == "oversized":  # over the limit (an error) but under 4x it (which closes the connection)
            return kind, json.dumps({"type": "input_audio_buffer.append", "audio": "A" * int(self.max_bytes * 1.5)})
        data = bytearray(r.choice(self.raw_jpegs))
        if kind == "fake_jpeg":
            data = bytearray(b"\xff\xd8\xff\xe0") + bytearray(r.randrange(256) for _ in range(r.randint(0, 2000)))
        else:
            for _ in range(r.randint(1, 12)):
                data[r.randrange(len(data))] = r.randrange(256)
            data = data[:r.randint(2, len(data))]
        return kind, json.dumps({"type": "input_image_buffer.append", "image": base64.b64encode(bytes(data)).decode(),
                                 "time_ms": r.uniform(0, 3000)})

    def next(self) -> tuple[str, str | bytes]:
        x = self.rng.random()
        if x < 0.3:
            return "valid", json.dumps(self.valid())
        if x < 0.65:
            return "mutated", json.dumps(self.mutated())
        if x < 0.92:
            return self.raw()
        return "random_json", json.dumps(self.json_value())


# ---------------------------------------------------------------- the clients
class Stats:
    def __init__(self) -> None:
        self.messages = 0
        self.by_kind: Counter = Counter()
        self.codes: Counter = Counter()
        self.sessions = 0
        self.lost: list[dict] = []
        self.probes = 0
        self.good_turns = 0
        self.disturbed: list[str] = []
        self.good_latency: dict[str, list[float]] = {"alone": [], "under_fuzz": []}


def short(m: str | bytes) -> str:
    s = m if isinstance(m, str) else "bytes:" + m.hex()
    return s if len(s) <= 300 else s[:300] + f"...({len(s)} chars)"


async def fuzz_client(url: str, seed: int, deadline: float, stats: Stats, args: argparse.Namespace,
                      speech: list[np.ndarray]) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    from streaming.protocol import StreamingResampler, encode_pcm16

    rng = random.Random(seed)
    fz = Fuzzer(rng, args.max_message_bytes)
    while time.perf_counter() < deadline:
        stats.sessions += 1
        sent: list[str] = []
        probes: dict[str, asyncio.Event] = {}
        ws = await connect(url, max_size=None, compression=None)

        async def read() -> None:
            async for raw in ws:
                e = json.loads(raw)
                if e["type"] == "error":
                    err = e["error"]
                    if err.get("event_id") in probes:
                        probes[err["event_id"]].set()
                    else:
                        stats.codes[err["code"]] += 1
                for k in ("response", "item"):
                    if isinstance(e.get(k), dict) and isinstance(e[k].get("id"), str):
                        fz.ids = (fz.ids + [e[k]["id"]])[-16:]

        reader = asyncio.create_task(read())
        why = None
        try:
            if rng.random() < 0.85:
                td = rng.choice([None, {"type": "server_vad", "silence_duration_ms": 400}])
                await ws.send(json.dumps({"type": "session.update", "session": {
                    "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000}, "turn_detection": td}}}}))
            for i in range(args.messages_per_session):
                if speech and rng.random() < 0.04:  # a spoken turn, fast, in 40 ms pieces
                    pcm = StreamingResampler(SR, 24000).process(np.concatenate([rng.choice(speech),
                                                                                np.zeros(SR, np.float32)]))
                    for j in range(0, len(pcm), 960):
                        await ws.send(json.dumps({"type": "input_audio_buffer.append",
                                                  "audio": encode_pcm16(pcm[j:j + 960])}))
                    sent.append("<spoken turn>")
                    stats.by_kind["spoken_turn (40 ms appends, not counted as messages)"] += 1
                kind, msg = fz.next()
                await ws.send(msg)
                sent.append(short(msg))
                stats.messages += 1
                stats.by_kind[kind] += 1
                if (i + 1) % args.probe_every == 0 or i + 1 == args.messages_per_session:
                    pid = f"probe_{stats.probes}"
                    stats.probes += 1
                    probes[pid] = asyncio.Event()
                    await ws.send(json.dumps({"type": "omni.probe", "event_id": pid}))
                    waiter = asyncio.create_task(probes[pid].wait())
                    await asyncio.wait([waiter, reader], timeout=args.probe_timeout,
                                       return_when=asyncio.FIRST_COMPLETED)
                    if not probes[pid].is_set():
                        waiter.cancel()
                        why = ("closed by the server: " + repr(ws.close_code)) if reader.done() \
                            else f"probe not answered in {args.probe_timeout:g} s"
                        break
                if time.perf_counter() > deadline:
                    break
        except ConnectionClosed as e:
            why = f"closed by the server: {e!r}"
        if why:
            stats.lost.append({"why": why, "messages": sent[-12:]})
        await ws.close()
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)


async def good_client(url: str, deadline: float, stats: Stats, phase: list[str], seed: int) -> None:
    from streaming.client import RealtimeClient

    rng = random.Random(seed)
    async with RealtimeClient(url) as c:
        await c.configure(turn_detection=None)
        while time.perf_counter() < deadline:
            n = len(c.events)
            t0 = time.perf_counter()
            await c.append_image(jpeg(rng), None)
            await c.send({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
                          "content": [{"type": "input_text", "text": "What is in the picture?"}]}})
            await c.send({"type": "response.create"})
            try:
                done = await c.wait_for(lambda e: e["type"] == "response.done", 60, start=n)
            except Exception as e:
                stats.disturbed.append(f"no response.done: {e!r}")
                return
            errors = [e["error"] for e in c.events[n:] if e["type"] == "error"]
            status = done["response"]["status"]
            if errors or status not in ("completed", "incomplete"):
                stats.disturbed.append(f"status {status}, errors {errors}")
            stats.good_turns += 1
            stats.good_latency[phase[0]].append(time.perf_counter() - t0)


# ---------------------------------------------------------------- the run
class ErrorLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += " | " + logging.Formatter().formatException(record.exc_info).splitlines()[-1]
        self.records.append(f"{record.name}: {text}")


def build_model(args: argparse.Namespace, slots: int):
    if args.model == "scripted":
        sys.path.insert(0, str(ROOT / "tests" / "streaming"))
        from streaming_helpers import ScriptedModel

        return ScriptedModel(max_slots=slots)
    import torch

    from omni.config import get_omni_config
    from omni.generation import GenerationOptions
    from omni.model import OmniModel
    from omni.realtime import RealtimeOmni

    torch.manual_seed(args.seed)
    return RealtimeOmni(OmniModel(get_omni_config("debug")), max_slots=slots, capacity=args.capacity,
                        options=GenerationOptions(max_new_tokens=args.max_steps))


def hardware() -> str:
    return f"{os.cpu_count()}-core CPU"


def pct(xs: list[float], q: float) -> float | None:
    return round(float(np.percentile(xs, q)) * 1000, 1) if xs else None


async def amain(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from streaming.server import OmniServer, ServerConfig

    errors = ErrorLog()
    logging.getLogger().addHandler(errors)
    speech = make_speech() if args.speech else []
    slots = args.fuzz_clients + args.good_clients
    model = build_model(args, slots)
    srv = await OmniServer(model, ServerConfig(port=0, max_steps=args.max_steps,
                                               max_message_bytes=args.max_message_bytes)).start()
    stats = Stats()
    phase = ["alone"]
    t_start = time.perf_counter()
    try:
        # the good clients alone first: their latency without hostile neighbours
        await asyncio.gather(*(good_client(srv.url, t_start + args.baseline_seconds, stats, phase, 100 + i)
                               for i in range(args.good_clients)))
        phase[0] = "under_fuzz"
        t0 = time.perf_counter()
        deadline = t0 + args.seconds
        tasks = [asyncio.create_task(fuzz_client(srv.url, args.seed * 1000 + i, deadline, stats, args, speech))
                 for i in range(args.fuzz_clients)]
        tasks += [asyncio.create_task(good_client(srv.url, deadline, stats, phase, 200 + i))
                  for i in range(args.good_clients)]
        with tqdm(total=args.seconds, unit="s", bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s {postfix}") as bar:
            while not all(t.done() for t in tasks):
                await asyncio.sleep(1.0)
                bar.n = min(args.seconds, time.perf_counter() - t0)
                bar.set_postfix(msgs=stats.messages, errors=sum(stats.codes.values()), lost=len(stats.lost),
                                disturbed=len(stats.disturbed), tracebacks=len(errors.records))
        for t in tasks:
            if t.exception() is not None:
                stats.disturbed.append(f"client task failed: {t.exception()!r}")
        wall = time.perf_counter() - t0
    finally:
        counters = {k: srv.metrics.counter(k) for k in ("omni_protocol_errors_total", "omni_internal_errors_total",
                                                        "omni_responses_total", "omni_sessions_total")}
        await srv.close()
        logging.getLogger().removeHandler(errors)

    res = {
        "what": "protocol fuzzing: hostile sessions beside well-behaved ones, one in-process server",
        "hardware": args.hardware or hardware(),
        "model": "debug OmniModel (random weights)" if args.model == "debug" else "scripted stand-in",
        "command": "python bench/protocol_fuzz.py " + " ".join(sys.argv[1:]),
        "seconds": round(wall, 1),
        "fuzz_clients": args.fuzz_clients,
        "good_clients": args.good_clients,
        "messages_tried": stats.messages,
        "messages_per_second": round(stats.messages / wall, 1),
        "messages_by_kind": dict(stats.by_kind.most_common()),
        "fuzz_sessions": stats.sessions,
        "probes_answered": stats.probes - len(stats.lost),
        "errors_returned": sum(stats.codes.values()),
        "errors_by_code": dict(stats.codes.most_common()),
        "sessions_lost": len(stats.lost),
        "good_turns": stats.good_turns,
        "good_turns_disturbed": len(stats.disturbed),
        "server_tracebacks": len(errors.records),
        "good_turn_ms": {p: {"n": len(v), "p50": pct(v, 50), "p95": pct(v, 95)}
                         for p, v in stats.good_latency.items()},
        "server_counters": counters,
        "lost_examples": stats.lost[:5],
        "disturbed_examples": stats.disturbed[:5],
        "traceback_examples": errors.records[:5],
    }
    rows = [("messages tried", res["messages_tried"]), ("  per second", res["messages_per_second"]),
            ("fuzz sessions", res["fuzz_sessions"]), ("error events returned", res["errors_returned"]),
            ("sessions lost", res["sessions_lost"]), ("good turns", res["good_turns"]),
            ("good turns disturbed", res["good_turns_disturbed"]), ("server tracebacks", res["server_tracebacks"])]
    for p, v in res["good_turn_ms"].items():
        rows.append((f"good turn ms p50/p95 ({p})", f"{v['p50']} / {v['p95']}"))
    width = max(len(r[0]) for r in rows)
    print(f"\nprotocol fuzz, {res['hardware']}, {res['model']}, {res['seconds']} s")
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    print("  error codes: " + ", ".join(f"{k} {v}" for k, v in res["errors_by_code"].items()))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
        print(f"wrote {args.out}")
    ok = not (stats.lost or stats.disturbed or errors.records)
    return 0 if ok else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=180.0, help="how long the fuzz clients run (default 180)")
    p.add_argument("--baseline-seconds", type=float, default=15.0,
                   help="good clients alone before the fuzzing starts, for their latency baseline (default 15)")
    p.add_argument("--fuzz-clients", type=int, default=2, help="concurrent hostile connections (default 2)")
    p.add_argument("--good-clients", type=int, default=1, help="concurrent well-behaved sessions (default 1)")
    p.add_argument("--messages-per-session", type=int, default=40,
                   help="messages a fuzz client sends before it reconnects (default 40)")
    p.add_argument("--probe-every", type=int, default=5,
                   help="send a probe the server must answer after this many messages (default 5)")
    p.add_argument("--probe-timeout", type=float, default=30.0,
                   help="seconds to wait for a probe's answer before the session counts as lost (default 30)")
    p.add_argument("--model", choices=["debug", "scripted"], default="debug",
                   help="debug: OmniModel debug flavor, random weights (real stages); scripted: the tests' "
                        "instant stand-in (default debug)")
    p.add_argument("--max-steps", type=int, default=8, help="server decode-step cap per reply (default 8)")
    p.add_argument("--capacity", type=int, default=2048, help="KV-cache tokens per session (default 2048)")
    p.add_argument("--max-message-bytes", type=int, default=256_000,
                   help="server message size limit; oversized probes use 1.5x it (default 256000)")
    p.add_argument("--no-speech", dest="speech", action="store_false",
                   help="no spoken turns (they need espeak-ng and sox)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the fuzz clients and the model (default 0)")
    p.add_argument("--hardware", help='label for the JSON (default: "<N>-core CPU")')
    p.add_argument("--out", help="write the results JSON here (e.g. bench/results/protocol_fuzz_cpu.json)")
    return asyncio.run(amain(p.parse_args()))


if __name__ == "__main__":
    sys.exit(main())

"""Streaming latency and throughput of the realtime server, speculation on vs off.

Scripted clients stream spoken questions (espeak-ng) in real time followed by
silence, over real websockets to an in-process `OmniServer`, at several
concurrency levels; each level runs with speculative prefill->decode switching
on and off, side by side in the same run (`--spec`), and with each `--prefill-wait-ms` (how
long the engine lets a packet in the middle of a user's turn wait while replies decode,
streaming/engine.py PREFILL_WAIT_S; 0: every packet at the next step). Reported per configuration:

  p50/p95 first audio byte - end-of-turn confirmation   (target <= 50 / 100 ms at 1 session)
  p50/p95 first audio byte - end of user speech          (includes the 600 ms VAD endpoint)
  decode steps/s per session (p50, min) vs the 16.67 steps/s real-time need
  encode+prefill time per 1 s packet (p50/p95)
  the first-audio critical path by component (p50/p95 ms): from the end of user
      speech to the first audio byte sent, as the server measures it
      (streaming/timing.py; /metrics omni_first_audio_path_seconds)

    python bench/streaming.py --flavor a1b --device cuda --dtype bf16 --sessions 1,8,32   # GPU
    python bench/streaming.py ... --sessions 1,8,32,64,128 --turns 4                       # p95 over >= 100 replies
    python bench/streaming.py --flavor debug --device cpu --sessions 1,4                  # this CPU
    python bench/streaming.py ... --spec on --prefill-wait-ms 0,250                        # the packet wait vs none

Writes bench/results/streaming_<tag>.json and .png and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

QUESTIONS = [
    "What color is the sky on a clear day?",
    "How many legs does a spider have?",
    "Tell me something about the moon.",
    "Which way is the red ball moving?",
    "Can you repeat after me: good morning.",
    "What shape is the blue object?",
]
SR = 16000
REALTIME_STEPS = 1000 / 60  # codec frames per second the decoder must sustain


def hardware(device: str) -> str:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return f"1x {torch.cuda.get_device_name(0)}"
    name = platform.processor() or "cpu"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} cores (CPU)"


def make_speech(out_dir: Path) -> list[Path]:
    """Synthesize the questions with espeak-ng + sox (trimmed, 16 kHz mono)."""
    if not (shutil.which("espeak-ng") and shutil.which("sox")):
        raise SystemExit("espeak-ng and sox are needed to make the spoken questions (or pass --speech-dir)")
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, q in enumerate(QUESTIONS):
        raw, path = out_dir / f"q{i}.raw.wav", out_dir / f"q{i}.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(raw), q], check=True)
        subprocess.run(["sox", str(raw), "-r", str(SR), "-c", "1", "-b", "16", str(path), "silence", "1", "0.02",
                        "1%", "reverse", "silence", "1", "0.02", "1%", "reverse"], check=True)
        raw.unlink()
        paths.append(path)
    return paths


def load_speech(speech_dir: Path) -> list[np.ndarray]:
    out = []
    for p in sorted(speech_dir.glob("q*.wav")):
        with wave.open(str(p)) as w:
            if w.getframerate() != SR or w.getnchannels() != 1 or w.getsampwidth() != 2:
                raise SystemExit(f"{p}: expected 16 kHz mono 16-bit WAV")
            out.append(np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768)
    if not out:
        raise SystemExit(f"no q*.wav files in {speech_dir}")
    return out


def build_model(args):
    import torch

    from omni.config import get_omni_config
    from omni.generation import GenerationOptions
    from omni.model import OmniModel
    from omni.realtime import RealtimeOmni

    from streaming.model_loader import DTYPES, pick_decode_mode, pick_dtype, prepare_decode

    torch.manual_seed(0)
    t0 = time.perf_counter()
    dtype = pick_dtype(args.dtype, args.device)  # auto: as `omni serve` picks it
    args.dtype = next(name for name, d in DTYPES.items() if d == dtype)  # reported
    if args.model:
        model = OmniModel.from_pretrained(args.model, device=args.device, dtype=dtype)
    else:
        with torch.device(args.device):  # random init directly on the device (a1b is ~7.6B parameters)
            model = OmniModel(get_omni_config(args.flavor))
        model = model.to(args.device).to_dtype(dtype)  # fp32: a no-op
    mode = pick_decode_mode(args.decode_mode, args.device)
    from omni.turn_end import load_turn_end

    # the checkpoint's end-of-turn head, as `omni serve` loads it (semantic_vad)
    turn_end = load_turn_end(args.model, model.config.llm.hidden_size, args.device) if args.model else None
    run_mode = prepare_decode(model, mode)  # "compiled": the layers compiled, run in graphs on a GPU
    rt = RealtimeOmni(model, max_slots=max(args.sessions), capacity=args.capacity,
                      options=GenerationOptions(max_new_tokens=args.max_steps), decode_mode=run_mode, turn_end=turn_end)
    if run_mode == "graph":  # as `omni serve` does: capture every batch size before the clients come
        rt.warm_up_decode()
    print(f"model: {args.model or args.flavor} on {args.device} ({args.dtype}, decode mode {mode}), built in "
          f"{time.perf_counter() - t0:.1f} s", flush=True)
    return rt


async def one_client(url: str, audios: list[np.ndarray], speculative: bool, delay: float, silence: float,
                     timeout: float) -> list[dict]:
    """One session asking its questions in turn, each after the previous reply is done;
    one metrics record per reply."""
    from streaming.client import RealtimeClient

    td = {"type": "server_vad", "silence_duration_ms": 600,
          "speculative_silence_ms": 200 if speculative else None}
    out = []
    async with RealtimeClient(url) as c:
        await c.configure(turn_detection=td, input_rate=SR, output_rate=24000)
        await asyncio.sleep(delay)
        for audio in audios:
            start, c.t_speech_sent_end = len(c.events), None
            stream = np.concatenate([audio, np.zeros(int(SR * silence), np.float32)])
            await c.stream_audio(stream, SR, realtime=True, speech_end_s=len(audio) / SR)
            reply = await c.wait_response(timeout=timeout, start=start)
            m = dict(reply.server_metrics)
            m["status"] = reply.status
            if reply.t_first_audio is not None and c.t_speech_sent_end is not None:
                m["client_first_audio_after_speech_sent_s"] = reply.t_first_audio - c.t_speech_sent_end
            out.append(m)
    return out


def client_process(url: str, jobs: list[tuple[list[np.ndarray], float]], speculative: bool, silence: float,
                   timeout: float) -> list:
    """A share of the sessions, in a process of its own (`--client-procs`): each session's
    records, or the repr of what ended it."""

    async def go():
        return await asyncio.gather(*[one_client(url, audios, speculative, delay, silence, timeout)
                                      for audios, delay in jobs], return_exceptions=True)

    return [r if isinstance(r, list) else repr(r) for r in asyncio.run(go())]


async def run_clients(url: str, jobs: list[tuple[list[np.ndarray], float]], speculative: bool, args) -> list:
    """Every session's records (or what ended it): in this process, or spread over
    `args.client_procs` processes so that the clients' own work (synthesis pacing, JSON,
    base64) does not share the server's interpreter, as with real users."""
    if args.client_procs <= 0:
        return await asyncio.gather(*[one_client(url, audios, speculative, delay, args.silence, args.timeout)
                                      for audios, delay in jobs], return_exceptions=True)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    procs = min(args.client_procs, len(jobs))
    loop = asyncio.get_running_loop()
    with ProcessPoolExecutor(procs, mp_context=multiprocessing.get_context("spawn")) as ex:
        parts = await asyncio.gather(*[loop.run_in_executor(ex, client_process, url, jobs[k::procs], speculative,
                                                            args.silence, args.timeout) for k in range(procs)])
    return [r for part in parts for r in part]


async def run_config(model, n: int, speculative: bool, speech: list[np.ndarray], args,
                     wait_ms: float | None = None, input_stage: str = "thread", switch_ms: float = 5.0) -> dict:
    from streaming.server import OmniServer, ServerConfig
    from streaming.timing import path_stats

    cfg = ServerConfig(port=0, max_sessions=n, max_steps=args.max_steps, input_stage=input_stage,
                       switch_interval_ms=switch_ms)
    if wait_ms is not None:
        cfg.prefill_wait_s = wait_ms / 1000
    srv = await OmniServer(model, cfg).start()
    rng = random.Random(n * 2 + speculative)
    jobs = [([speech[(i + k) % len(speech)] for k in range(args.turns)], rng.uniform(0, args.spread))
            for i in range(n)]
    try:
        sessions = await run_clients(srv.url, jobs, speculative, args)
    finally:
        prefill = srv.metrics.samples("omni_prefill_packet_seconds")
        steps = srv.metrics.samples("omni_decode_step_seconds")
        path = path_stats(srv.metrics)
        rollbacks = srv.metrics.counter("omni_rollbacks_total")
        await srv.close()
    ok = [r for rs in sessions if isinstance(rs, list) for r in rs]
    failed = [repr(r) for r in sessions if not isinstance(r, list)]

    def pct(key: str, q: float) -> float | None:
        vals = [r[key] for r in ok if r.get(key) is not None]
        return float(np.percentile(vals, q)) * 1000 if vals else None

    rates = [r["decode_steps_per_s"] for r in ok if r.get("decode_steps_per_s")]
    return {
        "sessions": n, "turns": args.turns, "speculative": speculative, "prefill_wait_ms": cfg.prefill_wait_s * 1000,
        "input_stage": input_stage, "switch_interval_ms": switch_ms,
        "responses": len(ok), "failed": failed,
        "first_audio_after_confirm_ms": {"p50": pct("first_audio_after_confirm_s", 50),
                                         "p95": pct("first_audio_after_confirm_s", 95)},
        "first_audio_after_speech_end_ms": {"p50": pct("first_audio_after_speech_end_s", 50),
                                            "p95": pct("first_audio_after_speech_end_s", 95)},
        "client_first_audio_after_speech_sent_ms": {"p50": pct("client_first_audio_after_speech_sent_s", 50),
                                                    "p95": pct("client_first_audio_after_speech_sent_s", 95)},
        "decode_steps_per_s_per_session": {"p50": float(np.median(rates)) if rates else None,
                                           "min": float(min(rates)) if rates else None,
                                           "realtime_need": REALTIME_STEPS},
        "all_sessions_realtime": bool(rates) and min(rates) >= REALTIME_STEPS,
        "prefill_per_packet_ms": {"p50": float(np.percentile(prefill, 50)) * 1000 if prefill else None,
                                  "p95": float(np.percentile(prefill, 95)) * 1000 if prefill else None},
        "decode_step_ms_p50": float(np.percentile(steps, 50)) * 1000 if steps else None,
        "rollbacks": rollbacks,
        "response_steps_p50": float(np.median([r["steps"] for r in ok if "steps" in r])) if ok else None,
        "first_audio_path_ms": path,
    }


def fmt(v: float | None, digits: int = 0) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def print_table(rows: list[dict], hw: str) -> None:
    print(f"\nstreaming benchmark on {hw}")
    head = ("sessions", "spec", "wait ms", "input", "switch ms", "n", "1st audio-confirm p50/p95 ms", "1st audio-speech end p50/p95 ms",
            "steps/s/session p50 (min)", "realtime", "prefill/packet p50/p95 ms")
    print(" | ".join(head))
    for r in rows:
        fa, fe = r["first_audio_after_confirm_ms"], r["first_audio_after_speech_end_ms"]
        ds, pf = r["decode_steps_per_s_per_session"], r["prefill_per_packet_ms"]
        print(" | ".join([str(r["sessions"]), "on" if r["speculative"] else "off", fmt(wait_of(r)), stage_of(r),
                          fmt(switch_of(r), 1), str(r["responses"]),
                          f"{fmt(fa['p50'])}/{fmt(fa['p95'])}", f"{fmt(fe['p50'])}/{fmt(fe['p95'])}",
                          f"{fmt(ds['p50'], 1)} ({fmt(ds['min'], 1)})", "yes" if r["all_sessions_realtime"] else "NO",
                          f"{fmt(pf['p50'], 1)}/{fmt(pf['p95'], 1)}"]))
    print("\nfirst-audio critical path (end of speech -> first audio byte sent), p50/p95 ms per component")
    for r in rows:
        path = r.get("first_audio_path_ms") or {}
        parts = [f"{k} {fmt(v['p50'], 1)}/{fmt(v['p95'], 1)}" for k, v in path.items()
                 if k == "total" or (v["p95"] or 0) >= 0.05]  # components that took any time
        print(f"  {label(r)}: " + ", ".join(parts))
    by = {key(r): r for r in rows}
    p50 = lambda r: r["first_audio_after_speech_end_ms"]["p50"] if r else None
    for k in sorted(by):
        n, spec, wait, stage, switch = k
        this, where = by[k], f"{n} sessions"
        # each setting against its baseline, the others as in this row
        for name, base_key, text in (
                ("speculation", (n, False, wait, stage, switch), "speculation on/off"),
                ("wait", (n, spec, 0.0, stage, switch), f"wait {fmt(wait)} / 0 ms"),
                ("input", (n, spec, wait, "thread", switch), "input process / thread"),
                ("switch", (n, spec, wait, stage, 5.0), f"switch interval {fmt(switch, 1)} / 5 ms")):
            base = by.get(base_key)
            if base is not this and base is not None and p50(base) and p50(this) and \
                    {"speculation": spec, "wait": wait, "input": stage == "process", "switch": switch != 5.0}[name]:
                print(f"  {label(this)}: first audio after end of speech, {text} = {p50(this) / p50(base):.2f}x")


def wait_of(r: dict) -> float:
    """A row's prefill wait (ms); rows of results written before it was a setting had none: 0."""
    return float(r.get("prefill_wait_ms", 0.0))


def switch_of(r: dict) -> float:
    """A row's thread switch interval (ms); rows written before it was a setting ran at Python's 5 ms."""
    return float(r.get("switch_interval_ms") or 5.0)


def key(r: dict) -> tuple:
    return (r["sessions"], r["speculative"], wait_of(r), stage_of(r), switch_of(r))


def stage_of(r: dict) -> str:
    """A row's input stage; rows of results written before it was a setting ran it on a thread."""
    return r.get("input_stage", "thread")


def label(r: dict) -> str:
    return (f"{r['sessions']} sessions, spec {'on' if r['speculative'] else 'off'}, wait {fmt(wait_of(r))} ms, "
            f"input {stage_of(r)}, switch {fmt(switch_of(r), 1)} ms")


def breakdown(rows: list[dict], ax) -> None:
    """Stacked p50 of the first-audio path's components, one bar per level and speculation mode."""
    import matplotlib.pyplot as plt

    from streaming.timing import COMPONENTS

    rs = [r for r in sorted(rows, key=lambda r: (r["sessions"], not r["speculative"], *key(r)[2:]))
          if r.get("first_audio_path_ms")]
    waits = len({wait_of(r) for r in rs}) > 1
    stages = len({stage_of(r) for r in rs}) > 1
    switches = len({switch_of(r) for r in rs}) > 1
    names = [c for c in (*COMPONENTS, "other")
             if any((r["first_audio_path_ms"][c]["p50"] or 0) >= 5 for r in rs)]  # parts worth a colour
    x = np.arange(len(rs))
    bottom = np.zeros(len(rs))
    colors = plt.get_cmap("tab20").colors
    for i, name in enumerate(names):
        vals = np.array([r["first_audio_path_ms"][name]["p50"] or 0.0 for r in rs])
        ax.bar(x, vals, bottom=bottom, color=colors[i % len(colors)], label=name, width=0.7)
        bottom += vals
    ax.set_xticks(x, [f"{r['sessions']}{'' if r['speculative'] else ' off'}{f' w{wait_of(r):.0f}' if waits else ''}"
                      f"{' ' + stage_of(r)[0] if stages else ''}{f' s{switch_of(r):g}' if switches else ''}"
                      for r in rs], fontsize=7)
    ax.set(xlabel="sessions (speculation on; 'off': off; wN: packet wait N ms; p/t: input process/thread; "
                  "sN: switch interval N ms)",
           ylabel="ms (p50 of each part)",
           title="end of speech -> first audio byte, by part")
    ax.legend(fontsize=6, ncol=2)
    ax.grid(alpha=0.3, axis="y")


def report(path: Path) -> int:
    """Table and plot again from a results JSON (e.g. one a time limit cut before the plot)."""
    data = json.loads(path.read_text())
    print_table(data["results"], data["hardware"])
    plot(data["results"], data["hardware"], path.with_suffix(".png"))
    print(f"wrote {path.with_suffix('.png')}")
    return 0


def plot(rows: list[dict], hw: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
    waits = sorted({wait_of(r) for r in rows})
    stages = sorted({stage_of(r) for r in rows})
    switches = sorted({switch_of(r) for r in rows})
    for spec, style in ((True, "-o"), (False, "--s")):
        for wait, stage, switch in [(w, st, sw) for w in waits for st in stages for sw in switches]:
            rs = sorted([r for r in rows if key(r)[1:] == (spec, wait, stage, switch)], key=lambda r: r["sessions"])
            if not rs:
                continue
            n = [r["sessions"] for r in rs]
            name = (f"spec {'on' if spec else 'off'}" + (f" wait {wait:.0f}" if len(waits) > 1 else "")
                    + (f" input {stage}" if len(stages) > 1 else "")
                    + (f" switch {switch:g}" if len(switches) > 1 else ""))
            for q in ("p50", "p95"):
                axes[0].plot(n, [r["first_audio_after_confirm_ms"][q] or np.nan for r in rs], style, label=f"{name} {q}")
            axes[1].plot(n, [r["decode_steps_per_s_per_session"]["min"] or np.nan for r in rs], style,
                         label=f"{name} (min over sessions)")
    axes[0].set(xlabel="concurrent sessions", ylabel="ms", title="first audio after end-of-turn confirmation",
                xscale="log")
    axes[1].axhline(REALTIME_STEPS, color="red", lw=1, label="real time (16.67)")
    axes[1].set(xlabel="concurrent sessions", ylabel="decode steps / s / session", title="decode rate",
                xscale="log")
    breakdown(rows, axes[2])
    ticks = sorted({r["sessions"] for r in rows})
    for ax in axes[:2]:
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.suptitle(hw, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


async def amain(args) -> int:
    speech_dir = Path(args.speech_dir) if args.speech_dir else Path(tempfile.mkdtemp()) / "speech"
    if not list(speech_dir.glob("q*.wav")):
        make_speech(speech_dir)
    speech = load_speech(speech_dir)
    if args.make_speech_only:
        print(f"wrote {len(speech)} questions to {speech_dir}")
        return 0
    model = build_model(args)
    hw = hardware(args.device)
    # warm-up (kernels, allocator), not recorded
    await run_config(model, 1, True, speech[:1], argparse.Namespace(**{**vars(args), "max_steps": 8}))
    rows = []
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tag = args.tag or f"{args.flavor}_{'gpu' if args.device.startswith('cuda') else 'cpu'}"
    data = {"hardware": hw, "model": args.model or args.flavor, "dtype": args.dtype, "max_steps": args.max_steps,
            "decode_mode": model.model.decode_mode + (" (compiled layers)" if model.model.compiled else ""),
            "silence_duration_ms": 600, "speculative_silence_ms": 200, "transport": "websockets (in-process server)",
            "clients": f"{args.client_procs} processes of their own" if args.client_procs > 0 else "in the server's process",
            "command": " ".join(sys.argv), "results": rows}
    for n in args.sessions:
        for spec in args.spec:
            for wait in args.prefill_wait_ms:
                for stage in args.input_stage:
                    for switch in args.switch_interval_ms:
                        t0 = time.perf_counter()
                        rows.append(await run_config(model, n, spec, speech, args, wait, stage, switch))
                        print(f"  {label(rows[-1])}: {time.perf_counter() - t0:.1f} s", flush=True)
            data["load_average_after"] = os.getloadavg()
            (out / f"streaming_{tag}.json").write_text(json.dumps(data, indent=2))  # partial results survive
    print_table(rows, hw)
    plot(rows, hw, out / f"streaming_{tag}.png")
    print(f"wrote {out / f'streaming_{tag}.json'} and .png")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="checkpoint directory (default: random weights of --flavor)")
    p.add_argument("--flavor", default="debug", help="omni flavor without --model (a1b on a GPU)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                   help="compute dtype; auto (default, as omni serve) = bf16 on CUDA, fp32 on CPU")
    p.add_argument("--decode-mode", default="auto", choices=["auto", "eager", "static", "graph", "compiled"],
                   help="decode step mode (auto: graph on CUDA, eager on CPU)")
    p.add_argument("--sessions", default="1,4", help="comma-separated concurrency levels (e.g. 1,8,32)")
    p.add_argument("--max-steps", type=int, default=50, help="decode steps per reply (60 ms of speech each)")
    p.add_argument("--capacity", type=int, default=2048, help="KV-cache tokens per session")
    p.add_argument("--turns", type=int, default=1,
                   help="questions per session, each after the previous reply (p95 over sessions x turns)")
    p.add_argument("--spec", default="on,off", help="speculation modes to run: on, off or on,off (default)")
    p.add_argument("--prefill-wait-ms", default=None,
                   help="comma-separated packet waits to run (ms; default: the engine's, "
                        "streaming/engine.py PREFILL_WAIT_S); e.g. 0,250 side by side")
    p.add_argument("--input-stage", default="thread",
                   help="where the server conditions input audio: thread (its default), process, or "
                        "process,thread side by side")
    p.add_argument("--switch-interval-ms", default="5",
                   help="the interpreter's thread switch interval while serving (ms; default 5: Python's own, "
                        "omni serve's), e.g. 5,0.5 for a shorter one against it, side by side")
    p.add_argument("--silence", type=float, default=1.2, help="silence after each question (s)")
    p.add_argument("--spread", type=float, default=1.0, help="clients start at random offsets in [0, spread) s")
    p.add_argument("--timeout", type=float, default=120.0, help="per-response timeout (s)")
    p.add_argument("--client-procs", type=int, default=0,
                   help="run the clients in this many processes of their own (0: in the server's process)")
    p.add_argument("--speech-dir", help="folder of q*.wav questions (made with espeak-ng if empty)")
    p.add_argument("--make-speech-only", action="store_true", help="only synthesize the questions")
    p.add_argument("--report", metavar="JSON", help="only print the table and redraw the plot of a results file")
    p.add_argument("--out-dir", default=str(ROOT / "bench" / "results"), help="directory for the JSON and plot")
    p.add_argument("--tag", help="result file tag (default: flavor_device)")
    args = p.parse_args()
    if args.report:
        return report(Path(args.report))
    args.sessions = [int(x) for x in args.sessions.split(",")]
    modes = {"on": True, "off": False}
    if not args.spec or any(x not in modes for x in args.spec.split(",")):
        p.error("--spec takes on, off or on,off")
    args.spec = [modes[x] for x in args.spec.split(",")]
    args.input_stage = args.input_stage.split(",")
    try:
        args.switch_interval_ms = [float(x) for x in args.switch_interval_ms.split(",")]
    except ValueError:
        p.error(f"--switch-interval-ms takes comma-separated milliseconds, got {args.switch_interval_ms!r}")
    if any(x <= 0 for x in args.switch_interval_ms):
        p.error("--switch-interval-ms values must be > 0")
    if bad := [x for x in args.input_stage if x not in ("process", "thread")]:
        p.error(f"--input-stage takes process, thread or process,thread, got {', '.join(bad)}")
    if args.prefill_wait_ms is None:
        from streaming.engine import PREFILL_WAIT_S

        args.prefill_wait_ms = [PREFILL_WAIT_S * 1000]
    else:
        try:
            args.prefill_wait_ms = [float(x) for x in args.prefill_wait_ms.split(",")]
        except ValueError:
            p.error(f"--prefill-wait-ms takes comma-separated milliseconds, got {args.prefill_wait_ms!r}")
        if any(w < 0 for w in args.prefill_wait_ms):
            p.error("--prefill-wait-ms values must be >= 0")
    if args.turns < 1:
        p.error("--turns must be >= 1")
    return asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())

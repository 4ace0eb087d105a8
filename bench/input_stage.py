"""Stage 1 alone: how many sessions' microphones the input stage keeps up with.

The realtime server conditions every session's audio in one place
(`streaming/input.py`: resampling to 16 kHz, then silero-vad batched over the
requests that queued up while it worked), by default on a thread of the serving
process, or in a process of its own (`streaming/input_process.py`). Here N
simulated microphones send 40 ms chunks of 24 kHz audio (the OpenAI Realtime
default rate) in real time, each paced by the wall clock, from one asyncio event
loop as the server's sessions do, and await the stage's result, as `Session`
does. No model, no websockets: only the stage the streaming benchmark's `input`
component waits on.

`--load` runs each level again beside a thread standing for the serving process's
other work (`load_step`): `launches` (tiny torch calls, each handing the GIL over,
as a launch-bound engine thread) or `python` (~0.5 ms Python stretches, as
bookkeeping for many sessions). A stage on a thread waits for the GIL at every
torch call of its rounds; one in its own process does not, but its results still
reach the event loop through the GIL. The load's progress beside the stage, as a
share of its progress alone, says what the stage leaves to the rest.

Per level (sessions, variant, load): the latency of a chunk from its scheduled
send to its result (p50 / p95 / max: queueing + resampling + VAD, and the event
loop's own lag), the stage's busy share of one core, the mean batch (requests per
network round), and whether it keeps up (no chunk later than 1 s, the latency not
growing from the first half of the run to the second).

    python bench/input_stage.py                                   # 1,8,32,64,128 sessions, 8 s each
    python bench/input_stage.py --sessions 8,32,64 --load none,python --variants process,thread
    python bench/input_stage.py --sessions 1,4 --seconds 2        # smoke run

Variants (`--variants`, side by side, level by level): `process`, `thread` (the
server's default), and the thread stage with its two earlier improvements taken
away (`no-gathering`; `before`: also the resampler's per-chunk index arithmetic).

Writes bench/results/input_stage_<tag>.json and .png and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

IN_RATE = 24000
CHUNK_S = 0.04
KEEP_UP_MS = 1000.0  # a chunk later than this means the stage fell behind


def indexed_resampler():
    """The resampler as it was before its per-phase kernels (the baseline): every chunk's outputs
    computed with [outputs, width] index arithmetic and gathers. Same outputs."""
    from streaming.protocol import StreamingResampler

    class IndexedResampler(StreamingResampler):
        def _outputs(self, n0: int, n1: int, last_input: int) -> np.ndarray:
            up, down, c = self.up, self.down, self.center
            pos = np.arange(n0, n1, dtype=np.int64) * down
            lo = -((c - pos) // up)
            idx = lo[:, None] + np.arange(self.width)[None, :]  # [N, W] input indices
            tap = pos[:, None] - idx * up + c
            valid = (tap >= 0) & (tap < len(self.h)) & (idx <= last_input)
            tap = np.where(valid, tap, 0)
            rel = np.clip(idx - self.buf_start, 0, len(self.buf) - 1)
            return (self.buf[rel] * self.h[tap] * valid).sum(axis=1)

    return IndexedResampler


def server_resampler():
    from streaming.protocol import StreamingResampler

    return StreamingResampler


RESAMPLERS = {"phase kernels": server_resampler, "index arithmetic (before)": indexed_resampler}
# name -> (where the stage runs, resampler, gather the requests under load)
VARIANTS = {"process": ("process", "phase kernels", True), "thread": ("thread", "phase kernels", True),
            "no-gathering": ("thread", "phase kernels", False),
            "before": ("thread", "index arithmetic (before)", False)}


def load_step(kind: str):
    """One unit of a serving process's other work, run in a loop on a thread beside the stage:
    `launches`: 20 tiny torch calls (each hands the GIL over, as a kernel launch does) and ~0.1 ms
    of Python between them, as a launch-bound engine thread; `python`: ~0.5 ms of Python without
    a break, then one torch call, as bookkeeping for many sessions at once (an engine's or the
    event loop's)."""
    import torch

    x = torch.zeros(8)
    py = {"launches": 2000, "python": 10000}[kind]
    calls = {"launches": 20, "python": 1}[kind]

    def step() -> None:
        nonlocal x
        for _ in range(calls):
            x = x.add(1)
        d: dict[int, int] = {}
        for i in range(py):
            d[i % 97] = i
    return step


LOADS = ("none", "launches", "python")


def run_load(kind: str, stop, done: list) -> None:
    step = load_step(kind)
    while not stop.is_set():
        step()
        done[0] += 1


def load_alone(kind: str, seconds: float = 2.0) -> float:
    """Steps per second of the load with nothing beside it (the reference for its share)."""
    import threading

    stop, done = threading.Event(), [0]
    th = threading.Thread(target=run_load, args=(kind, stop, done), daemon=True)
    th.start()
    time.sleep(seconds)
    stop.set()
    th.join()
    return done[0] / seconds


async def run_level(n: int, seconds: float, seed: int, variant: str = "process", load: str = "none",
                    load_rate: float | None = None) -> dict:
    import threading

    from streaming.input import GATHER_S, InputState, InputWorker
    from streaming.input_process import InputProcess
    from streaming.metrics import Metrics
    from streaming.timing import QUEUE

    where, resampler, gather = VARIANTS[variant]
    make = RESAMPLERS[resampler]()

    metrics = Metrics()
    stage_cls = InputProcess if where == "process" else InputWorker
    worker = stage_cls(metrics=metrics, gather_s=GATHER_S if gather else 0.0)
    await worker.ready()
    rng = np.random.default_rng(seed)
    chunk = int(IN_RATE * CHUNK_S)
    # speech-level noise: silero's cost does not depend on what it hears
    audio = (0.05 * rng.standard_normal((n, chunk * 8))).astype(np.float32)
    lat: list[list[tuple[float, float]]] = [[] for _ in range(n)]  # (scheduled time, latency s)
    stop, done = threading.Event(), [0]
    if load != "none":
        threading.Thread(target=run_load, args=(load, stop, done), daemon=True).start()
    t_start = time.perf_counter() + 0.2

    async def mic(i: int) -> None:
        # the thread stage uses the state's resampler as given (the baseline's); the process keeps its own
        state = InputState(resampler=make(IN_RATE, 16000))
        offset = float(rng.uniform(0, CHUNK_S))  # microphones are not in phase
        k = 0
        while True:
            due = t_start + offset + k * CHUNK_S
            if due - t_start > seconds:
                return
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            part = audio[i, (k % 8) * chunk:(k % 8 + 1) * chunk]
            await worker.process(state, IN_RATE, part, True)
            lat[i].append((due - t_start, time.perf_counter() - due))
            k += 1

    t0 = time.perf_counter()
    done0 = done[0]
    await asyncio.gather(*[mic(i) for i in range(n)])
    wall = time.perf_counter() - t0
    load_steps = (done[0] - done0) / wall
    stop.set()
    worker.stop()
    flat = np.array([v for rows in lat for v in rows])
    ms = flat[:, 1] * 1000
    first, second = ms[flat[:, 0] < seconds / 2], ms[flat[:, 0] >= seconds / 2]
    queued = metrics.samples(QUEUE, {"stage": "input"})
    rounds, sizes = metrics.samples("omni_input_round_seconds"), metrics.samples("omni_input_batch_size")
    growing = len(first) and len(second) and np.percentile(second, 50) > 2 * np.percentile(first, 50) + 20
    return {
        "sessions": n, "variant": variant, "stage": where, "load": load, "resampler": resampler,
        "gather_ms": GATHER_S * 1000 if gather else 0.0, "chunks": int(len(ms)), "seconds": seconds,
        "latency_ms": {"p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95)),
                       "max": float(ms.max())},
        "latency_ms_halves_p50": [float(np.percentile(first, 50)), float(np.percentile(second, 50))],
        "worker_queue_ms_p50": float(np.percentile(queued, 50)) * 1000 if queued else None,
        "worker_busy_share": float(sum(rounds) / wall) if rounds else None,
        "mean_batch": float(np.mean(sizes)) if sizes else None,
        "keeps_up": bool(ms.max() < KEEP_UP_MS and not growing),
        # the load's progress beside the stage, as a share of its progress alone: what the stage
        # (and the microphones' event loop) left to the serving process's other threads
        "load_share": load_steps / load_rate if load != "none" and load_rate else None,
    }


def print_table(rows: list[dict], hw: str) -> None:
    print(f"\ninput stage (resample 24 -> 16 kHz + silero-vad) on {hw}")
    print("sessions | variant | load | chunks | latency p50 / p95 / max ms | stage busy (one core) | mean batch | "
          "keeps up | load's progress vs alone")
    for r in rows:
        lt = r["latency_ms"]
        print(f"{r['sessions']} | {r['variant']} | {r.get('load', 'none')} | {r['chunks']} | "
              f"{lt['p50']:.1f} / {lt['p95']:.1f} / {lt['max']:.1f} | "
              f"{100 * (r['worker_busy_share'] or 0):.0f} % | {r['mean_batch'] or 0:.1f} | "
              f"{'yes' if r['keeps_up'] else 'NO'} | "
              f"{'-' if r.get('load_share') is None else format(100 * r['load_share'], '.0f') + ' %'}")


def plot(rows: list[dict], hw: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    colors = dict(zip(VARIANTS, ("tab:blue", "tab:orange", "tab:green", "tab:red")))
    for name in VARIANTS:
        for load, marker in zip(LOADS, ("o", "s", "^")):
            rs = [r for r in rows if r["variant"] == name and r.get("load", "none") == load]
            if not rs:
                continue
            n = [r["sessions"] for r in rs]
            label = f"{name}, load {load}"
            for q, style in (("p50", "-"), ("p95", ":")):
                axes[0].plot(n, [r["latency_ms"][q] for r in rs], style + marker, color=colors[name],
                             label=f"{label} {q}")
            axes[1].plot(n, [100 * (r["worker_busy_share"] or 0) for r in rs], "-" + marker, color=colors[name],
                         label=label)
    axes[0].set(xlabel="sessions", ylabel="ms", title="chunk: scheduled send -> VAD result", xscale="log", yscale="log")
    axes[1].set(xlabel="sessions", ylabel="% of one core", title="input stage busy (its rounds)", xscale="log")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.suptitle(f"input stage on {hw} (loads: a thread of other work beside it, bench/input_stage.py load_step)",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


async def amain(args) -> int:
    from bench.streaming import hardware

    hw = hardware("cpu")
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if args.switch_interval_ms:
        sys.setswitchinterval(args.switch_interval_ms / 1000)  # for this process's threads (not the child's)
    data = {"hardware": hw, "input_rate": IN_RATE, "chunk_ms": CHUNK_S * 1000, "command": " ".join(sys.argv),
            "switch_interval_ms": sys.getswitchinterval() * 1000, "results": []}
    for name in {VARIANTS[v][0]: v for v in args.variants}.values():
        await run_level(1, 1.0, 0, name)  # warm-up (silero's first calls), not recorded
    from tqdm import tqdm

    data["load_steps_per_s_alone"] = rates = {k: load_alone(k) for k in args.load if k != "none"}
    for n in tqdm(args.sessions, desc="levels", unit="level", file=sys.stdout):
        for load in args.load:
            for name in args.variants:  # side by side, level by level
                data["results"].append(await run_level(n, args.seconds, n, name, load, rates.get(load)))
        data["load_average_after"] = os.getloadavg()
        (out / f"input_stage_{args.tag}.json").write_text(json.dumps(data, indent=2))
    print_table(data["results"], hw)
    plot(data["results"], hw, out / f"input_stage_{args.tag}.png")
    print(f"wrote {out / f'input_stage_{args.tag}.json'} and .png")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sessions", default="1,8,32,64,128", help="comma-separated numbers of microphones")
    p.add_argument("--seconds", type=float, default=8.0, help="seconds of audio per level (default 8)")
    p.add_argument("--variants", default="process,thread",
                   help=f"comma-separated, side by side: {', '.join(VARIANTS)} (default process,thread)")
    p.add_argument("--load", default="none,launches,python",
                   help="comma-separated loads on a thread beside the stage: none, launches (tiny torch calls, "
                        "as a launch-bound engine), python (long Python stretches); default all three")
    p.add_argument("--switch-interval-ms", type=float, default=None,
                   help="the interpreter's thread switch interval (sys.setswitchinterval; default Python's, 5 ms): "
                        "how long a thread waiting for the GIL waits before it asks for it")
    p.add_argument("--out-dir", default=str(ROOT / "bench" / "results"), help="directory for the JSON and plot")
    p.add_argument("--tag", default="cpu", help="result file tag (default cpu)")
    args = p.parse_args(argv)
    try:
        args.sessions = [int(x) for x in args.sessions.split(",")]
    except ValueError:
        p.error(f"--sessions takes comma-separated counts, got {args.sessions!r}")
    if any(n < 1 for n in args.sessions) or args.seconds <= 0:
        p.error("--sessions counts must be >= 1 and --seconds > 0")
    args.variants, args.load = args.variants.split(","), args.load.split(",")
    if bad := [v for v in args.variants if v not in VARIANTS] + [x for x in args.load if x not in LOADS]:
        p.error(f"unknown variant or load: {', '.join(bad)} (variants: {', '.join(VARIANTS)}; loads: {', '.join(LOADS)})")
    return asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())

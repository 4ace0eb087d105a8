"""Stage 1 alone: how many sessions' microphones one input thread keeps up with.

The realtime server conditions every session's audio on one thread
(`streaming/input.py` `InputWorker`: resampling to 16 kHz, then silero-vad batched
over the requests that queued up while it worked). Here N simulated microphones
send 40 ms chunks of 24 kHz audio (the OpenAI Realtime default rate) in real time,
each paced by the wall clock, from one asyncio event loop as the server's
sessions do, and await the worker's result, as `Session` does. No model, no
websockets: only the stage the streaming benchmark's `input` component waits on.

Per level (sessions): the latency of a chunk from its scheduled send to its
result (p50 / p95 / max: queueing + resampling + VAD, and the event loop's own
lag), the worker's busy share of one core, the mean batch (requests per
network round), and whether it keeps up (no chunk later than 1 s, the latency
not growing from the first half of the run to the second).

    python bench/input_stage.py                                   # 1,8,32,64,128 sessions, 8 s each
    python bench/input_stage.py --sessions 1,4 --seconds 2        # smoke run

Each level runs side by side as the server has it, without gathering requests under load
(streaming/input.py GATHER_S), and as before both that and the resampler's per-phase kernels
(`--no-baseline`: the server's only).

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
# the server's input stage, then each of its two improvements taken away in turn:
# name -> (resampler, gather the requests under load)
VARIANTS = {"server": ("phase kernels", True), "no gathering": ("phase kernels", False),
            "before (index arithmetic, no gathering)": ("index arithmetic (before)", False)}


async def run_level(n: int, seconds: float, seed: int, variant: str = "server") -> dict:
    from streaming.input import GATHER_S, InputState, InputWorker
    from streaming.metrics import Metrics
    from streaming.timing import QUEUE

    resampler, gather = VARIANTS[variant]
    make = RESAMPLERS[resampler]()

    metrics = Metrics()
    worker = InputWorker(metrics=metrics, gather_s=GATHER_S if gather else 0.0)
    rng = np.random.default_rng(seed)
    chunk = int(IN_RATE * CHUNK_S)
    # speech-level noise: silero's cost does not depend on what it hears
    audio = (0.05 * rng.standard_normal((n, chunk * 8))).astype(np.float32)
    lat: list[list[tuple[float, float]]] = [[] for _ in range(n)]  # (scheduled time, latency s)
    t_start = time.perf_counter() + 0.2

    async def mic(i: int) -> None:
        state, res = InputState(), make(IN_RATE, 16000)
        offset = float(rng.uniform(0, CHUNK_S))  # microphones are not in phase
        k = 0
        while True:
            due = t_start + offset + k * CHUNK_S
            if due - t_start > seconds:
                return
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            part = audio[i, (k % 8) * chunk:(k % 8 + 1) * chunk]
            await worker.process(state, res, part, True)
            lat[i].append((due - t_start, time.perf_counter() - due))
            k += 1

    t0 = time.perf_counter()
    await asyncio.gather(*[mic(i) for i in range(n)])
    wall = time.perf_counter() - t0
    worker.stop()
    flat = np.array([v for rows in lat for v in rows])
    ms = flat[:, 1] * 1000
    first, second = ms[flat[:, 0] < seconds / 2], ms[flat[:, 0] >= seconds / 2]
    queued = metrics.samples(QUEUE, {"stage": "input"})
    rounds, sizes = metrics.samples("omni_input_round_seconds"), metrics.samples("omni_input_batch_size")
    growing = len(first) and len(second) and np.percentile(second, 50) > 2 * np.percentile(first, 50) + 20
    return {
        "sessions": n, "variant": variant, "resampler": resampler, "gather_ms": GATHER_S * 1000 if gather else 0.0,
        "chunks": int(len(ms)), "seconds": seconds,
        "latency_ms": {"p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95)),
                       "max": float(ms.max())},
        "latency_ms_halves_p50": [float(np.percentile(first, 50)), float(np.percentile(second, 50))],
        "worker_queue_ms_p50": float(np.percentile(queued, 50)) * 1000 if queued else None,
        "worker_busy_share": float(sum(rounds) / wall) if rounds else None,
        "mean_batch": float(np.mean(sizes)) if sizes else None,
        "keeps_up": bool(ms.max() < KEEP_UP_MS and not growing),
    }


def print_table(rows: list[dict], hw: str) -> None:
    print(f"\ninput stage (resample 24 -> 16 kHz + silero-vad, one thread) on {hw}")
    print("sessions | variant | chunks | latency p50 / p95 / max ms | worker busy (one core) | mean batch | keeps up")
    for r in rows:
        lt = r["latency_ms"]
        print(f"{r['sessions']} | {r['variant']} | {r['chunks']} | {lt['p50']:.1f} / {lt['p95']:.1f} / {lt['max']:.1f} | "
              f"{100 * (r['worker_busy_share'] or 0):.0f} % | {r['mean_batch'] or 0:.1f} | "
              f"{'yes' if r['keeps_up'] else 'NO'}")


def plot(rows: list[dict], hw: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, color in zip(VARIANTS, ("tab:blue", "tab:green", "tab:red")):
        rs = [r for r in rows if r["variant"] == name]
        if not rs:
            continue
        n = [r["sessions"] for r in rs]
        for q, style in (("p50", "-o"), ("p95", "--s")):
            axes[0].plot(n, [r["latency_ms"][q] for r in rs], style, color=color, label=f"{name} {q}")
        axes[1].plot(n, [100 * (r["worker_busy_share"] or 0) for r in rs], "-o", color=color, label=name)
    axes[0].set(xlabel="sessions", ylabel="ms", title="chunk: scheduled send -> VAD result", xscale="log", yscale="log")
    axes[0].grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    axes[1].set(xlabel="sessions", ylabel="% of one core", title="input thread busy", xscale="log")
    axes[1].legend(fontsize=7)
    axes[1].grid(alpha=0.3)
    fig.suptitle(f"input stage on {hw}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


async def amain(args) -> int:
    from bench.streaming import hardware

    hw = hardware("cpu")
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = {"hardware": hw, "input_rate": IN_RATE, "chunk_ms": CHUNK_S * 1000, "command": " ".join(sys.argv),
            "results": []}
    await run_level(1, 1.0, 0)  # warm-up (silero's first calls), not recorded
    from tqdm import tqdm

    names = list(VARIANTS) if args.baseline else ["server"]
    for n in tqdm(args.sessions, desc="levels", unit="level", file=sys.stdout):
        for name in names:  # side by side, level by level
            data["results"].append(await run_level(n, args.seconds, n, name))
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
    p.add_argument("--no-baseline", dest="baseline", action="store_false",
                   help="only the server's input stage (default: also without gathering, and as before both)")
    p.add_argument("--out-dir", default=str(ROOT / "bench" / "results"), help="directory for the JSON and plot")
    p.add_argument("--tag", default="cpu", help="result file tag (default cpu)")
    args = p.parse_args(argv)
    try:
        args.sessions = [int(x) for x in args.sessions.split(",")]
    except ValueError:
        p.error(f"--sessions takes comma-separated counts, got {args.sessions!r}")
    if any(n < 1 for n in args.sessions) or args.seconds <= 0:
        p.error("--sessions counts must be >= 1 and --seconds > 0")
    return asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())

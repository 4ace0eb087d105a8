"""Parallel CPU ops of the training process next to busy loader workers.

The training process of a GPU run does some CPU work every step: it copies the
step's audio into one padded batch and concatenates the picture patches (about
140 MB at batch 192 of the dialogue stage) before they go to the GPU. Torch runs
each copy over more than 32 K elements as a parallel region over all its
threads, and a region ends only when its slowest thread does: when loader
workers keep some cores busy, the scheduler deschedules some of those threads
and every region waits for them. This measures that work with 1 thread and with
all cores, with 0..N processes spinning beside it (standing in for the workers),
and prints a table and writes JSON.

    python bench/omp_stall.py                       # sizes of one dialogue step at batch 192
    python bench/omp_stall.py --busy 0,4,12 --clips 192 --out bench/results/omp_stall_h100_host.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import time


def _spin(stop) -> None:  # a loader worker that never waits
    x = 0
    while not stop.is_set():
        for _ in range(100000):
            x += 1


def _step_copies(torch, clips: list, patches: list) -> float:
    t = time.perf_counter()
    width = max(int(c.shape[0]) for c in clips)
    pcm = torch.zeros(len(clips), width)
    for i, c in enumerate(clips):
        pcm[i, : c.shape[0]] = c.to(torch.float32)
    torch.cat(patches).to(torch.float32)
    return time.perf_counter() - t


def measure(threads: int, busy: int, clips: int, seconds: float, patch_mb: float, repeats: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    audio = [torch.randn(int(seconds * 16000), generator=g) for _ in range(clips)]
    rows = max(1, int(patch_mb * 1e6 / 4 / 588 / clips))  # 588 = 3 x 14 x 14 values a patch
    patches = [torch.randn(rows, 588, generator=g) for _ in range(clips)]
    stop = mp.Event()
    spinners = [mp.Process(target=_spin, args=(stop,), daemon=True) for _ in range(busy)]
    for p in spinners:
        p.start()
    try:
        time.sleep(0.3 if busy else 0.0)
        _step_copies(torch, audio, patches)  # warm-up: first-touch page faults
        times = sorted(_step_copies(torch, audio, patches) for _ in range(repeats))
    finally:
        stop.set()
        for p in spinners:
            p.join(timeout=5)
    return {"threads": threads, "busy_processes": busy, "median_ms": round(times[len(times) // 2] * 1e3, 1),
            "min_ms": round(times[0] * 1e3, 1)}


def main() -> int:
    cores = os.cpu_count() or 1
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--threads", default=f"1,{cores}", help="torch threads of the measured process (comma-separated)")
    p.add_argument("--busy", default=f"0,{max(1, cores // 2)}", help="spinning processes beside it (comma-separated)")
    p.add_argument("--clips", type=int, default=192, help="audio clips (samples) in the step")
    p.add_argument("--seconds", type=float, default=6.0, help="seconds of 16 kHz audio per clip")
    p.add_argument("--patch-mb", type=float, default=70.0, help="MB of float32 picture patches in the step")
    p.add_argument("--repeats", type=int, default=7, help="timed repeats per case (median reported)")
    p.add_argument("--out", default="bench/results/omp_stall_cpu.json", help="JSON report path")
    args = p.parse_args()
    ctx_busy = [int(b) for b in args.busy.split(",")]
    rows = []
    for busy in ctx_busy:
        for th in (int(t) for t in args.threads.split(",")):
            rows.append(measure(th, busy, args.clips, args.seconds, args.patch_mb, args.repeats))
            r = rows[-1]
            print(f"busy {busy:3d}  threads {th:3d}: median {r['median_ms']:8.1f} ms  (min {r['min_ms']:.1f})", flush=True)
    base = {(r["busy_processes"], r["threads"]): r["median_ms"] for r in rows}
    print("\nratio to 1 thread with the same busy processes:")
    for r in rows:
        one = base.get((r["busy_processes"], 1))
        if one:
            print(f"  busy {r['busy_processes']:3d} threads {r['threads']:3d}: {r['median_ms'] / one:5.2f}x")
    report = {"device": f"{platform.machine()} CPU, {cores} cores", "clips": args.clips, "seconds": args.seconds,
              "patch_mb": args.patch_mb, "rows": rows}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(report, fh, indent=1)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

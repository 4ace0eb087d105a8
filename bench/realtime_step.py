"""CPU micro-benchmark of RealtimeOmni's decode step: eager vs static decode mode.

    python bench/realtime_step.py                 # debug flavor, 1 and 4 sessions
    python bench/realtime_step.py --steps 60 --rounds 5 --threads 2

One `decode_step` = the batched sampling step (text + 4 audio heads, one
device->host copy) + the backbone forward of the rows it produced + the segment
machines. Each configuration opens N slots, prefills a short text turn, opens
the replies and times `decode_step(all N slots)`; replies that end are rolled
back to the mark and reopened (untimed). Modes alternate round by round in the
same process so both see the same machine load; the median over rounds is
reported, with static / eager as a ratio, as wall time and as the engine
thread's CPU time (which a shared, loaded machine inflates far less). Results: a table on stdout and JSON
(default bench/results/realtime_step_cpu.json). CUDA-graph mode needs a GPU
and is not measured here.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def open_replies(rt, n: int) -> tuple[list[int], dict[int, int]]:
    slots = [rt.open_slot("Be brief.") for _ in range(n)]
    marks = {}
    for k, s in enumerate(slots):
        rt.prefill_text(s, "user", ["what color is the star", "hi", "count to three", "tell me a story"][k % 4])
        marks[s] = rt.slot_length(s)
        rt.begin_response(s)
    return slots, marks


def time_steps(rt, slots, marks, steps: int) -> tuple[list[float], list[float]]:
    wall, cpu = [], []
    for _ in range(steps):
        t0, c0 = time.perf_counter(), time.thread_time()
        outs = rt.decode_step(slots)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.thread_time() - c0)
        if any(o.done for o in outs) or any(rt.slot_length(s) > rt.capacity - 8 for s in slots):
            for s in slots:  # start the replies over (untimed): the step stays comparable
                rt.truncate(s, marks[s])
                rt.begin_response(s)
    return wall, cpu


def measure(model, mode: str, n: int, steps: int, warmup: int) -> tuple[float, float]:
    """Median wall and thread-CPU ms of one decode step."""
    from omni.generation import GenerationOptions
    from omni.realtime import RealtimeOmni

    rt = RealtimeOmni(model, max_slots=4, capacity=1024, decode_mode=mode,
                      options=GenerationOptions(max_new_tokens=10**6))
    slots, marks = open_replies(rt, n)
    time_steps(rt, slots, marks, warmup)
    wall, cpu = time_steps(rt, slots, marks, steps)
    return statistics.median(wall) * 1000, statistics.median(cpu) * 1000


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--flavor", default="debug", help="omni flavor (random weights; default debug)")
    p.add_argument("--sessions", default="1,4", help="comma-separated batch sizes (at most 4)")
    p.add_argument("--steps", type=int, default=40, help="timed decode steps per round")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps per round")
    p.add_argument("--rounds", type=int, default=3, help="rounds per mode (modes alternate)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "realtime_step_cpu.json"),
                   help="JSON report path")
    args = p.parse_args()
    sessions = [int(x) for x in args.sessions.split(",")]
    if any(not 1 <= n <= 4 for n in sessions):
        p.error("--sessions: each batch size must be in 1..4")

    from tqdm import tqdm

    from omni.config import get_omni_config
    from omni.model import OmniModel

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = OmniModel(get_omni_config(args.flavor)).eval()
    modes = ["eager", "static"]
    load0 = os.getloadavg()
    samples: dict[tuple[str, int], list[tuple[float, float]]] = {(m, n): [] for m in modes for n in sessions}
    with tqdm(total=args.rounds * len(modes) * len(sessions), desc="rounds") as bar:
        for _ in range(args.rounds):
            for n in sessions:
                for mode in modes:
                    samples[(mode, n)].append(measure(model, mode, n, args.steps, args.warmup))
                    bar.update()
    model.set_decode_mode("eager")

    hw = f"{cpu_name()}, {args.threads} thread(s), torch {torch.__version__}"
    rows = []
    print(f"\nRealtimeOmni.decode_step, {args.flavor} flavor, fp32, CPU: {hw}")
    print(f"load average before/after: {load0} / {os.getloadavg()} (the CPU column is robust to it)")
    print(f"{'sessions':>8} | {'eager ms':>9} | {'static ms':>9} | {'static/eager':>12} | "
          f"{'eager CPU ms':>12} | {'static CPU ms':>13} | {'CPU ratio':>9}")
    print("-" * 90)
    for n in sessions:
        e, s = (statistics.median(w for w, _ in samples[(m, n)]) for m in modes)
        ec, sc = (statistics.median(c for _, c in samples[(m, n)]) for m in modes)
        rows.append({"sessions": n, "eager_ms": e, "static_ms": s, "static_over_eager": s / e,
                     "eager_cpu_ms": ec, "static_cpu_ms": sc, "static_over_eager_cpu": sc / ec,
                     "eager_rounds_ms": samples[("eager", n)], "static_rounds_ms": samples[("static", n)]})
        print(f"{n:>8} | {e:>9.2f} | {s:>9.2f} | {s / e:>12.2f} | {ec:>12.2f} | {sc:>13.2f} | {sc / ec:>9.2f}")
    result = {"benchmark": "realtime_step", "flavor": args.flavor, "dtype": "fp32", "hardware": hw,
              "load_average_before": load0, "load_average_after": os.getloadavg(),
              "rounds_columns": ["wall_ms", "thread_cpu_ms"],
              "steps_per_round": args.steps, "rounds": args.rounds,
              "command": "python bench/realtime_step.py " + " ".join(sys.argv[1:]), "rows": rows}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

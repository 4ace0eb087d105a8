"""Starting and closing the replies of N sessions: a call each vs one call for all.

When several sessions finish their turns together (many sessions, or a burst), the
engine starts their replies with one model call (`RealtimeOmni.begin_responses`: each
turn's last audio frames, their lone camera frames in one ViT pass, then one prefill
forward of every reply prompt) instead of one call per session, and closes the ended
replies of sessions whose next packets arrive together with one `end_responses`.
Measured side by side in one run, alternating the paths repeat by repeat so both see
the same load: every repeat gives each of N slots a new 0.5 s user packet with a camera
frame (not timed), then starts the N replies and closes them (each timed).

    python bench/begin_batch.py                                  # mini, CPU: bench/results/begin_batch_cpu.json
    python bench/begin_batch.py --flavor a1b --device cuda --dtype bf16 --slots 1,8,32,64 --tag gpu

Prints a table (ms to start, and to close, all N replies, per path, and the ratios) and writes JSON.
Then, on further repeats, the start of all N together timed phase by phase (the device
synchronized at each edge, so their sum is a little over the together path): the waiting camera
frames' ViT pass, the audio encoder's flush of each turn's last frames, the prefill forward of the
reply prompts (and how many positions it reads), the end-of-turn head where the model has one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _packet(rng: np.random.Generator, t0: float, frame_hw: tuple[int, int]):
    from omni.realtime_api import UserChunk

    audio = (0.1 * rng.standard_normal(8000)).astype(np.float32)
    frame = rng.integers(0, 255, (*frame_hw, 3), dtype=np.uint8)
    return UserChunk(audio, [frame], t0, True, frame_times=[t0])


class PhaseClock:
    """Times the phases of `begin_responses` by wrapping the calls it makes, the device
    synchronized before and after each; `positions` counts the prompt positions prefilled."""

    PHASES = ("camera frames", "audio flush", "prefill", "turn-end head")

    def __init__(self, rt, device: str):
        self.rt, self.device = rt, device
        self.ms = {k: 0.0 for k in self.PHASES}
        self.positions = 0
        self._saved: list[tuple[object, str]] = []

    def _wrap(self, owner, name: str, phase: str, count=None) -> None:
        inner = getattr(owner, name)

        def timed(*a, **kw):
            _sync(self.device)
            t0 = time.perf_counter()
            out = inner(*a, **kw)
            _sync(self.device)
            self.ms[phase] += 1000 * (time.perf_counter() - t0)
            if count is not None:
                self.positions += count(*a, **kw)
            return out

        self._saved.append((owner, name))
        setattr(owner, name, timed)

    def __enter__(self) -> "PhaseClock":
        self._wrap(self.rt, "_flush_lone_frames", "camera frames")
        self._wrap(self.rt.model.audio_encoder, "flush_rows", "audio flush")
        self._wrap(self.rt, "_prefill_runs", "prefill", count=lambda slots, runs: sum(len(r) for r in runs))
        if self.rt.turn_end is not None:
            self._wrap(self.rt.turn_end, "probs", "turn-end head")
        return self

    def __exit__(self, *exc) -> None:
        for owner, name in reversed(self._saved):
            delattr(owner, name)  # the wrapper shadowed the class's method on the instance


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--flavor", default="mini", help="omni flavor (random weights)")
    p.add_argument("--device", default="cpu", help="torch device")
    p.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32", help="compute dtype")
    p.add_argument("--slots", default="1,4,8,16", help="comma-separated N: replies started together")
    p.add_argument("--repeats", type=int, default=8, help="timed repeats of each path at each N")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    p.add_argument("--tag", default="cpu", help="result name: bench/results/begin_batch_<tag>.json")
    p.add_argument("--out", help="JSON path instead of the tag's")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from omni.config import get_omni_config
    from omni.model import OmniModel
    from omni.realtime import RealtimeOmni

    levels = [int(x) for x in args.slots.split(",")]
    torch.manual_seed(0)
    with torch.device(args.device):
        model = OmniModel(get_omni_config(args.flavor))
    model = model.to(args.device).eval()
    if args.dtype == "bf16":
        model = model.to_dtype(torch.bfloat16)
    # a packet (audio, a frame), a reply prompt and its close each repeat: both paths, then by phase
    capacity = 256 + 96 * (3 * args.repeats + 2)
    rng = np.random.default_rng(0)
    rows = []
    with torch.inference_mode():
        for n in levels:
            rt = RealtimeOmni(model, max_slots=n, capacity=capacity)
            slots = [rt.open_slot() for _ in range(n)]
            t = 0.0
            times: dict[str, list[float]] = {f"{what} {path}": [] for what in ("begin", "close")
                                             for path in ("one by one", "together")}
            for k in range(2 * args.repeats + 2):  # two warm-up repeats, then the paths in turn
                path = ("one by one", "together")[k % 2]
                rt.prefill([(s, rt.encode_chunk(s, _packet(rng, t, (112, 112)))) for s in slots])
                t += 0.5
                _sync(args.device)
                t0 = time.perf_counter()
                if path == "together":
                    rt.begin_responses([(s, "") for s in slots])
                else:
                    for s in slots:
                        rt.begin_response(s)
                _sync(args.device)
                t1 = time.perf_counter()
                if path == "together":
                    rt.end_responses(slots)
                else:
                    for s in slots:
                        rt.end_response(s)
                _sync(args.device)
                if k >= 2:
                    times[f"begin {path}"].append(1000 * (t1 - t0))
                    times[f"close {path}"].append(1000 * (time.perf_counter() - t1))
            phases: dict[str, list[float]] = {k: [] for k in (*PhaseClock.PHASES, "positions")}
            for _ in range(args.repeats):  # the together path again, phase by phase
                rt.prefill([(s, rt.encode_chunk(s, _packet(rng, t, (112, 112)))) for s in slots])
                t += 0.5
                with PhaseClock(rt, args.device) as clock:
                    rt.begin_responses([(s, "") for s in slots])
                rt.end_responses(slots)
                for k, v in clock.ms.items():
                    phases[k].append(v)
                phases["positions"].append(clock.positions)
            med = {key: statistics.median(v) for key, v in times.items()}
            row = {"slots": n}
            for what in ("begin", "close"):
                one, together = med[f"{what} one by one"], med[f"{what} together"]
                row.update({f"{what}_one_by_one_ms": round(one, 2), f"{what}_together_ms": round(together, 2),
                            f"{what}_speedup": round(one / together, 2)})
            row["begin_phases_ms"] = {k: round(statistics.median(v), 2) for k, v in phases.items() if k != "positions"}
            row["begin_prefill_positions"] = int(statistics.median(phases["positions"]))
            rows.append(row)
            print(f"{n:4d} replies: begin {row['begin_one_by_one_ms']:.1f} -> {row['begin_together_ms']:.1f} ms, "
                  f"close {row['close_one_by_one_ms']:.1f} -> {row['close_together_ms']:.1f} ms", flush=True)
    device = (f"1x {torch.cuda.get_device_name(0)}" if args.device.startswith("cuda") else
              f"{platform.machine()} CPU, {os.cpu_count()} cores, {torch.get_num_threads()} threads")
    report = {"device": device, "flavor": args.flavor, "dtype": args.dtype, "repeats": args.repeats,
              "command": "python bench/begin_batch.py " + " ".join(sys.argv[1:]), "rows": rows}
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", f"begin_batch_{args.tag}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as fh:
        json.dump(report, fh, indent=1)
    print(f"{'replies':>8} {'begin: one by one ms':>21} {'together ms':>12} {'ratio':>6} {'close: one by one ms':>21} "
          f"{'together ms':>12} {'ratio':>6}   ({device}, {args.flavor}, {args.dtype})")
    for r in rows:
        print(f"{r['slots']:8d} {r['begin_one_by_one_ms']:21.1f} {r['begin_together_ms']:12.1f} {r['begin_speedup']:5.1f}x "
              f"{r['close_one_by_one_ms']:21.1f} {r['close_together_ms']:12.1f} {r['close_speedup']:5.1f}x")
    print(f"\nstarting all N together, by phase (ms, device synchronized at each edge): "
          + ", ".join(PhaseClock.PHASES) + "; prompt positions prefilled")
    for r in rows:
        ph = r["begin_phases_ms"]
        print(f"{r['slots']:8d} " + " ".join(f"{ph[k]:8.1f}" for k in PhaseClock.PHASES) + f" {r['begin_prefill_positions']:8d}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

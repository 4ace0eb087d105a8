"""Offline inference throughput: av-mcq samples/s on 10 s clips, batch 1 vs batched.

Each sample is what `omni eval --task av-mcq` feeds the model for a 10 s video
question: 20 frames (2 FPS, 224x224) with the clip's 10 s audio track, and a
multiple-choice text prompt; the model answers with a fixed number of LLM steps
(text + 4 audio heads each; no early stop, so both sides do the same work).
Batch 1 answers the samples one after another; batched answers them in groups
with one prefill and one forward per step. Same weights, same inputs, one run.

    python bench/offline.py                                  # GPU: a1b flavor, bf16
    python bench/offline.py --flavor debug --device cpu --clip-seconds 2 --num-samples 4 --batch-sizes 1,4
    python bench/offline.py --plot bench/results/offline.json   # redraw the PNG from a JSON

Writes bench/results/offline.json (+ offline.png when matplotlib is present).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def make_requests(n: int, seconds: float, size: int, seed: int = 0):
    import numpy as np

    from omni.eval.manifest import mcq_prompt
    from omni.generation import OmniRequest

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        frames = [rng.integers(0, 255, (size, size, 3), dtype=np.uint8) for _ in range(int(2 * seconds))]
        times = [0.5 * k for k in range(len(frames))]
        audio = (0.1 * rng.standard_normal(int(16000 * seconds))).astype(np.float32)
        q = mcq_prompt(f"What happens in clip {i}?", {"A": "a red circle moves left", "B": "nothing", "C": "two stars", "D": "a blue square"})
        out.append(OmniRequest(text=q, video=frames, video_times=times, video_audio=audio))
    return out


def timed(fn, device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    r = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t, r


def run(args) -> dict:
    import torch

    from omni.config import get_omni_config
    from omni.generation import GenerationOptions, generate

    device = torch.device(args.device)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    with torch.device(device):
        from omni.model import OmniModel

        model = OmniModel(get_omni_config(args.flavor)).eval()
    if args.dtype == "bfloat16":
        model.to_dtype(torch.bfloat16)
    build_s = time.perf_counter() - t0
    reqs = make_requests(args.num_samples, args.clip_seconds, args.frame_size)
    opts = GenerationOptions(max_new_tokens=args.steps, decode_audio=False)
    prompt_len = len(model.prepare(reqs[0]))
    # warm-up: every batch size once (allocator, kernels)
    for b in args.batch_sizes:
        generate(model, reqs[:b], opts)
    rows = []
    for b in args.batch_sizes:
        secs, steps = 0.0, 0
        for rep in range(args.repeats):
            for i in range(0, len(reqs), b):
                dt, replies = timed(lambda: generate(model, reqs[i : i + b], opts), device)
                secs += dt
                steps += sum(r.steps for r in replies)
        n = len(reqs) * args.repeats
        rows.append({"batch_size": b, "decode": "eager", "samples": n, "seconds": secs, "samples_per_s": n / secs, "llm_steps": steps})
    if args.graph_row and device.type == "cuda":
        # the largest batch again with the decode step in a CUDA graph (captured per call)
        b = args.batch_sizes[-1]
        try:
            model.set_decode_mode("graph")
            generate(model, reqs[:b], opts)
            secs = 0.0
            for i in range(0, len(reqs), b):
                dt, _ = timed(lambda: generate(model, reqs[i : i + b], opts), device)
                secs += dt
            rows.append({"batch_size": b, "decode": "cuda-graph", "samples": len(reqs), "seconds": secs,
                         "samples_per_s": len(reqs) / secs})
        except Exception as e:  # noqa: BLE001 - reported, the main rows stand
            rows.append({"batch_size": b, "decode": "cuda-graph", "error": f"{type(e).__name__}: {e}"[:300],
                         "samples": 0, "seconds": 0.0, "samples_per_s": 0.0})
        finally:
            model.set_decode_mode("eager")
    base = rows[0]["samples_per_s"]
    for r in rows:
        r["speedup_vs_batch1"] = r["samples_per_s"] / base
    hw = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"
    return {
        "benchmark": "offline av-mcq samples/s, batch 1 vs batched",
        "hardware": hw,
        "flavor": args.flavor,
        "dtype": args.dtype,
        "clip_seconds": args.clip_seconds,
        "frames_per_clip": int(2 * args.clip_seconds),
        "frame_size": args.frame_size,
        "prompt_tokens": prompt_len,
        "llm_steps_per_answer": args.steps,
        "model_build_seconds": build_s,
        "torch": torch.__version__,
        "rows": rows,
        "target": "batched >= 4x batch 1",
    }


def table(res: dict) -> str:
    lines = [
        f"{res['benchmark']} - {res['hardware']}, flavor {res['flavor']}, {res['dtype']}, "
        f"{res['clip_seconds']} s clips ({res['prompt_tokens']} prompt tokens), {res['llm_steps_per_answer']} steps/answer",
        f"{'batch':>6} {'decode':>10} {'samples':>8} {'seconds':>9} {'samples/s':>10} {'x batch1':>9}",
    ]
    for r in res["rows"]:
        lines.append(f"{r['batch_size']:>6} {r.get('decode', 'eager'):>10} {r['samples']:>8} {r['seconds']:>9.2f} "
                     f"{r['samples_per_s']:>10.2f} {r['speedup_vs_batch1']:>9.2f}" + (f"  {r['error']}" if r.get("error") else ""))
    return "\n".join(lines)


def plot(res: dict, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rows = res["rows"]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    labels = [str(r["batch_size"]) + (" graph" if r.get("decode") == "cuda-graph" else "") for r in rows]
    ax.bar(labels, [r["samples_per_s"] for r in rows], color="tab:blue")
    for i, r in enumerate(rows):
        ax.text(i, r["samples_per_s"], f"{r['speedup_vs_batch1']:.1f}x", ha="center", va="bottom")
    ax.set_xlabel("batch size")
    ax.set_ylabel("av-mcq samples / s")
    ax.set_title(f"offline av-mcq, {res['flavor']} {res['dtype']}, {res['hardware']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--flavor", default="a1b", help="model flavor (omni/flavors)")
    p.add_argument("--device", default="cuda", help="torch device, e.g. cpu or cuda")
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"], help="compute dtype")
    p.add_argument("--clip-seconds", type=float, default=10.0, help="seconds of video + audio per sample")
    p.add_argument("--frame-size", type=int, default=224, help="frame side in pixels")
    p.add_argument("--num-samples", type=int, default=16, help="clips per run")
    p.add_argument("--batch-sizes", default="1,16", help="comma list; the first is the baseline")
    p.add_argument("--steps", type=int, default=16, help="LLM steps per answer")
    p.add_argument("--repeats", type=int, default=1, help="timed repetitions")
    p.add_argument("--no-graph-row", dest="graph_row", action="store_false",
                   help="skip the extra row with the decode step in a CUDA graph (GPU only)")
    p.add_argument("--out", default=str(ROOT / "bench/results/offline.json"), help="JSON report path")
    p.add_argument("--plot", metavar="JSON", help="only redraw the PNG of an existing result JSON")
    args = p.parse_args()
    if args.plot:
        res = json.loads(Path(args.plot).read_text())
        print(table(res))
        plot(res, Path(args.plot).with_suffix(".png"))
        return 0
    args.batch_sizes = [int(x) for x in args.batch_sizes.split(",")]
    res = run(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(table(res))
    if plot(res, out.with_suffix(".png")):
        print(f"wrote {out} and {out.with_suffix('.png')}")
    else:
        print(f"wrote {out} (no matplotlib: redraw with --plot)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

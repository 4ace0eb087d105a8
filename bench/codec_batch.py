"""Streaming codec decoding of N concurrent streams: one by one vs one batched step.

The realtime server's audio stage decodes the waiting frame of every session per
round. Two paths, measured side by side in one run (alternating step by step, so
both see the same load on a shared machine), same codec, same codes:
  one-by-one  a batch-1 `CodecDecoder.step` per stream (the path before batching)
  batched     `CodecDecoder.step_streams`: all N single-stream states gathered,
              stepped once, scattered back (what `RealtimeOmni.decode_audio` runs)
Streams start at staggered positions (stream i is i % 4 frames ahead) so a few rows
are still inside the 3-frame look-ahead when timing starts; timed steps are past it.
A step's time covers all N streams; "per stream" divides by N.

    python bench/codec_batch.py                     # writes bench/results/codec_batch_cpu.json
    python bench/codec_batch.py --streams 1,4 --threads 1 --steps 20
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

import torch  # noqa: E402

from speech.codec import Codec  # noqa: E402
from speech.decoder import CodecDecoder  # noqa: E402


def random_codes(codec: Codec, streams: int, frames: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randint(0, n, (streams, frames), generator=g) for n in codec.codebook_sizes], 1)


def _pct(xs: list[float], q: float) -> float:
    return sorted(xs)[int(q * (len(xs) - 1))]


@torch.inference_mode()
def time_pair(dec: CodecDecoder, streams: int, steps: int, codes: torch.Tensor) -> dict:
    """Per-step ms of both paths on N streams; codes [N, 4, T] with T >= 8 + steps."""
    lead = [i % 4 for i in range(streams)]
    solo = [dec.init_state(1) for _ in range(streams)]
    batch = [dec.init_state(1) for _ in range(streams)]
    pos = [0] * streams

    def frames() -> torch.Tensor:
        return torch.stack([codes[i, :, pos[i]] for i in range(streams)])

    # stagger, then warm both paths past the look-ahead of every stream
    for i in range(streams):
        for _ in range(lead[i]):
            dec.step(codes[i : i + 1, :, pos[i]], solo[i])
            dec.step(codes[i : i + 1, :, pos[i]], batch[i])
            pos[i] += 1
    for _ in range(4):
        f = frames()
        for i in range(streams):
            dec.step(f[i : i + 1], solo[i])
        dec.step_streams(f, batch)
        pos = [p + 1 for p in pos]
    t_solo, t_batch, max_diff = [], [], 0.0
    for _ in range(steps):
        f = frames()
        t0 = time.perf_counter()
        a = [dec.step(f[i : i + 1], solo[i])[0] for i in range(streams)]
        t1 = time.perf_counter()
        b = dec.step_streams(f, batch)
        t2 = time.perf_counter()
        t_solo.append(t1 - t0)
        t_batch.append(t2 - t1)
        max_diff = max(max_diff, max(float((x - y).abs().max()) for x, y in zip(a, b)))
        pos = [p + 1 for p in pos]
    assert max_diff < 1e-4, f"batched audio differs from one-by-one by {max_diff}"
    solo_med, batch_med = 1e3 * statistics.median(t_solo), 1e3 * statistics.median(t_batch)
    return {
        "streams": streams,
        "steps": steps,
        "one_by_one_ms_median": solo_med,
        "one_by_one_ms_p95": 1e3 * _pct(t_solo, 0.95),
        "batched_ms_median": batch_med,
        "batched_ms_p95": 1e3 * _pct(t_batch, 0.95),
        "batched_ms_per_stream": batch_med / streams,
        "speedup_median": solo_med / batch_med,
        "max_abs_diff": max_diff,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--codec", default=None, help="codec directory (default: the shipped speech/pretrained/default)")
    p.add_argument("--streams", default="1,4,8,32", help="comma-separated stream counts N")
    p.add_argument("--threads", default="1,2", help="comma-separated torch CPU thread counts")
    p.add_argument("--steps", type=int, default=40, help="timed steps per (N, threads)")
    p.add_argument("--out", default=os.path.join("bench", "results", "codec_batch_cpu.json"), help="JSON path")
    a = p.parse_args()
    streams = [int(s) for s in a.streams.split(",")]
    threads = [int(t) for t in a.threads.split(",")]
    codec = Codec.from_pretrained(a.codec, device="cpu")
    dec = codec.streaming_decoder()
    codes = random_codes(codec, max(streams), a.steps + 8)
    rows = []
    for th in threads:
        torch.set_num_threads(th)
        for n in streams:
            r = time_pair(dec, n, a.steps, codes[:n])
            r["torch_threads"] = th
            rows.append(r)
    hw = "2-core CPU"
    detail = f"{platform.processor() or platform.machine()}, os.cpu_count()={os.cpu_count()}, shared with other jobs"
    frame_ms = 1e3 * codec.hop_length / codec.sample_rate
    print(f"\nstreaming codec step, N streams, on {hw} ({detail}); one frame = {frame_ms:.0f} ms of audio")
    print(f"{'threads':>7}{'N':>5}{'one-by-one ms':>15}{'(p95)':>8}{'batched ms':>12}{'(p95)':>8}{'ms/stream':>11}{'speedup':>9}")
    for r in rows:
        print(f"{r['torch_threads']:>7}{r['streams']:>5}{r['one_by_one_ms_median']:>15.2f}{r['one_by_one_ms_p95']:>8.2f}"
              f"{r['batched_ms_median']:>12.2f}{r['batched_ms_p95']:>8.2f}{r['batched_ms_per_stream']:>11.3f}"
              f"{r['speedup_median']:>8.2f}x")
    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    with open(a.out, "w") as fh:
        json.dump({"hardware": hw, "hardware_detail": detail, "torch": torch.__version__,
                   "codec": a.codec or "speech/pretrained/default", "frame_ms": frame_ms,
                   "command": "python " + " ".join(sys.argv), "results": rows}, fh, indent=2)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

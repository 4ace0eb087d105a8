"""Streaming codec decoding of N concurrent streams: one by one vs batched vs pooled.

The realtime server's audio stage decodes the waiting frame of every session per
round. The paths, measured side by side in one run (alternating step by step, so
all see the same load on a shared machine), same codec, same codes:
  one-by-one  a batch-1 `CodecDecoder.step` per stream (the path before batching)
  batched     `CodecDecoder.step_streams`: all N single-stream states gathered,
              stepped once, scattered back
  pool-rows   `speech.decoder_pool.DecoderPool` (one state, a row per stream; the
              active rows gathered and stepped: the CPU default of the server)
  pool-full   the pool's static step over all its rows, eager (CUDA only here)
  pool-graph  that step captured in a CUDA graph and replayed (the GPU default)
The pool has --pool-rows rows (default: the largest N), as a server sized for that
many sessions would. Streams start at staggered positions (stream i is i % 4 frames
ahead) so a few rows are still inside the 3-frame look-ahead when timing starts;
timed steps are past it. A step's time covers all N streams; "per stream" divides by N.

    python bench/codec_batch.py                     # writes bench/results/codec_batch_cpu.json
    python bench/codec_batch.py --streams 1,4 --threads 1 --steps 20
    python bench/codec_batch.py --device cuda --streams 1,8,32,64,128 --threads 1   # on a GPU
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
from speech.decoder_pool import DecoderPool  # noqa: E402


def random_codes(codec: Codec, streams: int, frames: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randint(0, n, (streams, frames), generator=g) for n in codec.codebook_sizes], 1)


def _pct(xs: list[float], q: float) -> float:
    return sorted(xs)[int(q * (len(xs) - 1))]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def time_paths(dec: CodecDecoder, streams: int, steps: int, codes: torch.Tensor, pool_rows: int,
               pool_modes: list[str]) -> dict:
    """Per-step ms of every path on N streams; codes [N, 4, T] with T >= 8 + steps."""
    device = next(dec.parameters()).device
    codes = codes.to(device)
    lead = [i % 4 for i in range(streams)]
    solo = [dec.init_state(1) for _ in range(streams)]
    batch = [dec.init_state(1) for _ in range(streams)]
    pools = {m: DecoderPool(dec, pool_rows, mode=m) for m in pool_modes}
    rows = {m: [pool.acquire() for _ in range(streams)] for m, pool in pools.items()}
    pos = [0] * streams

    def frames() -> torch.Tensor:
        return torch.stack([codes[i, :, pos[i]] for i in range(streams)])

    def run(name: str, f: torch.Tensor) -> list[torch.Tensor]:
        if name == "one_by_one":
            return [dec.step(f[i : i + 1], solo[i])[0] for i in range(streams)]
        if name == "batched":
            return dec.step_streams(f, batch)
        m = name.removeprefix("pool_")
        return pools[m].step(list(zip(rows[m], f)))

    names = ["one_by_one", "batched"] + [f"pool_{m}" for m in pool_modes]
    # stagger, then warm every path past the look-ahead of every stream
    for i in range(streams):
        for _ in range(lead[i]):
            f = codes[i : i + 1, :, pos[i]]
            dec.step(f, solo[i])
            dec.step(f, batch[i])
            for m, pool in pools.items():
                pool.step([(rows[m][i], f[0])])
            pos[i] += 1
    for _ in range(4):
        f = frames()
        for name in names:
            run(name, f)
        pos = [p + 1 for p in pos]
    times: dict[str, list[float]] = {n: [] for n in names}
    max_diff = 0.0
    for _ in range(steps):
        f = frames()
        outs = {}
        for name in names:
            _sync(device)
            t0 = time.perf_counter()
            outs[name] = [o.float().cpu() for o in run(name, f)]  # the audio reaches the host, as it must
            times[name].append(time.perf_counter() - t0)
        ref = outs["one_by_one"]
        for name in names[1:]:
            max_diff = max(max_diff, max(float((x - y).abs().max()) for x, y in zip(ref, outs[name])))
        pos = [p + 1 for p in pos]
    assert max_diff < 1e-3, f"a path's audio differs from one-by-one by {max_diff}"
    row: dict = {"streams": streams, "steps": steps, "pool_rows": pool_rows, "max_abs_diff": max_diff}
    solo_med = 1e3 * statistics.median(times["one_by_one"])
    for name in names:
        med = 1e3 * statistics.median(times[name])
        row[f"{name}_ms_median"] = med
        row[f"{name}_ms_p95"] = 1e3 * _pct(times[name], 0.95)
        row[f"{name}_ms_per_stream"] = med / streams
        row[f"{name}_speedup_median"] = solo_med / med
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--codec", default=None, help="codec directory (default: the shipped speech/pretrained/default)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--streams", default="1,4,8,32", help="comma-separated stream counts N")
    p.add_argument("--pool-rows", type=int, default=0, help="rows of the pooled state (default: the largest N)")
    p.add_argument("--threads", default="1,2", help="comma-separated torch CPU thread counts")
    p.add_argument("--steps", type=int, default=40, help="timed steps per (N, threads)")
    p.add_argument("--out", default=None, help="JSON path (default bench/results/codec_batch_{cpu,gpu}.json)")
    a = p.parse_args()
    device = torch.device(a.device)
    streams = [int(s) for s in a.streams.split(",")]
    threads = [int(t) for t in a.threads.split(",")]
    pool_rows = a.pool_rows or max(streams)
    if pool_rows < max(streams):
        p.error(f"--pool-rows {pool_rows} is fewer than the largest N {max(streams)}")
    modes = ["rows"] + (["full", "graph"] if device.type == "cuda" else [])
    codec = Codec.from_pretrained(a.codec, device=str(device))
    dec = codec.streaming_decoder()
    codes = random_codes(codec, max(streams), a.steps + 8)
    rows = []
    for th in threads:
        torch.set_num_threads(th)
        for n in streams:
            r = time_paths(dec, n, a.steps, codes[:n], pool_rows, modes)
            r["torch_threads"] = th
            rows.append(r)
    if device.type == "cuda":
        hw = f"1x {torch.cuda.get_device_name(device)}"
        detail = f"torch {torch.__version__}"
    else:
        hw = f"{os.cpu_count()}-core CPU"
        detail = f"{platform.processor() or platform.machine()}, os.cpu_count()={os.cpu_count()}, shared with other jobs"
    frame_ms = 1e3 * codec.hop_length / codec.sample_rate
    names = ["one_by_one", "batched"] + [f"pool_{m}" for m in modes]
    print(f"\nstreaming codec step, N streams, on {hw} ({detail}); one frame = {frame_ms:.0f} ms of audio;"
          f" ms per step (all N streams), median [x speed-up over one-by-one]")
    print(f"{'threads':>7}{'N':>5}" + "".join(f"{n:>22}" for n in names))
    for r in rows:
        cells = "".join(f"{r[n + '_ms_median']:>13.2f} [{r[n + '_speedup_median']:>5.2f}x]" for n in names)
        print(f"{r['torch_threads']:>7}{r['streams']:>5}{cells}")
    out = a.out or os.path.join("bench", "results", f"codec_batch_{'gpu' if device.type == 'cuda' else 'cpu'}.json")
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with open(out, "w") as fh:
        json.dump({"hardware": hw, "hardware_detail": detail, "torch": torch.__version__,
                   "codec": a.codec or "speech/pretrained/default", "frame_ms": frame_ms, "paths": names,
                   "command": "python " + " ".join(sys.argv), "results": rows}, fh, indent=2)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

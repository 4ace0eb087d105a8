"""Perception encoder benchmark.

GPU mode (bf16, one GPU):
  * vision: LongCat-ViT + projector (`longcat` size) on a batch of mixed-size
    frames, packed (variable-length attention, no padding) vs padded to the
    largest frame (key mask, the usual baseline): frames/s and the ratio;
  * audio: the streaming DFSMN encoder + projector (`longcat` size), 32 streams
    batched, fed 1 s chunks (and 160 ms chunks): real-time factor per batch and per stream;
  * checks on the same GPU: packed == padded (bf16), chunked == full pass (fp32).
CPU mode: single-stream real-time factor of the `debug` and `a1b` audio encoders.

    python bench/encoders.py --mode gpu     # needs CUDA
    python bench/encoders.py --mode cpu --threads 2

Writes bench/results/encoders_<mode>.json (+ encoders_gpu.png) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from encoders.audio import StreamingAudioEncoder  # noqa: E402
from encoders.image_processing import preprocess_image  # noqa: E402
from encoders.vision import VisionEncoder  # noqa: E402
from omni.config import get_flavor  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"

# camera / screen / document frames at their native sizes (before the 112-multiple resize)
FRAME_MIX = [(480, 640), (720, 1280), (1080, 1920), (640, 480), (1280, 720), (360, 640), (1024, 768), (500, 1500)]


def hardware(device: str) -> str:
    if device == "cuda":
        p = torch.cuda.get_device_properties(0)
        return f"1x {p.name} ({p.total_memory / 2**30:.0f} GiB)"
    model = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores (shared with other jobs)"


def _time(fn, warmup: int, iters: int, device: str) -> list[float]:
    for _ in range(warmup):
        fn()
    if device != "cuda":
        out = []
        for _ in range(iters):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
        return out
    torch.cuda.synchronize()
    out = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        out.append(a.elapsed_time(b) / 1000)
    return out


def bench_vision(num_frames: int, iters: int, device: str = "cuda", flavor: str = "longcat") -> dict:
    cfg = get_flavor("vision", flavor)
    torch.manual_seed(0)
    with torch.device(device):
        enc = VisionEncoder(cfg).to(torch.bfloat16).eval()
    rng = np.random.default_rng(0)
    units = [
        preprocess_image(rng.integers(0, 256, (*FRAME_MIX[i % len(FRAME_MIX)], 3), dtype=np.uint8), cfg)
        for i in range(num_frames)
    ]
    grids = [u.grid for u in units]
    patches = torch.cat([u.patches for u in units]).to(device, torch.bfloat16)
    lens = [h * w for h, w in grids]
    from encoders.attention import _varlen_available

    backend = "varlen (flash)" if _varlen_available(patches) else "sdpa (grouped)"
    res = {"num_frames": num_frames, "patches_packed": sum(lens), "patches_padded": max(lens) * len(lens),
           "patch_counts": sorted(set(lens)), "packed_attention_backend": backend}
    with torch.no_grad():
        packed = enc(patches, grids)
        padded = enc.forward_padded(patches, grids)
        res["packed_vs_padded_max_rel_err_bf16"] = float((packed - padded).float().norm() / padded.float().norm())
        t_packed = _time(lambda: enc(patches, grids), 2, iters, device)
        t_padded = _time(lambda: enc.forward_padded(patches, grids), 2, iters, device)
        enc.vit.cfg.attention_backend = "sdpa"
        for layer in enc.vit.encoder.layers:
            layer.attn.backend = "sdpa"
        t_grouped = _time(lambda: enc(patches, grids), 2, iters, device)
    for name, t in (("packed", t_packed), ("padded", t_padded), ("packed_sdpa_grouped", t_grouped)):
        res[f"{name}_s"] = statistics.median(t)
        res[f"{name}_frames_per_s"] = num_frames / statistics.median(t)
    res["packed_over_padded"] = res["padded_s"] / res["packed_s"]
    if device == "cuda":
        res["peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
        del enc
        torch.cuda.empty_cache()
    return res


def _stream_rtf(enc, streams: int, chunk: int, seconds: float, device: str) -> dict:
    sr = enc.cfg.sample_rate
    g = torch.Generator().manual_seed(0)
    pcm = (0.1 * torch.randn(streams, int(seconds * sr), generator=g)).to(device)
    state = enc.init_state(streams, device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    times, frames = [], 0
    with torch.no_grad():
        for i in range(0, pcm.shape[1], chunk):
            sync()
            t0 = time.perf_counter()
            frames += enc.step(pcm[:, i : i + chunk], state).shape[1]
            sync()
            times.append(time.perf_counter() - t0)
    steady = times[2:] if len(times) > 4 else times  # first steps warm up kernels / caches
    step = statistics.median(steady)
    chunk_s = chunk / sr
    return {"streams": streams, "chunk_ms": 1000 * chunk_s, "audio_s": seconds, "frames_out": frames,
            "step_s_median": step, "step_s_p90": float(np.percentile(steady, 90)),
            "rtf_batch": step / chunk_s, "rtf_per_stream": step / chunk_s / streams}


def bench_audio_gpu(streams: int, seconds: float, device: str = "cuda", flavor: str = "longcat") -> dict:
    cfg = get_flavor("audio", flavor)
    torch.manual_seed(0)
    with torch.device(device):
        enc = StreamingAudioEncoder(cfg).eval()
    out = {"params_encoder": sum(p.numel() for p in enc.encoder.parameters()),
           "params_projector": sum(p.numel() for p in enc.projector.parameters()),
           "lookahead_ms": enc.lookahead_ms}
    # exactness on this device, fp32 without TF32: chunked (uneven) == one pass
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    pcm = (0.1 * torch.randn(2, 16000 * 4 + 321, generator=torch.Generator().manual_seed(1))).to(device)
    with torch.no_grad():
        full = enc(pcm)[0]
        st = enc.init_state(2)
        parts, i, k, sizes = [], 0, 0, [320, 1600, 16000, 777]
        while i < pcm.shape[1]:
            parts.append(enc.step(pcm[:, i : i + sizes[k % 4]], st))
            i, k = i + sizes[k % 4], k + 1
        parts.append(enc.flush(st))
        s = torch.cat(parts, 1)
    out["fp32_chunked_vs_full_max_abs"] = float((s - full).abs().max())
    out["fp32_chunked_vs_full_rel"] = float((s - full).norm() / full.norm())
    enc = enc.to(torch.bfloat16)
    out["bf16_1s"] = _stream_rtf(enc, streams, 16000, seconds, device)
    out["bf16_160ms"] = _stream_rtf(enc, streams, 2560, seconds / 2, device)
    out["bf16_1s_single_stream"] = _stream_rtf(enc, 1, 16000, seconds, device)
    return out


def bench_audio_cpu(seconds: float) -> dict:
    out = {}
    for flavor in ("debug", "a1b"):
        torch.manual_seed(0)
        enc = StreamingAudioEncoder(get_flavor("audio", flavor)).eval()
        out[flavor] = {"params": sum(p.numel() for p in enc.parameters()),
                       "1s": _stream_rtf(enc, 1, 16000, seconds, "cpu"),
                       "100ms": _stream_rtf(enc, 1, 1600, seconds, "cpu")}
    return out


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    v, a = res["vision"], res["audio"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    names = ["padded", "packed (sdpa grouped)", "packed (varlen)"]
    vals = [v["padded_frames_per_s"], v["packed_sdpa_grouped_frames_per_s"], v["packed_frames_per_s"]]
    ax1.bar(names, vals, color=["#999", "#7ab", "#28a"])
    ax1.set_ylabel("frames / s")
    ax1.set_title(f"LongCat-ViT bf16, {v['num_frames']} mixed-size frames\npacked = {v['packed_over_padded']:.2f}x padded")
    keys = ["bf16_1s_single_stream", "bf16_1s", "bf16_160ms"]
    labels = ["1 stream, 1 s", f"{a['bf16_1s']['streams']} streams, 1 s", f"{a['bf16_160ms']['streams']} streams, 160 ms"]
    ax2.bar(labels, [a[k]["rtf_per_stream"] for k in keys], color="#c73")
    ax2.axhline(0.01, ls="--", c="k", lw=1)
    ax2.set_yscale("log")
    ax2.set_ylabel("real-time factor per stream")
    ax2.set_title("streaming audio encoder (longcat) bf16\n(dashed: target 0.01)")
    fig.suptitle(res["hardware"])
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=["gpu", "cpu"], required=True, help="gpu: bf16 vision + audio; cpu: audio RTF")
    ap.add_argument("--frames", type=int, default=32, help="vision frames per batch (gpu)")
    ap.add_argument("--streams", type=int, default=32, help="audio streams batched (gpu)")
    ap.add_argument("--seconds", type=float, default=10.0, help="audio seconds per stream")
    ap.add_argument("--iters", type=int, default=10, help="timed vision repetitions")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (cpu mode)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    ap.add_argument("--smoke", action="store_true", help="run the gpu-mode code on CPU with debug flavors (no numbers)")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    res: dict = {"torch": torch.__version__, "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    if args.mode == "gpu":
        device, fl = ("cpu", "debug") if args.smoke else ("cuda", "longcat")
        if device == "cuda" and not torch.cuda.is_available():
            print("--mode gpu needs a CUDA device", file=sys.stderr)
            return 2
        res["hardware"] = hardware(device)
        res["vision"] = bench_vision(args.frames, args.iters, device, fl)
        print(json.dumps(res["vision"]), flush=True)
        res["audio"] = bench_audio_gpu(args.streams, args.seconds, device, fl)
        v, a = res["vision"], res["audio"]
        print(f"\n{res['hardware']}, torch {res['torch']}")
        print(f"{'vision (longcat, bf16)':38s} {'frames/s':>10s} {'s/batch':>9s}")
        for k in ("padded", "packed_sdpa_grouped", "packed"):
            print(f"  {k:36s} {v[k + '_frames_per_s']:10.1f} {v[k + '_s']:9.4f}")
        print(f"  packed / padded = {v['packed_over_padded']:.2f}x  (target >= 1.5x); "
              f"patches {v['patches_packed']} packed vs {v['patches_padded']} padded; {v['packed_attention_backend']}")
        print(f"{'audio (longcat, bf16)':38s} {'step ms':>10s} {'RTF batch':>10s} {'RTF/stream':>11s}")
        for k in ("bf16_1s_single_stream", "bf16_1s", "bf16_160ms"):
            r = a[k]
            print(f"  {r['streams']:3d} streams, {r['chunk_ms']:6.0f} ms chunks{'':10s} {1000 * r['step_s_median']:10.2f} "
                  f"{r['rtf_batch']:10.4f} {r['rtf_per_stream']:11.5f}")
        print(f"  fp32 chunked vs full: max abs {a['fp32_chunked_vs_full_max_abs']:.2e}, "
              f"rel {a['fp32_chunked_vs_full_rel']:.2e}; look-ahead {a['lookahead_ms']} ms")
        plot(res, args.out / f"encoders_gpu{'_smoke' if args.smoke else ''}.png")
    else:
        if args.threads:
            torch.set_num_threads(args.threads)
        res["hardware"] = hardware("cpu")
        res["threads"] = torch.get_num_threads()
        res["load_average_before"] = os.getloadavg()  # the CPU is shared: say how busy it was
        res["audio"] = bench_audio_cpu(args.seconds)
        res["load_average_after"] = os.getloadavg()
        print(f"\n{res['hardware']}, {res['threads']} threads, torch {res['torch']}, "
              f"load average {res['load_average_before'][0]:.1f} -> {res['load_average_after'][0]:.1f}")
        print(f"{'audio encoder, 1 stream, fp32':34s} {'params':>10s} {'chunk':>7s} {'step ms':>9s} {'RTF':>8s}")
        for flavor, r in res["audio"].items():
            for k in ("1s", "100ms"):
                print(f"  {flavor:32s} {r['params'] / 1e6:9.1f}M {r[k]['chunk_ms']:6.0f}ms "
                      f"{1000 * r[k]['step_s_median']:9.2f} {r[k]['rtf_batch']:8.4f}")
    path = args.out / f"encoders_{args.mode}{'_smoke' if args.smoke else ''}.json"
    path.write_text(json.dumps(res, indent=2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

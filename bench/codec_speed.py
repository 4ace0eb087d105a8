"""Streaming speech-decoder speed: real-time factor on CPU (one stream) and GPU (batched streams).

Measured side by side in one run, same codec, same codes:
  stream     the inference path: `Codec.streaming_decoder()` (weight norm folded,
             im2col conv + fused LSTM-step kernels), one 60 ms frame per `step`
  naive      the same `step` on the training-form decoder (weight norm recomputed,
             no cached stream weights): the baseline the optimizations are measured against
  offline    whole-sequence `decode` of all frames at once (not streamable: latency = the utterance)

RTF = decode time / audio duration (per stream); the CPU target is RTF <= 0.2 for one
stream. On GPU, S streams are batched into one `step` call per frame; frames/s counts
frames of all streams.

    python bench/codec_speed.py                          # CPU, writes bench/results/codec_speed_cpu.json
    python bench/codec_speed.py --device cuda --streams 32 --out bench/results/codec_speed_gpu.json
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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def random_codes(codec: Codec, streams: int, frames: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randint(0, n, (streams, frames), generator=g) for n in codec.codebook_sizes], 1)


@torch.inference_mode()
def time_streaming(dec: CodecDecoder, codes: torch.Tensor, warmup: int = 5) -> dict:
    device = next(dec.parameters()).device
    codes = codes.to(device)
    B, _, T = codes.shape
    state = dec.init_state(B)
    for t in range(min(warmup, T)):
        dec.step(codes[:, :, t], state)
    state = dec.init_state(B)
    times = []
    total = 0
    _sync(device)
    for t in range(T):
        t0 = time.perf_counter()
        out = dec.step(codes[:, :, t], state)
        _sync(device)
        times.append(time.perf_counter() - t0)
        total += out.shape[-1]
    t0 = time.perf_counter()
    total += dec.flush(state).shape[-1]
    _sync(device)
    flush = time.perf_counter() - t0
    audio_s = T * dec.hop_length / dec.cfg.sample_rate
    wall = sum(times) + flush
    assert total == T * dec.hop_length, "streaming produced the wrong number of samples"
    return {
        "streams": B,
        "frames": T,
        "audio_seconds_per_stream": audio_s,
        "step_ms_median": 1e3 * statistics.median(times),
        "step_ms_p95": 1e3 * sorted(times)[int(0.95 * (len(times) - 1))],
        "rtf_per_stream": wall / audio_s,
        "frames_per_second": B * T / wall,
    }


@torch.inference_mode()
def time_offline(codec: Codec, codes: torch.Tensor, repeats: int = 3) -> dict:
    dec = codec.streaming_decoder()
    codes = codes.to(codec.device)
    dec(codes)
    _sync(codec.device)
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        dec(codes)
        _sync(codec.device)
        ts.append(time.perf_counter() - t0)
    audio_s = codes.shape[-1] * codec.hop_length / codec.sample_rate
    return {"streams": codes.shape[0], "rtf_per_stream": statistics.median(ts) / audio_s,
            "frames_per_second": codes.shape[0] * codes.shape[-1] / statistics.median(ts)}


def hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return f"1x {torch.cuda.get_device_name(device)}"
    return f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores (shared with other jobs), torch threads {torch.get_num_threads()}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--codec", default=None, help="codec directory (default: the shipped speech/pretrained/default)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument("--streams", type=int, default=1, help="streams batched into one step")
    p.add_argument("--seconds", type=float, default=10.0, help="audio seconds decoded per stream")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = leave default)")
    p.add_argument("--out", default=None, help="JSON path (default bench/results/codec_speed_<cpu|gpu>.json)")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    codec = Codec.from_pretrained(a.codec, device=device)
    frames = int(round(a.seconds * codec.frame_rate))
    rows = {}
    for streams in sorted({1, a.streams}):
        codes = random_codes(codec, streams, frames)
        naive = CodecDecoder(codec.cfg).to(device).eval()
        naive.load_state_dict(codec.model.decoder.state_dict())
        rows[f"stream x{streams}"] = time_streaming(codec.streaming_decoder(), codes)
        rows[f"naive stream x{streams}"] = time_streaming(naive, codes)
        rows[f"offline x{streams}"] = time_offline(codec, codes)
    hw = hardware(device)
    print(f"\ncodec decode speed on {hw}; {a.seconds:.0f} s of audio per stream")
    print(f"{'path':<22}{'streams':>8}{'step ms (med)':>15}{'RTF/stream':>12}{'frames/s':>11}")
    for name, r in rows.items():
        step = f"{r['step_ms_median']:.2f}" if "step_ms_median" in r else "-"
        print(f"{name:<22}{r['streams']:>8}{step:>15}{r['rtf_per_stream']:>12.4f}{r['frames_per_second']:>11.0f}")
    s1 = rows["stream x1"]["rtf_per_stream"]
    ratios = {
        "naive_over_stream_x1": rows["naive stream x1"]["rtf_per_stream"] / s1,
        "target_rtf_cpu": 0.2,
        "stream_x1_rtf_over_target": s1 / 0.2,
    }
    if a.streams > 1:
        ratios[f"frames_per_s_x{a.streams}_over_x1"] = rows[f"stream x{a.streams}"]["frames_per_second"] / rows["stream x1"]["frames_per_second"]
    print("ratios:", {k: round(v, 3) for k, v in ratios.items()})
    out = a.out or os.path.join("bench", "results", f"codec_speed_{'gpu' if device.type == 'cuda' else 'cpu'}.json")
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with open(out, "w") as fh:
        json.dump({"hardware": hw, "torch": torch.__version__, "codec": a.codec or "speech/pretrained/default",
                   "seconds_per_stream": a.seconds, "results": rows, "ratios": ratios}, fh, indent=2)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

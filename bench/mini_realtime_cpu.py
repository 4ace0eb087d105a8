"""Is the `mini` flavor real time on a 2-core CPU? One stream, random weights.

Per simulated second of a spoken dialogue the serving pipeline does: one 1 s
audio-encoder step, one ViT pass over a frame pair (the camera at 2 FPS), one
prefill of that chunk's tokens, and, while answering, 16.67 decode steps (one
text token + the 4 audio heads each) and 16.67 codec-decoder frames. This times
each part on the model's own code paths (`omni.generation.sample_step` /
`feed_step`, the streaming audio encoder, the codec's streaming decoder) and
reports decode frames/s (LLM step + heads + codec frame) against the 16.67
frames/s bar, plus the real-time factor of a second that both listens and speaks.

    python bench/mini_realtime_cpu.py            # writes bench/results/mini_realtime_cpu.json

The machine's CPU may be shared with other jobs; the JSON says how many cores
torch used and the load average when the run started.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import sys

# run as a script: the repository root, not bench/ (bench/encoders.py would shadow the package)
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402

FRAME_RATE = 16.67


def _time(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


@torch.no_grad()
def measure(flavor: str, seconds: int, threads: int, decode_mode: str) -> dict:
    from encoders.image_processing import preprocess_video
    from omni.config import get_omni_config
    from omni.generation import GenerationOptions, ReplyState, feed_step, sample_step
    from omni.model import OmniModel
    from omni.sequence_av import EncodedChunk
    from omni.sequence_stream import IncrementalBuilder

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = get_omni_config(flavor)
    model = OmniModel(cfg).eval()
    model.set_decode_mode(decode_mode)
    rng = np.random.default_rng(0)
    sr = cfg.audio.sample_rate
    frame = rng.integers(0, 255, (112, 112, 3), dtype=np.uint8)
    enc = model.audio_encoder
    cache = model.new_cache(1, 4096)
    builder = IncrementalBuilder(model.fmt)

    # listening: audio step + ViT pair + prefill of the chunk, per 1 s chunk
    astate = enc.init_state(1)
    t_audio, t_vision, t_prefill = [], [], []
    for k in range(seconds):
        pcm = torch.from_numpy((0.1 * rng.standard_normal(sr)).astype(np.float32))[None]
        t0 = time.perf_counter()
        feats = enc.step(pcm, astate)[0]
        t1 = time.perf_counter()
        img = model.encode_visual(preprocess_video([frame, frame], cfg.vision))
        t2 = time.perf_counter()
        run = builder.add_chunk(EncodedChunk(float(k), feats, img, [float(k)], sr, True))
        model.prefill(cache, [0], [run])
        t3 = time.perf_counter()
        t_audio.append(t1 - t0)
        t_vision.append(t2 - t1)
        t_prefill.append(t3 - t2)
    run = builder.begin_response()
    logits, hidden = model.prefill(cache, [0], [run])

    # speaking: decode steps (text + 4 heads) and codec frames
    opts = GenerationOptions(max_new_tokens=10**6)
    state = ReplyState(model, opts)
    state.logits, state.hidden = logits[0], hidden[0]
    steps = int(seconds * FRAME_RATE)
    t_step = []
    for _ in range(steps):
        t0 = time.perf_counter()
        res = sample_step(model, [state])
        # random weights may end a segment early; keep the stream in text+audio
        feed_step(model, cache, [0], [state], res)
        t_step.append(time.perf_counter() - t0)
    dec = model.codec_decoder
    dstate = dec.init_state(1)
    codes = torch.tensor([[int(rng.integers(0, cfg.codec.semantic_codebook_size))] + [int(rng.integers(0, 1024))] * 3])
    t_codec = _time(lambda: dec.step(codes, dstate), steps)

    med = statistics.median
    step_s, codec_s = med(t_step[3:]), med(t_codec[3:])
    listen_s = med(t_audio[1:]) + med(t_vision[1:]) + med(t_prefill[1:])
    frames_per_s = 1.0 / (step_s + codec_s)
    busy = listen_s + FRAME_RATE * (step_s + codec_s)  # a second that listens and speaks at once
    n_params = sum(p.numel() for p in model.parameters())
    return {
        "flavor": flavor,
        "parameters_m": round(n_params / 1e6, 2),
        "codec_parameters_m": round(sum(p.numel() for p in dec.parameters()) / 1e6, 2),
        "decode_mode": decode_mode,
        "ms": {
            "llm_step_with_4_heads": round(step_s * 1e3, 2),
            "codec_frame": round(codec_s * 1e3, 2),
            "audio_encoder_1s": round(med(t_audio[1:]) * 1e3, 2),
            "vit_frame_pair": round(med(t_vision[1:]) * 1e3, 2),
            "prefill_chunk": round(med(t_prefill[1:]) * 1e3, 2),
        },
        "decode_frames_per_s": round(frames_per_s, 2),
        "decode_ratio_to_realtime": round(frames_per_s / FRAME_RATE, 2),
        "busy_s_per_s_listen_and_speak": round(busy, 3),
        "realtime": frames_per_s >= FRAME_RATE and busy < 1.0,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--flavor", default="mini", help="model flavor (omni/flavors)")
    p.add_argument("--seconds", type=int, default=6, help="simulated seconds (listen, then speak)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: on a shared 2-core machine 2 threads thrash)")
    p.add_argument("--decode-mode", default="static", choices=["eager", "static"],
                   help="decode path: eager, or the static KV cache")
    p.add_argument("--out", default="bench/results/mini_realtime_cpu.json", help="JSON report path")
    args = p.parse_args()
    load = os.getloadavg()[0]
    rows = [measure(args.flavor, args.seconds, args.threads, m) for m in ("eager", args.decode_mode)]
    if rows[0]["decode_mode"] == rows[1]["decode_mode"]:
        rows = rows[:1]
    hw = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared with other jobs), torch threads {args.threads}"
    print(f"mini flavor, random weights, one stream, {hw}, load average {load:.1f}")
    print(f"{'mode':8} {'step ms':>8} {'codec ms':>9} {'audio 1s':>9} {'ViT pair':>9} {'prefill':>8} {'frames/s':>9} {'x RT':>6} {'busy s/s':>9}")
    for r in rows:
        ms = r["ms"]
        print(f"{r['decode_mode']:8} {ms['llm_step_with_4_heads']:8.2f} {ms['codec_frame']:9.2f} {ms['audio_encoder_1s']:9.2f} "
              f"{ms['vit_frame_pair']:9.2f} {ms['prefill_chunk']:8.2f} {r['decode_frames_per_s']:9.2f} "
              f"{r['decode_ratio_to_realtime']:6.2f} {r['busy_s_per_s_listen_and_speak']:9.3f}")
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump({"hardware": hw, "load_average_1min": round(load, 2), "bar_frames_per_s": FRAME_RATE, "results": rows}, fh, indent=1)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

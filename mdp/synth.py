"""Synthesize a small interleaved manifest (text, image, video, audio, spoken replies).

Used by the tests, the `debug` recipe and the benchmark: random token ids,
random patch rows and noise PCM, with a skewed modality mix (many samples are
text-only, a few carry most of the images and audio), like the per-micro-batch
spread of the spec's Table 2.
"""

from __future__ import annotations

import json
import os

import torch

from omni.config import OmniConfig


def synthesize(
    out_dir: str,
    cfg: OmniConfig,
    num_samples: int,
    seq_len: int,
    seed: int = 0,
    modalities: tuple[str, ...] = ("image", "video", "audio"),
    text_only_fraction: float = 0.25,
) -> str:
    """Write out_dir/manifest.jsonl (+ tensor files); returns the manifest path.

    Every sample fits in seq_len + 1 positions.
    """
    g = torch.Generator().manual_seed(seed)
    os.makedirs(os.path.join(out_dir, "media"), exist_ok=True)
    vocab = cfg.llm.vocab_size
    lo = 16  # keep clear of the tokenizer's special ids (pads, placeholders)
    audio_lo, audio_hi = cfg.audio_id_offset, cfg.audio_id_offset + cfg.codec.semantic_codebook_size
    patch_dim = cfg.vision.num_channels * cfg.vision.temporal_patch_size * cfg.vision.patch_size**2
    spf = int(cfg.audio.sample_rate * cfg.audio.frame_shift_ms / 1000) * cfg.audio.splice_stride
    lines = []

    def rint(a: int, b: int) -> int:
        return int(torch.randint(a, b, (1,), generator=g))

    for n in range(num_samples):
        budget = seq_len + 1
        segs: list[dict] = []
        text_only = float(torch.rand(1, generator=g)) < text_only_fraction
        heavy = rint(0, 4) == 0  # a few samples carry most media
        while budget > 8:
            choice = rint(0, 4)
            if text_only or choice == 0 or not modalities:
                k = min(budget - 4, rint(3, 12))
                segs.append({"text": torch.randint(lo, vocab, (k,), generator=g).tolist()})
                budget -= k
            elif choice == 1 and "video" in modalities and heavy and rint(0, 2) == 0:
                units = rint(2, 4)  # frame pairs of 2 x 2 patches
                if units * 2 + 2 > budget:
                    break
                name = f"media/vid{n}_{len(segs)}.pt"
                torch.save({"patches": torch.randn(units * 4, patch_dim, generator=g), "grids": [[2, 2]] * units},
                           os.path.join(out_dir, name))
                segs.append({"video": name})
                budget -= units * 2
            elif choice == 1 and "image" in modalities:
                h, w = (2, 2 * rint(1, 4 if heavy else 2))
                if h * w // 2 + 2 > budget:
                    break
                name = f"media/img{n}_{len(segs)}.pt"
                torch.save({"patches": torch.randn(h * w, patch_dim, generator=g), "grid": [h, w]}, os.path.join(out_dir, name))
                segs.append({"image": name})
                budget -= h * w // 2
            elif choice == 2 and "audio" in modalities:
                frames = rint(2, 8 if heavy else 4)
                if frames + 2 > budget:
                    break
                name = f"media/aud{n}_{len(segs)}.pt"
                torch.save({"pcm": 0.1 * torch.randn(frames * spf, generator=g)}, os.path.join(out_dir, name))
                segs.append({"audio": name})
                budget -= frames + 1  # the front end may round up by one frame
            else:
                m = min(budget - 4, rint(2, 8))
                if m < 2:
                    break
                codes = torch.randint(audio_lo, audio_hi, (m, 4), generator=g).tolist()
                text = torch.randint(lo, vocab, (m // 2,), generator=g).tolist()
                segs.append({"speech": {"text": text, "codes": codes}})
                budget -= m
        if not segs:
            segs.append({"text": torch.randint(lo, vocab, (4,), generator=g).tolist()})
        lines.append(json.dumps({"segments": segs}))
    path = os.path.join(out_dir, "manifest.jsonl")
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return path

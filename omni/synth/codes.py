"""Codec tokens of the assistant's spoken answers (the speech the model learns to produce).

Runs the project's codec (`speech.Codec`) over every answer WAV of a split and
stores `codes/answers/<answer>.npy` (int16 [4, T], values without the +32 model
offset), then records the path in the manifest's `answer_codes` field, and the
tokens of a silent frame in `codes/info.json` (`silence_frame`: the speech rows of a
reply that says nothing, a tool call). Run it again after retraining the codec: the
tokens belong to one codec.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .audio import read_wav, to_float
from .build import write_jsonl, read_jsonl


def codec_available() -> bool:
    """True when the project's codec package is importable."""
    try:
        from speech import Codec  # noqa: F401
    except ImportError:
        return False
    return True


def load_codec(codec_dir: str | os.PathLike | None = None):
    """The codec at codec_dir, or the one shipped with the speech package."""
    if not codec_available():
        raise RuntimeError("speech.Codec is not available: the codec package is missing from this checkout")
    from speech import Codec

    return Codec.from_pretrained(codec_dir)


def encode_answers(data_dir: str | os.PathLike, codec, progress: bool = True) -> dict:
    """Tokenize every distinct answer of the split in data_dir; updates manifest.jsonl."""
    import torch

    root = Path(data_dir)
    manifest = root / "manifest.jsonl"
    rows = read_jsonl(manifest)
    if codec.sample_rate != 16000:
        raise ValueError(f"codec samples at {codec.sample_rate} Hz; the world's audio is 16 kHz")
    answers = sorted({r["answer_audio"] for r in rows})
    (root / "codes/answers").mkdir(parents=True, exist_ok=True)
    it = answers
    if progress:
        from tqdm import tqdm

        it = tqdm(answers, desc="answer codes", unit="answer", dynamic_ncols=True)
    out_of: dict[str, str] = {}
    frames = 0
    for rel in it:
        wav = to_float(read_wav(root / rel)[0])
        codes = codec.encode(torch.from_numpy(wav))[0].cpu().numpy()  # [4, T]
        if codes.min() < 0 or codes.max() > np.iinfo(np.int16).max:
            raise ValueError(f"codec returned values outside int16 for {rel}")
        name = f"codes/answers/{Path(rel).stem}.npy"
        np.save(root / name, codes.astype(np.int16))
        out_of[rel] = name
        frames += codes.shape[1]
    for r in rows:
        r["answer_codes"] = out_of[r["answer_audio"]]
    write_jsonl(manifest, rows)
    info = {"answers": len(answers), "frames": frames, "codec_frame_rate": codec.frame_rate,
            "silence_frame": silence_frame(codec)}
    (root / "codes/info.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def delayed(wav: np.ndarray, share: float, hop_length: int) -> np.ndarray:
    """`wav` after `share` of a codec frame of silence: where its first sound falls on the
    codec's frame grid (`bench/answer_phases.py`, `curriculum.answer_phases`)."""
    if not share:
        return wav
    return np.concatenate([np.zeros(int(round(share * hop_length)), wav.dtype), wav])


def silence_frame(codec) -> list[int]:
    """The codec's tokens of one frame of silence (the middle frame of 1 s of zeros, away from
    the edges' padding): the speech rows of a spoken reply that says nothing, e.g. a tool call."""
    import torch

    codes = codec.encode(torch.zeros(codec.sample_rate))[0].cpu().numpy()  # [4, T]
    return [int(c) for c in codes[:, codes.shape[1] // 2]]

"""Training audio: a folder of WAVs or a packed `.npz`, served as random crops.

`pack_npz` stores many clips as one int16 array + offsets, compressed: ~15 min
of 16 kHz speech packs into well under 30 MB and needs only numpy to read (the
GPU machines have no `av`). A pack may also hold one text label per clip
(`labels`, e.g. "assistant" / "users": the groups of an evaluation set).
`AudioCorpus` holds every clip in one 1-D tensor on the training device and
draws batches of random fixed-length crops from it; a share of them can start
exactly where a clip starts (`aligned_share`), as an utterance decoded on its own
does.
"""

from __future__ import annotations

import glob
import os

import numpy as np
import torch

from speech.audio_io import AudioFileError, load_wav


def list_wavs(folder: str) -> list[str]:
    paths = sorted(glob.glob(os.path.join(folder, "**", "*.wav"), recursive=True))
    if not paths:
        raise AudioFileError(f"{folder}: no .wav files found")
    return paths


def load_clips(path: str, sample_rate: int = 16000, resample: bool = False) -> list[np.ndarray]:
    """A folder of WAVs, one WAV, or a packed .npz -> list of float32 clips."""
    if os.path.isdir(path):
        return [load_wav(p, sample_rate, resample).numpy() for p in list_wavs(path)]
    if path.endswith(".npz"):
        if not os.path.isfile(path):
            raise AudioFileError(f"{path}: no such file")
        try:
            with np.load(path) as z:
                pcm, offsets, rate = z["pcm"], z["offsets"], int(z["sample_rate"])
        except (KeyError, ValueError, OSError) as e:
            raise AudioFileError(f"{path}: not a packed audio corpus ({e})") from None
        if rate != sample_rate:
            raise AudioFileError(f"{path}: packed at {rate} Hz, expected {sample_rate} Hz")
        audio = pcm.astype(np.float32) / 32768.0
        return [audio[a:b] for a, b in zip(offsets[:-1], offsets[1:])]
    return [load_wav(path, sample_rate, resample).numpy()]


def load_labels(path: str) -> list[str] | None:
    """The per-clip labels of a packed .npz, or None when it has none (or is no .npz)."""
    if not path.endswith(".npz") or not os.path.isfile(path):
        return None
    with np.load(path) as z:
        return [str(x) for x in z["labels"]] if "labels" in z.files else None


def pack_npz(clips: list[np.ndarray], out_path: str, sample_rate: int = 16000, labels: list[str] | None = None) -> None:
    pcm = np.concatenate([(np.clip(c, -1, 1) * 32767).round().astype(np.int16) for c in clips])
    offsets = np.cumsum([0] + [len(c) for c in clips]).astype(np.int64)
    extra = {}
    if labels is not None:
        if len(labels) != len(clips):
            raise ValueError(f"pack_npz: {len(labels)} labels for {len(clips)} clips")
        extra["labels"] = np.array(labels, dtype=str)
    np.savez_compressed(out_path, pcm=pcm, offsets=offsets, sample_rate=np.int64(sample_rate), **extra)


class AudioCorpus:
    """All clips concatenated on `device`; `batch` draws random crops."""

    def __init__(self, clips: list[np.ndarray], device: str | torch.device = "cpu") -> None:
        if not clips:
            raise ValueError("AudioCorpus: no clips")
        self.audio = torch.from_numpy(np.concatenate(clips).astype(np.float32)).to(device)
        self.seconds_at_16k = self.audio.numel() / 16000
        self.clip_starts = torch.from_numpy(np.cumsum([0] + [len(c) for c in clips[:-1]]).astype(np.int64))

    def batch(self, batch_size: int, num_samples: int, generator: torch.Generator, gain: tuple[float, float] = (0.5, 1.0),
              aligned_share: float = 0.0) -> torch.Tensor:
        """[batch_size, num_samples] random crops times a random gain; with `aligned_share` > 0
        about that share of the crops starts at a clip start (the others anywhere)."""
        n = self.audio.numel()
        if n < num_samples:
            reps = -(-num_samples // n)
            self.audio = self.audio.repeat(reps)
            n = self.audio.numel()
        starts = torch.randint(0, n - num_samples + 1, (batch_size,), generator=generator)
        if aligned_share > 0:
            ok = self.clip_starts[self.clip_starts <= n - num_samples]
            if ok.numel():
                pick = ok[torch.randint(0, ok.numel(), (batch_size,), generator=generator)]
                aligned = torch.rand(batch_size, generator=generator) < aligned_share
                starts = torch.where(aligned, pick, starts)
        idx = starts.to(self.audio.device)[:, None] + torch.arange(num_samples, device=self.audio.device)[None]
        g = torch.empty(batch_size, 1).uniform_(*gain, generator=generator).to(self.audio.device)
        return self.audio[idx] * g

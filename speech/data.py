"""Training audio: a folder of WAVs or a packed `.npz`, served as random crops.

`pack_npz` stores many clips as one int16 array + offsets, compressed: ~15 min
of 16 kHz speech packs into well under 30 MB and needs only numpy to read (the
GPU machines have no `av`). `AudioCorpus` holds every clip in one 1-D tensor on
the training device and draws batches of random fixed-length crops from it.
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


def pack_npz(clips: list[np.ndarray], out_path: str, sample_rate: int = 16000) -> None:
    pcm = np.concatenate([(np.clip(c, -1, 1) * 32767).round().astype(np.int16) for c in clips])
    offsets = np.cumsum([0] + [len(c) for c in clips]).astype(np.int64)
    np.savez_compressed(out_path, pcm=pcm, offsets=offsets, sample_rate=np.int64(sample_rate))


class AudioCorpus:
    """All clips concatenated on `device`; `batch` draws random crops."""

    def __init__(self, clips: list[np.ndarray], device: str | torch.device = "cpu") -> None:
        if not clips:
            raise ValueError("AudioCorpus: no clips")
        self.audio = torch.from_numpy(np.concatenate(clips).astype(np.float32)).to(device)
        self.seconds_at_16k = self.audio.numel() / 16000

    def batch(self, batch_size: int, num_samples: int, generator: torch.Generator, gain: tuple[float, float] = (0.5, 1.0)) -> torch.Tensor:
        n = self.audio.numel()
        if n < num_samples:
            reps = -(-num_samples // n)
            self.audio = self.audio.repeat(reps)
            n = self.audio.numel()
        starts = torch.randint(0, n - num_samples + 1, (batch_size,), generator=generator)
        idx = starts.to(self.audio.device)[:, None] + torch.arange(num_samples, device=self.audio.device)[None]
        g = torch.empty(batch_size, 1).uniform_(*gain, generator=generator).to(self.audio.device)
        return self.audio[idx] * g

"""WAV reading and writing that never misreads a file silently.

`load_wav` reads PCM WAV with the standard library (other containers and float
WAV through `av`), checks the header against the data, and refuses a sample
rate other than the one asked for unless `resample=True`, in which case it
resamples with `torchaudio.functional.resample`. Every error names the file.
"""

from __future__ import annotations

import os
import wave

import numpy as np
import torch


class AudioFileError(ValueError):
    """A file that is missing, corrupt, or not what the caller asked for."""


def _read_pcm_wave(path: str) -> tuple[np.ndarray, int]:
    with wave.open(path, "rb") as w:
        channels, width, rate, frames = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
        raw = w.readframes(frames)
    if rate <= 0 or channels <= 0:
        raise AudioFileError(f"{path}: invalid WAV header (rate {rate}, channels {channels})")
    expected = frames * channels * width
    if len(raw) < expected:
        raise AudioFileError(
            f"{path}: truncated WAV data: header promises {frames} frames, file holds {len(raw) // max(1, channels * width)}"
        )
    if width == 1:
        data = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        data = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
    elif width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        data = (np.where(v >= 1 << 23, v - (1 << 24), v)).astype(np.float32) / float(1 << 23)
    elif width == 4:
        data = np.frombuffer(raw, "<i4").astype(np.float32) / float(1 << 31)
    else:
        raise AudioFileError(f"{path}: unsupported PCM sample width {width} bytes")
    return data.reshape(-1, channels).T.copy(), rate


def _read_with_av(path: str) -> tuple[np.ndarray, int]:
    import av  # only for non-PCM files

    try:
        with av.open(path) as container:
            stream = next((s for s in container.streams if s.type == "audio"), None)
            if stream is None:
                raise AudioFileError(f"{path}: no audio stream")
            rate = stream.codec_context.sample_rate
            chunks = [f.to_ndarray() for f in container.decode(stream)]
    except AudioFileError:
        raise
    except Exception as e:  # av raises many types for corrupt input
        raise AudioFileError(f"{path}: not a readable audio file ({type(e).__name__}: {e})") from None
    if not chunks:
        raise AudioFileError(f"{path}: audio stream holds no samples")
    data = np.concatenate([c if c.ndim == 2 else c[None] for c in chunks], axis=-1).astype(np.float32)
    if np.issubdtype(chunks[0].dtype, np.integer):
        data /= float(np.iinfo(chunks[0].dtype).max) + 1.0
    return data, rate


def load_wav(path: str | os.PathLike, sample_rate: int = 16000, resample: bool = False, mono: bool = True) -> torch.Tensor:
    """Read an audio file -> float32 tensor in [-1, 1]: [N] if mono else [C, N].

    Raises AudioFileError when the file is missing, corrupt, truncated, or has a
    sample rate other than `sample_rate` while `resample` is False.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise AudioFileError(f"{path}: no such file")
    try:
        data, rate = _read_pcm_wave(path)
    except (wave.Error, EOFError) as e:
        if _looks_like_riff(path) and "unknown format" not in str(e):
            raise AudioFileError(f"{path}: corrupt WAV file ({e})") from None
        data, rate = _read_with_av(path)  # float WAV or another container
    if not np.all(np.isfinite(data)):
        raise AudioFileError(f"{path}: contains NaN or infinite samples")
    wav = torch.from_numpy(data)
    if mono:
        wav = wav.mean(0)
    if rate != sample_rate:
        if not resample:
            raise AudioFileError(
                f"{path}: sample rate is {rate} Hz, expected {sample_rate} Hz "
                "(pass resample=True, or --resample on the command line, to convert)"
            )
        import torchaudio.functional as AF

        wav = AF.resample(wav, rate, sample_rate)
    return wav.contiguous()


def _looks_like_riff(path: str) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(12)
    return head[:4] == b"RIFF" and head[8:12] == b"WAVE"


def save_wav(path: str | os.PathLike, wav: torch.Tensor | np.ndarray, sample_rate: int = 16000) -> None:
    """Write mono [N] (or [C, N]) float audio in [-1, 1] as 16-bit PCM WAV."""
    data = wav.detach().cpu().float().numpy() if isinstance(wav, torch.Tensor) else np.asarray(wav, np.float32)
    if data.ndim == 1:
        data = data[None]
    if data.ndim != 2:
        raise ValueError(f"save_wav: expected [N] or [C, N] audio, got shape {data.shape}")
    pcm = (np.clip(data, -1.0, 1.0) * 32767.0).round().astype("<i2")
    with wave.open(os.fspath(path), "wb") as w:
        w.setnchannels(pcm.shape[0])
        w.setsampwidth(2)
        w.setframerate(int(sample_rate))
        w.writeframes(pcm.T.tobytes())

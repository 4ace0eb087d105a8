"""Waveform helpers shared by the generator and the GPU-side pack reader: numpy + stdlib only.

- WAV I/O (16-bit PCM mono, stdlib `wave`).
- Background noise (white, pink, brown, mains hum, babble) mixed at a target SNR.
- mu-law 8-bit companding, used by the pack to halve the size of clean speech:
  its quantization noise (~38 dB SNR) sits far below the noise added in training.

GPU machines have no espeak-ng, sox or av, so nothing here may need them.
"""

from __future__ import annotations

import io
import wave
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000
NOISE_KINDS: tuple[str, ...] = ("none", "white", "pink", "brown", "hum", "babble")
NOISE_PROBS: tuple[float, ...] = (0.1, 0.15, 0.2, 0.15, 0.15, 0.25)  # aligned with NOISE_KINDS
SNR_RANGE_DB = (8.0, 30.0)
LEAD_RANGE_S = (0.1, 0.5)  # silence before the question
TAIL_RANGE_S = (0.3, 0.7)  # silence after it (endpointing needs some)
# training's fresh draws: a streamed turn is cut ~130 ms into the silence (the server's
# speculation point), so training hears tails from 0.1 s, the files on disk keep theirs
TRAIN_TAIL_RANGE_S = (0.1, 0.7)
GAIN_RANGE_DB = (-6.0, 3.0)
_MU = 255.0


def random_noise_params(rng: np.random.Generator, tail_range: tuple[float, float] = TAIL_RANGE_S) -> dict:
    """One draw of the microphone conditions (the same law on disk and in GPU-side augmentation,
    but for the silence after the question: `tail_range`, TRAIN_TAIL_RANGE_S in training)."""
    return {
        "kind": str(rng.choice(NOISE_KINDS, p=NOISE_PROBS)),
        "snr_db": round(float(rng.uniform(*SNR_RANGE_DB)), 1),
        "lead_s": round(float(rng.uniform(*LEAD_RANGE_S)), 2),
        "tail_s": round(float(rng.uniform(*tail_range)), 2),
        "gain_db": round(float(rng.uniform(*GAIN_RANGE_DB)), 1),
    }


def change_speed(x: np.ndarray, factor: float) -> np.ndarray:
    """Play `factor` times faster (tempo and pitch together, like sox `speed`), linear interpolation."""
    if factor <= 0:
        raise ValueError(f"speed factor must be positive, got {factor}")
    n_out = max(1, int(round(len(x) / factor)))
    pos = np.arange(n_out, dtype=np.float64) * factor
    return np.interp(pos, np.arange(len(x)), x.astype(np.float32)).astype(np.float32)


def read_wav(source: str | Path | bytes) -> tuple[np.ndarray, int]:
    """int16 mono samples and the sample rate of a 16-bit PCM WAV (path or bytes)."""
    fh = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else open(source, "rb")
    name = "<bytes>" if isinstance(source, (bytes, bytearray)) else str(source)
    try:
        with wave.open(fh, "rb") as w:
            if w.getsampwidth() != 2:
                raise ValueError(f"{name}: expected 16-bit PCM, got {8 * w.getsampwidth()}-bit")
            data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
            if w.getnchannels() > 1:
                data = data.reshape(-1, w.getnchannels())[:, 0]
            return data.astype(np.int16), w.getframerate()
    except wave.Error as exc:
        raise ValueError(f"{name}: not a PCM WAV file ({exc})") from None
    finally:
        fh.close()


def write_wav(path: str | Path, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    if samples.dtype != np.int16:
        samples = to_int16(samples)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(samples.astype("<i2").tobytes())


def to_float(samples: np.ndarray) -> np.ndarray:
    return samples.astype(np.float32) / 32768.0


def to_int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16)


def mulaw_encode(x: np.ndarray) -> np.ndarray:
    """float in [-1, 1] -> uint8 (continuous mu-law, mu = 255)."""
    x = np.clip(x.astype(np.float32), -1.0, 1.0)
    y = np.sign(x) * np.log1p(_MU * np.abs(x)) / np.log1p(_MU)
    return np.clip(np.round((y + 1.0) * 127.5), 0, 255).astype(np.uint8)


def mulaw_decode(code: np.ndarray) -> np.ndarray:
    """uint8 -> float32 in [-1, 1]; the inverse of `mulaw_encode` up to quantization."""
    y = code.astype(np.float32) / 127.5 - 1.0
    return (np.sign(y) * np.expm1(np.abs(y) * np.log1p(_MU)) / _MU).astype(np.float32)


def make_noise(
    kind: str, num_samples: int, rng: np.random.Generator, babble_sources: list[np.ndarray] | None = None
) -> np.ndarray:
    """Unit-RMS float32 noise of `kind` (see NOISE_KINDS); "none" gives zeros."""
    if kind not in NOISE_KINDS:
        raise ValueError(f"unknown noise kind {kind!r}; known: {NOISE_KINDS}")
    n = int(num_samples)
    if kind == "none" or n == 0:
        return np.zeros(n, np.float32)
    if kind == "white":
        noise = rng.standard_normal(n)
    elif kind in ("pink", "brown"):
        # Shape white noise in frequency: power ~ 1/f (pink) or 1/f^2 (brown).
        spec = np.fft.rfft(rng.standard_normal(n))
        f = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
        f[0] = f[1] if n > 1 else 1.0
        spec /= np.sqrt(f) if kind == "pink" else f
        noise = np.fft.irfft(spec, n)
    elif kind == "hum":
        t = np.arange(n) / SAMPLE_RATE
        base = float(rng.choice([50.0, 60.0]))
        noise = sum(np.sin(2 * np.pi * base * k * t + rng.uniform(0, 2 * np.pi)) / k for k in (1, 2, 3, 5))
        noise = noise + 0.1 * rng.standard_normal(n)
    else:  # babble: several other utterances overlapped, each at a random offset
        if not babble_sources:
            return make_noise("pink", n, rng)
        noise = np.zeros(n, np.float64)
        for _ in range(3):
            src = babble_sources[int(rng.integers(len(babble_sources)))].astype(np.float64)
            if len(src) == 0:
                continue
            reps = int(np.ceil(n / len(src))) + 1
            tiled = np.tile(src, reps)
            start = int(rng.integers(len(src)))
            noise += tiled[start : start + n]
    noise = np.asarray(noise, np.float64)
    rms = float(np.sqrt(np.mean(noise**2))) or 1.0
    return (noise / rms).astype(np.float32)


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """speech + noise scaled so that 10*log10(P_speech / P_noise) = snr_db (speech power over voiced part)."""
    speech = speech.astype(np.float32)
    voiced = np.abs(speech) > 1e-3
    p_speech = float(np.mean(speech[voiced] ** 2)) if voiced.any() else 0.0
    p_noise = float(np.mean(noise.astype(np.float64) ** 2))
    if p_speech == 0.0 or p_noise == 0.0:
        return speech.copy()
    scale = np.sqrt(p_speech / (p_noise * 10 ** (snr_db / 10.0)))
    return (speech + scale * noise).astype(np.float32)


def augment(
    speech: np.ndarray,
    rng: np.random.Generator,
    noise_kind: str,
    snr_db: float,
    lead_s: float,
    tail_s: float,
    gain_db: float,
    babble_sources: list[np.ndarray] | None = None,
) -> np.ndarray:
    """Clean float speech -> what a microphone hears: silence padding, noise, gain, no clipping."""
    pad = np.zeros(int(round(lead_s * SAMPLE_RATE)), np.float32), np.zeros(int(round(tail_s * SAMPLE_RATE)), np.float32)
    x = np.concatenate([pad[0], speech.astype(np.float32), pad[1]])
    x = mix_at_snr(x, make_noise(noise_kind, len(x), rng, babble_sources), snr_db)
    x *= 10 ** (gain_db / 20.0)
    peak = float(np.max(np.abs(x))) if len(x) else 0.0
    if peak > 0.98:
        x *= 0.98 / peak
    return x.astype(np.float32)

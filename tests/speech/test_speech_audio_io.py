"""WAV input: corrupt files and wrong sample rates give clear errors; resampling only when asked."""

from __future__ import annotations

import math
import wave

import numpy as np
import pytest
import torch

from speech.audio_io import AudioFileError, load_wav, save_wav


def _sine(freq: float, sr: int, seconds: float = 0.5) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (0.5 * np.sin(2 * math.pi * freq * t)).astype(np.float32)


def test_roundtrip_16bit(tmp_path) -> None:
    x = _sine(440, 16000)
    p = tmp_path / "a.wav"
    save_wav(p, x, 16000)
    y = load_wav(p)
    assert y.dtype == torch.float32 and y.shape == (len(x),)
    assert float((y - torch.from_numpy(x)).abs().max()) < 1 / 32767 + 1e-6


def test_wrong_rate_is_refused_then_resampled(tmp_path) -> None:
    x = _sine(440, 8000)
    p = tmp_path / "low.wav"
    save_wav(p, x, 8000)
    with pytest.raises(AudioFileError, match=r"low\.wav: sample rate is 8000 Hz, expected 16000 Hz"):
        load_wav(p)
    y = load_wav(p, 16000, resample=True)
    assert y.shape[0] == 2 * len(x)
    ref = torch.from_numpy(_sine(440, 16000))
    mid = slice(400, 7600)  # away from the resampler's edges
    assert float((y[mid] - ref[mid]).abs().max()) < 0.02


def test_corrupt_and_truncated_files(tmp_path) -> None:
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(AudioFileError, match="junk.wav"):
        load_wav(junk)
    bad_header = tmp_path / "hdr.wav"
    bad_header.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00garbage-garbage")
    with pytest.raises(AudioFileError, match=r"hdr\.wav: (corrupt WAV|not a readable audio file)"):
        load_wav(bad_header)
    good = tmp_path / "good.wav"
    save_wav(good, _sine(440, 16000), 16000)
    cut = tmp_path / "cut.wav"
    cut.write_bytes(good.read_bytes()[:5000])  # header still promises 8000 frames
    with pytest.raises(AudioFileError, match="cut.wav: truncated WAV data"):
        load_wav(cut)
    with pytest.raises(AudioFileError, match="no such file"):
        load_wav(tmp_path / "missing.wav")


def test_stereo_24bit_is_read_correctly(tmp_path) -> None:
    x = _sine(300, 16000, 0.1)
    pcm = (x * (1 << 23)).astype(np.int32)
    stereo = np.stack([pcm, -pcm], 1).reshape(-1)
    raw = b"".join(int(v & 0xFFFFFF).to_bytes(3, "little") for v in stereo)
    p = tmp_path / "s24.wav"
    with wave.open(str(p), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(3)
        w.setframerate(16000)
        w.writeframes(raw)
    both = load_wav(p, mono=False)
    assert both.shape == (2, len(x))
    assert float((both[0] - torch.from_numpy(x)).abs().max()) < 1e-5
    assert float(load_wav(p).abs().max()) < 1e-5  # the mono mix of opposite channels cancels

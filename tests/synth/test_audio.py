"""Audio helpers: mu-law accuracy, noise spectra and SNR, WAV round trip."""

from __future__ import annotations

import numpy as np
import pytest

from omni.synth.audio import (
    augment,
    change_speed,
    make_noise,
    mix_at_snr,
    mulaw_decode,
    mulaw_encode,
    read_wav,
    to_float,
    write_wav,
)


def _snr(ref: np.ndarray, est: np.ndarray) -> float:
    return 10 * np.log10(np.sum(ref**2) / np.sum((ref - est) ** 2))


def test_mulaw_matches_the_companding_law_and_keeps_speechlike_snr() -> None:
    rng = np.random.default_rng(0)
    # speech-like: a Laplacian with a slowly varying envelope
    x = rng.laplace(size=32000) * np.abs(np.sin(np.linspace(0, 20, 32000))) * 0.1
    y = mulaw_decode(mulaw_encode(x))
    assert _snr(x, y) > 33.0
    # independent reference: the textbook formula, quantized to 256 levels
    mu = 255.0
    comp = np.sign(x) * np.log1p(mu * np.abs(np.clip(x, -1, 1))) / np.log1p(mu)
    q = np.round((comp + 1) * 127.5) / 127.5 - 1
    ref = np.sign(q) * ((1 + mu) ** np.abs(q) - 1) / mu
    np.testing.assert_allclose(y, ref, atol=1e-6)
    assert mulaw_encode(np.array([-1.0, 0.0, 1.0])).tolist() == [0, 128, 255]


@pytest.mark.parametrize("kind,slope", [("white", 0.0), ("pink", -1.0), ("brown", -2.0)])
def test_noise_spectra_have_the_right_slope(kind: str, slope: float) -> None:
    n = make_noise(kind, 160000, np.random.default_rng(1))
    assert abs(np.sqrt(np.mean(n**2)) - 1.0) < 1e-3
    spec = np.abs(np.fft.rfft(n)) ** 2
    f = np.fft.rfftfreq(len(n), 1 / 16000)
    band = (f > 100) & (f < 6000)
    fit = np.polyfit(np.log10(f[band]), np.log10(spec[band] + 1e-20), 1)[0]
    assert abs(fit - slope) < 0.15, f"{kind}: log-log slope {fit:.2f}, want {slope}"


def test_mix_reaches_the_requested_snr() -> None:
    rng = np.random.default_rng(2)
    speech = (np.sin(np.linspace(0, 900, 16000)) * 0.3).astype(np.float32)
    noise = make_noise("white", 16000, rng)
    for snr in (5.0, 15.0, 30.0):
        mixed = mix_at_snr(speech, noise, snr)
        got = 10 * np.log10(np.mean(speech**2) / np.mean((mixed - speech) ** 2))
        assert abs(got - snr) < 0.05


def test_augment_pads_and_never_clips() -> None:
    rng = np.random.default_rng(3)
    speech = np.ones(8000, np.float32) * 0.9
    out = augment(speech, rng, "babble", 10.0, 0.25, 0.5, 6.0, [np.ones(100, np.float32)])
    assert len(out) == 8000 + 4000 + 8000
    assert np.max(np.abs(out)) <= 0.98 + 1e-6
    assert len(change_speed(speech, 1.1)) == round(8000 / 1.1)


def test_wav_roundtrip_and_clear_errors(tmp_path) -> None:
    x = (np.random.default_rng(4).standard_normal(1600) * 3000).astype(np.int16)
    write_wav(tmp_path / "a.wav", x)
    y, rate = read_wav(tmp_path / "a.wav")
    assert rate == 16000 and np.array_equal(x, y)
    assert np.allclose(to_float(y) * 32768, x)
    (tmp_path / "bad.wav").write_bytes(b"not a wav at all")
    with pytest.raises(ValueError, match="bad.wav"):
        read_wav(tmp_path / "bad.wav")
    with pytest.raises(ValueError, match="unknown noise kind"):
        make_noise("rain", 10, np.random.default_rng(0))

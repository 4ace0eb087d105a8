"""Reconstruction and adversarial losses for codec training.

Spectral losses run in float32 even under bf16 autocast (an STFT of bf16 audio
loses most of its dynamic range).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchaudio.functional as AF
from torch import nn


def _stft_mag(x: torch.Tensor, n_fft: int, hop: int, window: torch.Tensor) -> torch.Tensor:
    spec = torch.stft(x.float(), n_fft, hop, n_fft, window, center=True, return_complex=True)
    return spec.abs().clamp_min(1e-7)


class MultiResolutionSTFTLoss(nn.Module):
    """Spectral convergence + L1 log-magnitude at several FFT sizes."""

    def __init__(self, fft_sizes: tuple[int, ...] = (256, 512, 1024, 2048)) -> None:
        super().__init__()
        self.fft_sizes = fft_sizes
        for n in fft_sizes:
            self.register_buffer(f"win{n}", torch.hann_window(n), persistent=False)

    def forward(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """y: reconstruction [B, N], x: target [B, N]."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            loss = x.new_zeros((), dtype=torch.float32)
            for n in self.fft_sizes:
                w = getattr(self, f"win{n}")
                sy, sx = _stft_mag(y, n, n // 4, w), _stft_mag(x, n, n // 4, w)
                sc = torch.linalg.norm(sx - sy) / torch.linalg.norm(sx).clamp_min(1e-7)
                loss = loss + sc + F.l1_loss(sy.log(), sx.log())
            return loss / len(self.fft_sizes)


def parse_band_weights(spec: str) -> list[tuple[float, float, float]]:
    """"2000-8000:2,0-500:1.5" -> [(lo_hz, hi_hz, weight), ...] (mel bins centred in a band get its weight)."""
    bands = []
    for part in filter(None, (x.strip() for x in spec.split(","))):
        rng, sep, w = part.partition(":")
        lo, dash, hi = rng.partition("-")
        try:
            lo_f, hi_f, w_f = float(lo), float(hi), float(w)
        except ValueError:
            lo_f = hi_f = w_f = -1.0
        if not sep or not dash or not 0 <= lo_f < hi_f or w_f <= 0:
            raise ValueError(f"mel band weight {part!r}: expected LO-HI:WEIGHT in Hz, e.g. 2000-8000:2")
        bands.append((lo_f, hi_f, w_f))
    return bands


def mel_bin_weights(num_mels: int, sample_rate: int, bands: list[tuple[float, float, float]]) -> torch.Tensor:
    """Per mel bin weights from `bands` (1 elsewhere), scaled to mean 1 so the loss keeps its size."""
    # the centre frequency of each slaney mel filter: its peak on a fine linear grid
    hz = torch.linspace(0, sample_rate / 2, 4097)
    fb = AF.melscale_fbanks(4097, 0.0, sample_rate / 2, num_mels, sample_rate, norm=None, mel_scale="slaney")
    peak = hz[fb.argmax(0)]
    w = torch.ones(num_mels)
    for lo, hi, weight in bands:
        w[(peak >= lo) & (peak < hi)] = weight
    return w / w.mean()


def onset_weights(mel_x: torch.Tensor, hop_s: float, strength: float, window_s: float = 0.1, hold_s: float = 0.15) -> torch.Tensor:
    """Per-frame weights [B, 1, T] that favour speech onsets of the target `mel_x` [B, mels, T] (log10).

    A frame's onset strength is how far its mean log-mel rises above the quietest frame of
    the previous `window_s` (1 log10 unit, 20 dB, or more = 1); it is held for `hold_s`
    after the onset, and the weights 1 + strength * onset are scaled to mean 1. Measured
    on the shipped codec: the first ~60 ms of an answer after silence carry twice the mel
    error of the rest, and restoring its 20-150 ms recovers 17 of the 30 answers the judge
    misses (bench/codec_answer_probe.py).
    """
    e = mel_x.mean(1, keepdim=True)  # [B, 1, T]
    w_back = max(1, round(window_s / hop_s))
    w_hold = max(1, round(hold_s / hop_s))
    floor = -F.max_pool1d(F.pad(-e, (w_back, 0), value=-1e4), w_back + 1, stride=1)  # min over the past window
    rise = (e - floor).clamp(0.0, 1.0)
    held = F.max_pool1d(F.pad(rise, (w_hold, 0)), w_hold + 1, stride=1)
    w = 1.0 + strength * held
    return w / w.mean()


class MelLoss(nn.Module):
    """L1 between log10 mel spectrograms at several scales (as DAC).

    `band_weights` [(lo_hz, hi_hz, weight)] weights the L1 per mel bin (normalized to
    mean 1 per scale); `onset_weight` > 0 weights frames after a speech onset
    (`onset_weights`). `losses` returns (weighted, plain) so logs stay comparable.
    """

    def __init__(self, sample_rate: int = 16000, scales: tuple[tuple[int, int], ...] = ((128, 10), (256, 20), (512, 40), (1024, 80), (2048, 160)),
                 band_weights: list[tuple[float, float, float]] | None = None, onset_weight: float = 0.0) -> None:
        super().__init__()
        self.scales = scales
        self.sample_rate = sample_rate
        self.band_weighted = bool(band_weights)
        self.onset_weight = float(onset_weight)
        self.weighted = self.band_weighted or self.onset_weight > 0
        for n, mels in scales:
            fb = AF.melscale_fbanks(n // 2 + 1, 0.0, sample_rate / 2, mels, sample_rate, norm="slaney", mel_scale="slaney")
            self.register_buffer(f"fb{n}", fb, persistent=False)
            self.register_buffer(f"win{n}", torch.hann_window(n), persistent=False)
            if self.band_weighted:
                self.register_buffer(f"bw{n}", mel_bin_weights(mels, sample_rate, band_weights)[:, None], persistent=False)

    def mel(self, x: torch.Tensor, n: int) -> torch.Tensor:
        mag = _stft_mag(x, n, n // 4, getattr(self, f"win{n}"))  # [B, F, frames]
        return torch.einsum("bft,fm->bmt", mag, getattr(self, f"fb{n}")).clamp_min(1e-5).log10()

    def losses(self, y: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(weighted loss, plain loss); the same value twice without band or onset weights."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            plain = x.new_zeros((), dtype=torch.float32)
            weighted = plain
            for n, _ in self.scales:
                mx = self.mel(x, n)
                d = (self.mel(y, n) - mx).abs()  # [B, mels, frames]
                plain = plain + d.mean()
                if self.weighted:
                    if self.band_weighted:
                        d = d * getattr(self, f"bw{n}")
                    if self.onset_weight > 0:
                        d = d * onset_weights(mx, n / 4 / self.sample_rate, self.onset_weight)
                    weighted = weighted + d.mean()
            plain = plain / len(self.scales)
            return (weighted / len(self.scales) if self.weighted else plain), plain

    def forward(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.losses(y, x)[0]


def mel_distance(y: torch.Tensor, x: torch.Tensor, sample_rate: int = 16000) -> float:
    """Mean L1 distance of 80-bin log10 mel spectrograms (n_fft 1024), a quality metric."""
    n = min(y.shape[-1], x.shape[-1])
    m = MelLoss(sample_rate, ((1024, 80),)).to(x.device)
    return float(m(y[..., :n].reshape(1, -1) if y.dim() == 1 else y[..., :n], x[..., :n].reshape(1, -1) if x.dim() == 1 else x[..., :n]))


def discriminator_loss(real_outs: list[torch.Tensor], fake_outs: list[torch.Tensor]) -> torch.Tensor:
    """Least-squares GAN: real -> 1, fake -> 0."""
    loss = 0.0
    for r, f in zip(real_outs, fake_outs):
        loss = loss + torch.mean((1 - r.float()) ** 2) + torch.mean(f.float() ** 2)
    return loss / len(real_outs)


def generator_adv_loss(fake_outs: list[torch.Tensor]) -> torch.Tensor:
    return sum(torch.mean((1 - f.float()) ** 2) for f in fake_outs) / len(fake_outs)


def feature_matching_loss(real_feats: list[list[torch.Tensor]], fake_feats: list[list[torch.Tensor]]) -> torch.Tensor:
    """L1 between discriminator features of real and generated audio (relative to the real scale)."""
    loss, n = 0.0, 0
    for rs, fs in zip(real_feats, fake_feats):
        for r, f in zip(rs, fs):
            r = r.detach().float()
            loss = loss + F.l1_loss(f.float(), r) / (r.abs().mean() + 1e-5)
            n += 1
    return loss / max(n, 1)

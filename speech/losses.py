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


class MelLoss(nn.Module):
    """L1 between log10 mel spectrograms at several scales (as DAC)."""

    def __init__(self, sample_rate: int = 16000, scales: tuple[tuple[int, int], ...] = ((128, 10), (256, 20), (512, 40), (1024, 80), (2048, 160))) -> None:
        super().__init__()
        self.scales = scales
        for n, mels in scales:
            fb = AF.melscale_fbanks(n // 2 + 1, 0.0, sample_rate / 2, mels, sample_rate, norm="slaney", mel_scale="slaney")
            self.register_buffer(f"fb{n}", fb, persistent=False)
            self.register_buffer(f"win{n}", torch.hann_window(n), persistent=False)

    def mel(self, x: torch.Tensor, n: int) -> torch.Tensor:
        mag = _stft_mag(x, n, n // 4, getattr(self, f"win{n}"))  # [B, F, frames]
        return torch.einsum("bft,fm->bmt", mag, getattr(self, f"fb{n}")).clamp_min(1e-5).log10()

    def forward(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            loss = x.new_zeros((), dtype=torch.float32)
            for n, _ in self.scales:
                loss = loss + F.l1_loss(self.mel(y, n), self.mel(x, n))
            return loss / len(self.scales)


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

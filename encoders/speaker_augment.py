"""Speaker augmentation of log-mel features, for training only.

A model trained on a few hundred voices learns those voices: the default model's
audio path transcribes its training clips perfectly and unseen speakers badly.
What differs between speakers is mostly the vocal tract (formant positions), the
pitch and the spectral slope of the voice and the microphone, so each row is
heard as another speaker by

  - a frequency warp (vocal tract length perturbation in the mel domain): the
    envelope is stretched or squeezed by a factor in [1/(1+w), 1+w];
  - a spectral tilt: a linear ramp of +-`tilt_db` across the mel bins;
  - frequency masks (SpecAugment): `masks` bands of up to `mask_bins` bins set to
    the normalized mean, so no single band can carry a word.

`AudioFrontend` applies it between the fbank and the CMVN (masks after the CMVN)
when the module is in training mode and `frontend.augment` is set; serving,
streaming and evaluation never see it. The draws come from `generator` (on the
features' device), so a resumed step draws the same.
"""

from __future__ import annotations

import math

import torch

_DB_TO_LN_POWER = math.log(10.0) / 10.0  # log-mel is the natural log of power


class SpeakerAugment:
    def __init__(self, warp: float = 0.15, tilt_db: float = 6.0, masks: int = 2, mask_bins: int = 10,
                 generator: torch.Generator | None = None) -> None:
        if warp < 0 or tilt_db < 0 or masks < 0 or mask_bins < 0:
            raise ValueError("speaker augmentation amounts must be >= 0")
        self.warp, self.tilt_db, self.masks, self.mask_bins = warp, tilt_db, masks, mask_bins
        self.generator = generator

    def _uniform(self, n: int, lo: float, hi: float, device) -> torch.Tensor:
        u = torch.rand(n, device=device, generator=self.generator)
        return lo + (hi - lo) * u

    def spectral(self, fb: torch.Tensor) -> torch.Tensor:
        """Warp and tilt of log-mel [B, T, M] (before the CMVN)."""
        b, _, m = fb.shape
        out = fb
        if self.warp > 0:
            lw = math.log1p(self.warp)
            alpha = torch.exp(self._uniform(b, -lw, lw, fb.device))  # [B]
            src = (torch.arange(m, device=fb.device, dtype=fb.dtype)[None] / alpha[:, None]).clamp(0, m - 1)
            lo = src.floor().long()
            hi = (lo + 1).clamp_max(m - 1)
            frac = (src - lo.to(fb.dtype))[:, None, :]
            gather = lambda idx: torch.gather(out, 2, idx[:, None, :].expand(-1, out.shape[1], -1))
            out = gather(lo) * (1 - frac) + gather(hi) * frac
        if self.tilt_db > 0:
            slope = self._uniform(b, -self.tilt_db, self.tilt_db, fb.device) * _DB_TO_LN_POWER
            ramp = torch.linspace(-0.5, 0.5, m, device=fb.device, dtype=fb.dtype)
            out = out + (slope[:, None] * ramp[None])[:, None, :]
        return out

    def mask(self, x: torch.Tensor) -> torch.Tensor:
        """Frequency masks on normalized features [B, T, M] (zero = the mean)."""
        if self.masks <= 0 or self.mask_bins <= 0:
            return x
        b, _, m = x.shape
        keep = torch.ones(b, m, device=x.device, dtype=torch.bool)
        bins = torch.arange(m, device=x.device)[None]
        for _ in range(self.masks):
            width = (self._uniform(b, 0, self.mask_bins + 1, x.device)).floor().long().clamp_max(self.mask_bins)
            start = (self._uniform(b, 0, 1, x.device) * (m - width + 1).to(x.dtype)).floor().long()
            keep &= ~((bins >= start[:, None]) & (bins < (start + width)[:, None]))
        return x * keep[:, None, :].to(x.dtype)

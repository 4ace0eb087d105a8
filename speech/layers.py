"""Building blocks of the codec: weight-normalized convolutions and Snake.

The official LongCat-Audio-Codec decoder uses the old-style
`torch.nn.utils.weight_norm`, whose state dict holds `weight_g` / `weight_v`
per convolution; we keep that exact form so the official decoder loads with
`strict=True`. For inference, `fold_weight_norm` bakes the normalized weight
back into a plain `weight` once, instead of recomputing it on every step.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn


def _weight_norm(module: nn.Module) -> nn.Module:
    # The old API is deprecated in favour of parametrizations, but only it
    # produces the `weight_g`/`weight_v` keys of the released checkpoints.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return nn.utils.weight_norm(module)


def WNConv1d(*args, **kwargs) -> nn.Conv1d:
    return _weight_norm(nn.Conv1d(*args, **kwargs))


def WNConvTranspose1d(*args, **kwargs) -> nn.ConvTranspose1d:
    return _weight_norm(nn.ConvTranspose1d(*args, **kwargs))


def snake(x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """x + sin^2(alpha x) / alpha: a periodic activation that suits waveforms."""
    return x + (alpha + 1e-9).reciprocal() * torch.sin(alpha * x).pow(2)


class Snake1d(nn.Module):
    """Snake activation with one learned frequency per channel (`alpha` [1, C, 1])."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return snake(x, self.alpha)


def fold_weight_norm(module: nn.Module) -> nn.Module:
    """Replace every old-style weight norm inside `module` by its plain weight (in place)."""
    for m in module.modules():
        if hasattr(m, "weight_g") and hasattr(m, "weight_v"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                nn.utils.remove_weight_norm(m)
    return module


def has_weight_norm(module: nn.Module) -> bool:
    return any(hasattr(m, "weight_g") for m in module.modules())

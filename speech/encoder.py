"""The codec's convolutional encoder: 16 kHz waveform -> latent frames at 16.67 Hz.

DAC-style, as the official acoustic encoder (`Encoder(d_model, strides, d_latent)`):
a 7-tap input conv, then one block per stride (three residual units with
dilations 1, 3, 9 at the block's input width, Snake, then a strided conv that
doubles the channels), Snake, and a 3-tap conv to the latent width. The product
of the strides (4 * 5 * 6 * 8 = 960) is the codec hop. Tokenization is offline
(the LLM reads speech through the continuous audio encoder), so the encoder is
non-causal.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from speech.layers import Snake1d, WNConv1d


class EncResidualUnit(nn.Module):
    def __init__(self, dim: int, dilation: int) -> None:
        super().__init__()
        pad = 3 * dilation
        self.block = nn.Sequential(
            Snake1d(dim),
            WNConv1d(dim, dim, kernel_size=7, dilation=dilation, padding=pad),
            Snake1d(dim),
            WNConv1d(dim, dim, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class EncoderBlock(nn.Module):
    def __init__(self, dim: int, stride: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            EncResidualUnit(dim // 2, 1),
            EncResidualUnit(dim // 2, 3),
            EncResidualUnit(dim // 2, 9),
            Snake1d(dim // 2),
            WNConv1d(dim // 2, dim, kernel_size=2 * stride, stride=stride, padding=math.ceil(stride / 2)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class Encoder(nn.Module):
    def __init__(self, d_model: int, strides: tuple[int, ...], d_latent: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [WNConv1d(1, d_model, kernel_size=7, padding=3)]
        for stride in strides:
            d_model *= 2
            layers.append(EncoderBlock(d_model, stride))
        layers += [Snake1d(d_model), WNConv1d(d_model, d_latent, kernel_size=3, padding=1)]
        self.block = nn.Sequential(*layers)
        self.hop = math.prod(strides)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """wav [B, N] with N a multiple of the hop -> latents [B, d_latent, N / hop]."""
        z = self.block(wav.unsqueeze(1))
        return z[..., : wav.shape[-1] // self.hop]

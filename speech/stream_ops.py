"""Fast kernels for the decoder's `step` (one stream, or a batch of streams).

Decoding one 60 ms frame touches tensors of a few hundred samples, where the
generic PyTorch CPU paths are dominated by overhead: dilated `conv1d` falls back
to a slow per-channel loop and a one-step `nn.LSTM` call costs ~0.7 ms in
oneDNN set-up. Here every convolution is an explicit "valid" im2col + one
matrix product, and the LSTM step is one fused gate matmul. The math is the
same as the full-sequence modules (tested to float rounding).

`prepare(module)` caches the reshaped weights on each conv / LSTM (call it after
training is over: the caches are snapshots); without it the weights are
re-derived on every call, which is slower but always current.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_CACHE = "_stream_cache"


def _effective_weight(m: nn.Module) -> torch.Tensor:
    if hasattr(m, "weight_g"):
        return torch._weight_norm(m.weight_v, m.weight_g, 0)
    return m.weight


def _conv_matrix(conv: nn.Conv1d) -> tuple[torch.Tensor, torch.Tensor | None]:
    cached = getattr(conv, _CACHE, None)
    if cached is not None:
        return cached
    w = _effective_weight(conv)  # [Cout, Cin, k]
    return w.permute(0, 2, 1).reshape(w.shape[0], -1), conv.bias  # [Cout, k * Cin], taps outer


# Up to this many time steps per stream, a batch of streams is multiplied as one GEMM
# over all B * n columns: at a few samples per stream the product is bound by reading
# the weights, which a per-stream (batched-matmul) product does once per stream.
FOLD_MAX_STEPS = 16


def _matmul_streams(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """w [M, K] @ x [B, K, n] -> [B, M, n] (a strided view when folded)."""
    B, K, n = x.shape
    if B == 1 or n > FOLD_MAX_STEPS:
        return torch.matmul(w, x)
    y = torch.mm(w, x.transpose(0, 1).reshape(K, B * n))
    return y.view(-1, B, n).transpose(0, 1)


def conv_valid(x: torch.Tensor, conv: nn.Conv1d) -> torch.Tensor:
    """Unpadded conv1d: x [B, Cin, n + (k-1)d] -> [B, Cout, n]."""
    w, b = _conv_matrix(conv)
    k, d = conv.kernel_size[0], conv.dilation[0]
    n = x.shape[-1] - (k - 1) * d
    if k == 1:
        cols = x
    else:
        cols = torch.cat([x[..., i * d : i * d + n] for i in range(k)], dim=1)
    y = _matmul_streams(w, cols)
    return y if b is None else y + b[:, None]


def _tconv_matrix(conv: nn.ConvTranspose1d) -> tuple[torch.Tensor, torch.Tensor | None]:
    cached = getattr(conv, _CACHE, None)
    if cached is not None:
        return cached
    w = _effective_weight(conv)  # [Cin, Cout, s]
    return w.reshape(w.shape[0], -1).t(), conv.bias  # [Cout * s, Cin]


def conv_transpose_nonoverlap(x: torch.Tensor, conv: nn.ConvTranspose1d) -> torch.Tensor:
    """ConvTranspose1d with kernel == stride: x [B, Cin, n] -> [B, Cout, n * s]."""
    w, b = _tconv_matrix(conv)
    s = conv.stride[0]
    B, _, n = x.shape
    y = _matmul_streams(w, x).reshape(B, -1, s, n)  # [B, Cout, s, n]
    y = y.permute(0, 1, 3, 2).reshape(B, -1, n * s)
    return y if b is None else y + b[:, None]


def _lstm_matrix(lstm: nn.LSTM) -> tuple[torch.Tensor, torch.Tensor]:
    cached = getattr(lstm, _CACHE, None)
    if cached is not None:
        return cached
    w = torch.cat([lstm.weight_ih_l0, lstm.weight_hh_l0], dim=1)  # [4H, In + H]
    return w, lstm.bias_ih_l0 + lstm.bias_hh_l0


def lstm_step(x: torch.Tensor, h: torch.Tensor, c: torch.Tensor, lstm: nn.LSTM) -> tuple[torch.Tensor, torch.Tensor]:
    """One LSTM time step; x [B, In], h, c [B, H] -> (h, c). Gate order i, f, g, o as in nn.LSTM."""
    w, b = _lstm_matrix(lstm)
    gates = F.linear(torch.cat([x, h], dim=-1), w, b)
    i, f, g, o = gates.chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def prepare(module: nn.Module) -> nn.Module:
    """Snapshot the stream-layout weights of every conv / LSTM in `module` (inference only)."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.ConvTranspose1d):
                object.__setattr__(m, _CACHE, tuple(t.detach().clone() if t is not None else None for t in _tconv_matrix(m)))
            elif isinstance(m, nn.Conv1d):
                object.__setattr__(m, _CACHE, tuple(t.detach().clone() if t is not None else None for t in _conv_matrix(m)))
            elif isinstance(m, nn.LSTM):
                object.__setattr__(m, _CACHE, tuple(t.detach().clone() for t in _lstm_matrix(m)))
    return module


def unprepare(module: nn.Module) -> nn.Module:
    for m in module.modules():
        if hasattr(m, _CACHE):
            object.__delattr__(m, _CACHE)
    return module

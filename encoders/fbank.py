"""Audio feature front end pieces: batched Kaldi fbank, global CMVN, splicing.

`KaldiFbank` computes the same features as ``torchaudio.compliance.kaldi.fbank``
(snip_edges, povey window, pre-emphasis with replicate pad, power spectrum, Kaldi
mel banks, log with float-eps floor; tests compare against it) but on a batch
[B, samples] and on any device, which streaming many sessions on a GPU needs.
Every frame depends only on its own 25 ms window, so features of a stream cut
at frame boundaries equal those of the whole.

`GlobalCMVN` holds mean / inverse std as buffers, loadable from a Kaldi-style
stats matrix ([2, dim + 1]: sums | count, sums of squares) in Kaldi text or
binary form, or from a WeNet-style JSON.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchaudio.compliance.kaldi import get_mel_banks

from omni.config import AudioEncoderConfig


class KaldiFbank(nn.Module):
    """[B, samples] float waveform in [-1, 1] -> [B, frames, num_mel_bins] log-mel."""

    def __init__(self, cfg: AudioEncoderConfig) -> None:
        super().__init__()
        self.win, self.hop = cfg.window_samples, cfg.hop_samples
        self.n_fft = 1 << (self.win - 1).bit_length()
        self.preemph = cfg.preemphasis
        self.remove_dc = cfg.remove_dc_offset
        window = torch.hann_window(self.win, periodic=False, dtype=torch.float64).pow(0.85)
        self.register_buffer("window", window.float(), persistent=False)
        banks, _ = get_mel_banks(
            cfg.num_mel_bins, self.n_fft, float(cfg.sample_rate), cfg.low_freq, cfg.high_freq, 100.0, -500.0, 1.0
        )
        banks = F.pad(banks, (0, 1))  # the Nyquist bin gets weight 0, as in Kaldi
        self.register_buffer("mel_banks", banks.float(), persistent=False)

    def num_frames(self, num_samples: int) -> int:
        return 0 if num_samples < self.win else (num_samples - self.win) // self.hop + 1

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        if wav.dim() != 2:
            raise ValueError(f"waveform must be [batch, samples], got {tuple(wav.shape)}")
        b, n = wav.shape
        t = self.num_frames(n)
        if t == 0:
            return wav.new_zeros(b, 0, self.mel_banks.shape[0], dtype=torch.float32)
        x = wav.float() * 32768.0  # Kaldi works on 16-bit sample values
        frames = x.unfold(1, self.win, self.hop)[:, :t]  # [B, T, win]
        if self.remove_dc:
            frames = frames - frames.mean(-1, keepdim=True)
        if self.preemph != 0.0:
            prev = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)
            frames = frames - self.preemph * prev
        frames = frames * self.window
        spec = torch.fft.rfft(frames, n=self.n_fft).abs().pow(2)  # [B, T, n_fft/2 + 1]
        mel = spec @ self.mel_banks.t()
        return mel.clamp_min(torch.finfo(torch.float32).eps).log()


class GlobalCMVN(nn.Module):
    """(x - mean) * istd with stats stored as buffers (saved with the module)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("istd", torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) * self.istd

    @torch.no_grad()
    def set_stats(self, stats: np.ndarray | torch.Tensor, source: str = "stats") -> None:
        """Kaldi stats matrix [2, dim + 1]: row 0 = feature sums | frame count,
        row 1 = sums of squares."""
        s = torch.as_tensor(np.asarray(stats), dtype=torch.float64)
        dim = self.mean.shape[0]
        if s.shape != (2, dim + 1):
            raise ValueError(f"{source}: CMVN stats must be [2, {dim + 1}], got {tuple(s.shape)}")
        count = float(s[0, dim])
        if count < 1:
            raise ValueError(f"{source}: CMVN frame count is {count}")
        mean = s[0, :dim] / count
        var = (s[1, :dim] / count - mean**2).clamp_min(1e-20)
        self.mean.copy_(mean.float())
        self.istd.copy_(var.rsqrt().float())

    def load(self, path: str | Path) -> None:
        self.set_stats(read_cmvn_stats(path), source=str(path))


def read_cmvn_stats(path: str | Path) -> np.ndarray:
    """Read a global CMVN stats matrix: Kaldi binary ('\\0B' + FM/DM), Kaldi text
    ('[ ... ]'), or JSON {mean_stat, var_stat, frame_num}."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: CMVN stats file not found")
    raw = path.read_bytes()
    if not raw:
        raise ValueError(f"{path}: CMVN stats file is empty")
    if raw[:2] == b"\0B":
        return _read_kaldi_binary(raw, path)
    text = raw.decode("utf-8", errors="strict").strip()
    if text.startswith("{"):
        d = json.loads(text)
        try:
            mean, var, n = d["mean_stat"], d["var_stat"], d["frame_num"]
        except KeyError as e:
            raise ValueError(f"{path}: JSON CMVN needs mean_stat, var_stat, frame_num (missing {e})") from None
        return np.array([list(mean) + [n], list(var) + [0.0]], dtype=np.float64)
    if "[" in text and "]" in text:
        body = text[text.index("[") + 1 : text.rindex("]")]
        rows = [r.split() for r in body.strip().splitlines() if r.strip()]
        try:
            return np.array([[float(v) for v in r] for r in rows], dtype=np.float64)
        except ValueError:
            raise ValueError(f"{path}: Kaldi text matrix has a non-numeric entry") from None
    raise ValueError(f"{path}: not a Kaldi (binary/text) or JSON CMVN stats file")


def _read_kaldi_binary(raw: bytes, path: Path) -> np.ndarray:
    pos = 2
    end = raw.index(b" ", pos)
    token = raw[pos:end].decode()
    if token not in ("FM", "DM"):
        raise ValueError(f"{path}: Kaldi binary matrix type {token!r} is not FM or DM")
    pos = end + 1
    dims = []
    for _ in range(2):
        if raw[pos] != 4:
            raise ValueError(f"{path}: malformed Kaldi binary matrix header")
        dims.append(struct.unpack("<i", raw[pos + 1 : pos + 5])[0])
        pos += 5
    rows, cols = dims
    dtype = np.float32 if token == "FM" else np.float64
    need = rows * cols * np.dtype(dtype).itemsize
    if len(raw) - pos < need:
        raise ValueError(f"{path}: Kaldi binary matrix truncated ({len(raw) - pos} of {need} bytes)")
    return np.frombuffer(raw[pos : pos + need], dtype=dtype).reshape(rows, cols).astype(np.float64)


def write_kaldi_stats(path: str | Path, stats: np.ndarray, binary: bool = True) -> None:
    """Write a stats matrix the way Kaldi's `copy-matrix` does (tests, conversion)."""
    stats = np.asarray(stats, dtype=np.float64)
    if binary:
        hdr = b"\0BDM " + b"\x04" + struct.pack("<i", stats.shape[0]) + b"\x04" + struct.pack("<i", stats.shape[1])
        Path(path).write_bytes(hdr + stats.astype("<f8").tobytes())
    else:
        lines = ["  " + " ".join(repr(float(v)) for v in row) for row in stats]
        Path(path).write_text(" [\n" + "\n".join(lines) + " ]\n")


def splice(feats: torch.Tensor, left: int, right: int, stride: int) -> torch.Tensor:
    """[B, T, F] -> [B, ceil(T / stride), (left + 1 + right) * F]: output j stacks
    frames j*stride-left .. j*stride+right (edges replicated), oldest first."""
    b, t, f = feats.shape
    if t == 0:
        return feats.new_zeros(b, 0, (left + 1 + right) * f)
    padded = torch.cat([feats[:, :1].expand(b, left, f), feats, feats[:, -1:].expand(b, right, f)], dim=1)
    n_out = math.ceil(t / stride)
    win = padded.unfold(1, left + 1 + right, 1)[:, : (n_out - 1) * stride + 1 : stride]  # [B, n, F, ctx]
    return win.transpose(2, 3).reshape(b, n_out, -1)


def splice_rows(feats: torch.Tensor, frames: torch.Tensor, left: int, right: int, stride: int,
                width: int) -> torch.Tensor:
    """`splice` of every row at its own length in one gather: feats [B, T, F], frames [B]
    valid fbank frames per row (a tensor on feats' device) -> [B, width, ctx * F], where
    output j of row r stacks frames j*stride-left .. j*stride+right clamped to [0, frames_r - 1]
    (each row's edges replicated, as `splice` of that row alone) and outputs past the row's
    ceil(frames_r / stride) are zero. No value is read back to the host."""
    b, t, f = feats.shape
    ctx = left + 1 + right
    if width == 0 or t == 0:
        return feats.new_zeros(b, width, ctx * f)
    j = torch.arange(width, device=feats.device)
    idx = (j[:, None] * stride + torch.arange(-left, right + 1, device=feats.device)[None])[None]  # [1, width, ctx]
    idx = torch.minimum(idx, frames.to(feats.device)[:, None, None] - 1).clamp(0, t - 1).reshape(b, -1)
    out = feats.gather(1, idx[..., None].expand(-1, -1, f)).reshape(b, width, ctx * f)
    keep = j[None] < -(-frames.to(feats.device)[:, None] // stride)
    return out * keep[..., None].to(out.dtype)

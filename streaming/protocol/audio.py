"""pcm16 audio on the wire: base64 <-> float32, and a streaming rational resampler.

The OpenAI Realtime API carries 24 kHz mono pcm16 (little endian) as base64
inside JSON events; the model listens at 16 kHz and speaks at its codec's rate.
Audio arrives in arbitrary pieces, so resampling must be streaming: feeding a
signal in any split gives the same output as feeding it whole (tested), which a
per-piece `resample()` call would not (it would click at every seam).
"""

from __future__ import annotations

import base64
import binascii
import math

import numpy as np


class AudioDecodeError(ValueError):
    """The payload is not valid base64 pcm16."""


def pcm16_bytes_to_float(data: bytes) -> np.ndarray:
    if len(data) % 2:
        raise AudioDecodeError(f"pcm16 needs an even number of bytes, got {len(data)}")
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


def float_to_pcm16_bytes(samples: np.ndarray) -> bytes:
    x = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 32767.0 / 32768.0)
    return (np.round(x * 32768.0)).astype("<i2").tobytes()


def decode_pcm16(b64: str) -> np.ndarray:
    """base64 pcm16 -> float32 in [-1, 1). Raises AudioDecodeError naming the problem."""
    if not isinstance(b64, str):
        raise AudioDecodeError(f"audio must be a base64 string, got {type(b64).__name__}")
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError) as e:
        raise AudioDecodeError(f"audio is not valid base64: {e}") from None
    return pcm16_bytes_to_float(raw)


def encode_pcm16(samples: np.ndarray) -> str:
    return base64.b64encode(float_to_pcm16_bytes(samples)).decode("ascii")


def _lowpass(num_phases: int, cutoff: float, half_width: int) -> np.ndarray:
    """Kaiser-windowed sinc, `half_width` zero crossings per side at the input rate."""
    n = 2 * half_width * num_phases + 1
    t = (np.arange(n) - (n - 1) / 2) / num_phases
    h = cutoff * np.sinc(cutoff * t) * np.kaiser(n, 8.0)
    return (h * num_phases / h.sum() * 1.0).astype(np.float64)


class StreamingResampler:
    """Polyphase resampler by the rational factor out_rate/in_rate.

    Output sample n sits at input position n * in_rate / out_rate. It is
    computed as soon as the filter's right half has arrived, so the stream is
    delayed by `half_width` input samples; `flush()` pads the end with zeros.
    """

    def __init__(self, in_rate: int, out_rate: int, half_width: int = 16) -> None:
        if in_rate <= 0 or out_rate <= 0:
            raise ValueError(f"sample rates must be positive, got {in_rate} -> {out_rate}")
        g = math.gcd(in_rate, out_rate)
        self.in_rate, self.out_rate = in_rate, out_rate
        self.up, self.down = out_rate // g, in_rate // g
        self.identity = self.up == self.down
        cutoff = min(1.0, out_rate / in_rate)  # relative to the input Nyquist
        self.half_width = int(math.ceil(half_width / cutoff))
        self.h = _lowpass(self.up, cutoff, self.half_width)  # taps on the upsampled grid
        self.center = (len(self.h) - 1) // 2
        # Output n reads inputs lo(n) .. lo(n) + width - 1 with weights that depend only on its
        # phase n % up (n + up reads the same taps, `down` inputs later): one kernel per phase,
        # so each phase's outputs are one strided matrix-vector product (a server resamples
        # every session's microphone on one thread: the [N, width] index arithmetic per chunk
        # this replaces cost ~0.4 ms per 40 ms chunk, a core at ~100 sessions)
        c = self.center
        self.width = (2 * c) // self.up + 2
        self.kernels = np.zeros((self.up, self.width))
        for ph in range(self.up):
            pos = ph * self.down
            tap = pos - (-((c - pos) // self.up) + np.arange(self.width)) * self.up + c
            ok = (tap >= 0) & (tap < len(self.h))
            self.kernels[ph, ok] = self.h[tap[ok]]
        # keep the inputs the next outputs still need; buf[0] has absolute index buf_start
        self.buf = np.zeros(self.half_width, dtype=np.float64)
        self.buf_start = -self.half_width  # zeros before the signal start
        self.n_out = 0  # absolute index of the next output sample
        self.n_in = 0

    def _emit(self, last_input: int) -> np.ndarray:
        """Every output whose newest needed input index is <= last_input."""
        up, down, c = self.up, self.down, self.center
        # output n needs inputs lo(n)..hi(n), hi(n) = floor((n*down + c)/up)
        n_end = (last_input * up - c) // down  # largest n with hi(n) <= last_input
        if n_end < self.n_out:
            return np.zeros(0, dtype=np.float32)
        n0, n1 = self.n_out, int(n_end) + 1
        if -((c - n0 * down) // up) < self.buf_start:  # lo(n0) = ceil((n0 * down - c) / up)
            raise AssertionError("resampler history too short")
        y = self._outputs(n0, n1, last_input)
        self.n_out = n1
        next_lo = -((c - self.n_out * down) // up)
        drop = max(0, next_lo - self.buf_start)
        if drop:
            self.buf = self.buf[drop:]
            self.buf_start += drop
        return y.astype(np.float32)

    def _outputs(self, n0: int, n1: int, last_input: int) -> np.ndarray:
        """Outputs n0 .. n1 - 1 (float64) from the inputs in `buf`, one phase at a time."""
        up, down, c = self.up, self.down, self.center
        # taps past the newest input have zero weight (the kernels' zeros): read them as zeros
        rows = np.lib.stride_tricks.sliding_window_view(np.concatenate([self.buf, np.zeros(self.width)]), self.width)
        y = np.empty(n1 - n0)
        for ph in range(up):
            first = n0 + (ph - n0) % up  # the first output of this phase
            if first >= n1:
                continue
            count = (n1 - 1 - first) // up + 1
            lo = -((c - first * down) // up) - self.buf_start
            y[first - n0::up] = rows[lo:lo + down * (count - 1) + 1:down] @ self.kernels[ph]
        return y

    def process(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32).reshape(-1)
        if self.identity:
            return x.copy()
        self.buf = np.concatenate([self.buf, x.astype(np.float64)])
        self.n_in += len(x)
        return self._emit(self.n_in - 1)

    def flush(self) -> np.ndarray:
        """Outputs up to the end of the signal (its duration times the ratio)."""
        if self.identity:
            return np.zeros(0, dtype=np.float32)
        total = int(math.ceil(self.n_in * self.up / self.down))
        self.buf = np.concatenate([self.buf, np.zeros(self.half_width + 2)])
        out = self._emit(self.n_in - 1 + self.half_width + 1)
        keep = max(0, total - (self.n_out - len(out)))
        return out[:keep]


def resample(x: np.ndarray, in_rate: int, out_rate: int) -> np.ndarray:
    """Whole-signal convenience wrapper around StreamingResampler."""
    r = StreamingResampler(in_rate, out_rate)
    return np.concatenate([r.process(x), r.flush()])

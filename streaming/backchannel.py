"""Backchannels: "uh-huh", "yeah", "okay", "mm-hmm" while the assistant speaks do not stop it.

Under plain barge-in any user speech of 64 ms or more during a reply stops it.
People say "uh-huh" to keep a speaker going, so a listener must tell a backchannel
from an interruption, and fast: an interruption should stop the reply within
~200 ms of its onset. The detector decides from the first `window_ms` of the
user's speech (its opening sounds: "mm", "uh", "yea", "o-" against "wh-", "how",
"tell", "stop"...): its log-mel frames in order, their change, statistics and energy
contour, and a one-hidden-layer MLP, well under a millisecond of numpy on the event
loop. Trained by `omni train-backchannel` (streaming/backchannel_train.py) on espeak-ng
voices (the world's train timbres and the voice bank's) with varied wordings; the
weights ship in `streaming/pretrained/backchannel.npz`.

The window may open `lead_ms` before the VAD's speech start: silero marks a start
only once two 32 ms windows sound like speech, so by then the speech's first 64 ms
are already in hand. The shipped detector leads by 32 ms and decides 32 ms after the
VAD fires; a 64 ms lead would decide at once but tells the two apart worse.

The session (streaming/session.py) holds a barge-in until it has `window_ms` of
the speech: an interruption then goes on as before (speech_started, the reply
cut), a backchannel is let through (the reply plays on, the sound starts no turn).
Speech that goes on past `max_backchannel_ms` is an interruption after all
("okay, and what about the star?"), and a sound let through is heard again whole
once it ends: a short question first taken for a backchannel becomes a turn then.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SR = 16000
N_FFT, WIN, HOP, N_MELS = 512, 400, 160, 40  # 25 ms windows every 10 ms, 40 mel bands
DEFAULT_PATH = Path(__file__).resolve().parent / "pretrained" / "backchannel.npz"
FORMAT = "omni-backchannel"


def _mel_filters(n_mels: int = N_MELS, n_fft: int = N_FFT, lo: float = 60.0, hi: float = 7600.0) -> np.ndarray:
    def mel(f):
        return 2595.0 * np.log10(1.0 + f / 700.0)

    def hz(m):
        return 700.0 * (10 ** (m / 2595.0) - 1.0)

    edges = hz(np.linspace(mel(lo), mel(hi), n_mels + 2))
    bins = np.fft.rfftfreq(n_fft, 1.0 / SR)
    fb = np.zeros((n_mels, len(bins)), np.float32)
    for i in range(n_mels):
        a, c, b = edges[i], edges[i + 1], edges[i + 2]
        fb[i] = np.clip(np.minimum((bins - a) / (c - a), (b - bins) / (b - c)), 0, None)
    return fb


_FB = _mel_filters()
_WINDOW = np.hanning(WIN).astype(np.float32)


def log_mel(audio: np.ndarray) -> np.ndarray:
    """[T, 40] log-mel frames of 16 kHz float audio (T >= 1: short audio is zero-padded)."""
    x = np.asarray(audio, np.float32)
    if len(x) < WIN:
        x = np.pad(x, (0, WIN - len(x)))
    n = 1 + (len(x) - WIN) // HOP
    idx = np.arange(WIN)[None, :] + HOP * np.arange(n)[:, None]
    spec = np.abs(np.fft.rfft(x[idx] * _WINDOW, N_FFT)) ** 2
    return np.log(spec @ _FB.T + 1e-6)


def features(audio: np.ndarray) -> np.ndarray:
    """One vector for a stretch of speech: level-free log-mel statistics
    (mean, spread, first and last third, change), so loudness does not decide."""
    m = log_mel(audio)
    m = m - m.mean()  # the speaker's level and the microphone's gain drop out
    t = len(m)
    a, b = m[: max(1, t // 3)], m[-max(1, t // 3):]
    return np.concatenate([m.mean(0), m.std(0), a.mean(0), b.mean(0), b.mean(0) - a.mean(0)]).astype(np.float32)


def opening_features(audio: np.ndarray) -> np.ndarray:
    """The opening's vector: its level-free log-mel frames in order (the sound's shape in time:
    "mm", "uh", "yea", "o-" against "wh-", "tell", "can"...), their frame-to-frame change,
    the statistics of `features` and the energy contour. 1,051 numbers for 128 ms."""
    m = log_mel(audio)
    m = m - m.mean()  # the speaker's level and the microphone's gain drop out
    t = len(m)
    a, b = m[: max(1, t // 3)], m[-max(1, t // 3):]
    e = np.log(np.exp(m).sum(1))
    return np.concatenate([m.ravel(), np.diff(m, axis=0).ravel(), m.mean(0), m.std(0), a.mean(0), b.mean(0),
                           b.mean(0) - a.mean(0), e - e.max()]).astype(np.float32)


def span(x: np.ndarray, a: int, b: int) -> np.ndarray:
    """x[a:b] with zeros where the span leaves x (the silence around a clip, or before a
    stream's kept audio): the session and the trainer cut openings the same way."""
    out = np.zeros(max(0, b - a), np.float32)
    lo, hi = max(a, 0), min(b, len(x))
    if hi > lo:
        out[lo - a:hi - a] = x[lo:hi]
    return out


def _gelu(x: np.ndarray) -> np.ndarray:
    """GELU, tanh form (as trained: torch's approximate="tanh")."""
    return 0.5 * x * (1.0 + np.tanh(0.7978845608 * (x + 0.044715 * x ** 3)))


@dataclass
class Classifier:
    """Standardized features, one hidden layer (GELU), a logistic output: P(backchannel)."""

    mean: np.ndarray  # [D]
    scale: np.ndarray  # [D]
    w1: np.ndarray  # [D, H]
    b1: np.ndarray  # [H]
    w2: np.ndarray  # [H]
    b2: float

    def probs(self, feats: np.ndarray) -> np.ndarray:
        """P(backchannel) of feature rows [N, D]."""
        h = _gelu(((feats - self.mean) / self.scale) @ self.w1 + self.b1)
        return 1.0 / (1.0 + np.exp(-(h @ self.w2 + self.b2)))

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}_{k}": np.asarray(getattr(self, k), np.float32)
                for k in ("mean", "scale", "w1", "b1", "w2", "b2")}

    @classmethod
    def from_arrays(cls, z, prefix: str) -> "Classifier":
        return cls(*(z[f"{prefix}_{k}"] for k in ("mean", "scale", "w1", "b1", "w2")), float(z[f"{prefix}_b2"]))

    def check(self, dim: int, what: str) -> None:
        if not (self.mean.shape == self.scale.shape == (dim,) and self.w1.shape[0] == dim
                and self.w1.shape[1] == len(self.b1) == len(self.w2)):
            raise ValueError(f"{what}: weights for {self.w1.shape[0]} features, the features have {dim}")


@dataclass
class BackchannelDetector:
    """Two judgments of speech over a reply. `opening`: from its first `window_ms`, at
    once (let it through, or barge in). `whole`: once a sound let through has ended,
    from all of it (up to `max_backchannel_ms`): a short question taken for a
    backchannel at first becomes a turn then, late but not lost."""

    opening: Classifier
    whole: Classifier
    window_ms: int = 128
    lead_ms: int = 0  # the window opens this long before the VAD's speech start
    threshold: float = 0.5  # the opening's P(backchannel) that lets a sound through (chosen in training)
    max_backchannel_ms: int = 1200  # longer speech is an interruption whatever it opened with (slow "mmm hmm": ~1 s)
    meta: dict | None = None

    def prob(self, audio: np.ndarray) -> float:
        """P(backchannel) of the opening `window_ms` of speech (`audio` starts `lead_ms`
        before the VAD's speech start)."""
        return float(self.opening.probs(opening_features(audio[: self.window_samples])[None])[0])

    def is_backchannel(self, audio: np.ndarray) -> bool:
        return self.prob(audio) >= self.threshold

    def whole_is_backchannel(self, audio: np.ndarray) -> bool:
        """The whole sound (its first `max_backchannel_ms`) still sounds like a backchannel."""
        x = audio[: SR * self.max_backchannel_ms // 1000]
        return float(self.whole.probs(features(x)[None])[0]) >= 0.5

    @property
    def window_samples(self) -> int:
        return SR * self.window_ms // 1000

    @property
    def lead_samples(self) -> int:
        return SR * self.lead_ms // 1000

    def save(self, path: str | Path, meta: dict | None = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        head = {"format": FORMAT, "window_ms": self.window_ms, "lead_ms": self.lead_ms, "threshold": self.threshold,
                "max_backchannel_ms": self.max_backchannel_ms, **({"meta": meta} if meta else {})}
        with open(path, "wb") as f:  # an open file: np.savez would append .npz to another suffix
            np.savez(f, **self.opening.arrays("opening"), **self.whole.arrays("whole"),
                     head=np.array(json.dumps(head)))

    @classmethod
    def load(cls, path: str | Path | None = None) -> "BackchannelDetector | None":
        """The detector at `path` (default: the shipped one), or None when there is none."""
        path = Path(path) if path is not None else DEFAULT_PATH
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                head = json.loads(str(z["head"]))
                if head.get("format") != FORMAT:
                    raise ValueError(f"format {head.get('format')!r} is not {FORMAT!r}")
                det = cls(Classifier.from_arrays(z, "opening"), Classifier.from_arrays(z, "whole"),
                          int(head["window_ms"]), int(head.get("lead_ms", 0)), float(head["threshold"]),
                          int(head["max_backchannel_ms"]), head.get("meta"))
                if not 0 <= det.lead_ms < det.window_ms:
                    raise ValueError(f"lead_ms {det.lead_ms} must be in 0..window_ms")
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}: not a backchannel detector ({e})") from None
        det.opening.check(len(opening_features(np.zeros(det.window_samples, np.float32))), f"{path} (opening)")
        det.whole.check(len(features(np.zeros(det.window_samples, np.float32))), f"{path} (whole)")
        return det

"""Voice activity: silero-vad batched over sessions, and the two-threshold endpointer.

`SileroVAD` runs the silero-vad network (shipped inside its wheel, no download)
on 32 ms windows of 16 kHz audio. Its recurrent state and 64-sample context are
kept per session outside the network, so one call scores one window of every
session at once (batch = sessions) instead of one model per session.

`Endpointer` turns window probabilities into turn-taking events:
  speech_started  -> user speech began (with `prefix_padding_ms` of pre-roll)
  speculate       -> silence reached `speculative_silence_ms`: start decoding early
  resumed         -> speech again after `speculate` but before the end of turn
  end_of_turn     -> silence reached `silence_duration_ms`: the turn is over
Hysteresis as in silero's VADIterator: speech at p >= threshold, silence at
p < threshold - 0.15.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np
import torch

WINDOW = 512  # samples per silero window at 16 kHz (32 ms)
CONTEXT = 64
SAMPLE_RATE = 16000


@dataclass
class VADState:
    state: torch.Tensor = field(default_factory=lambda: torch.zeros(2, 1, 128))
    context: torch.Tensor = field(default_factory=lambda: torch.zeros(1, CONTEXT))
    pending: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))


class SileroVAD:
    """Thread-safe batched scoring; one instance serves every session."""

    def __init__(self) -> None:
        threads = torch.get_num_threads()
        from silero_vad import load_silero_vad  # its import sets torch threads to 1 globally

        torch.set_num_threads(threads)
        self.model = load_silero_vad()._model  # the 16 kHz network: (x[B, 64+512], state) -> (p[B,1], state)
        self.lock = threading.Lock()

    def probs(self, items: list[tuple[VADState, np.ndarray]]) -> list[np.ndarray]:
        """Append audio to each state; score every complete window, batched per round."""
        windows: list[list[np.ndarray]] = []
        for st, audio in items:
            buf = np.concatenate([st.pending, np.asarray(audio, dtype=np.float32)])
            n = len(buf) // WINDOW
            windows.append([buf[i * WINDOW:(i + 1) * WINDOW] for i in range(n)])
            st.pending = buf[n * WINDOW:]
        out: list[list[float]] = [[] for _ in items]
        rounds = max((len(w) for w in windows), default=0)
        with self.lock, torch.inference_mode():
            for r in range(rounds):
                idx = [i for i, w in enumerate(windows) if len(w) > r]
                x = torch.from_numpy(np.stack([windows[i][r] for i in idx]))
                ctx = torch.cat([items[i][0].context for i in idx])
                state = torch.cat([items[i][0].state for i in idx], dim=1)
                xc = torch.cat([ctx, x], dim=1)
                p, new_state = self.model(xc, state)
                for j, i in enumerate(idx):
                    st = items[i][0]
                    st.state = new_state[:, j:j + 1].clone()
                    st.context = xc[j:j + 1, -CONTEXT:].clone()
                    out[i].append(float(p[j, 0]))
        return [np.asarray(o, dtype=np.float32) for o in out]


@dataclass
class TurnEvent:
    kind: str  # speech_started | speculate | resumed | end_of_turn
    sample: int  # input sample index (16 kHz) where it happened
    speech_end: int = 0  # for speculate / end_of_turn: where speech stopped


class Endpointer:
    """Per-session turn-taking state machine over window probabilities."""

    def __init__(self, threshold: float = 0.5, silence_ms: int = 600, speculative_ms: int | None = 200,
                 min_speech_ms: int = 64) -> None:
        self.configure(threshold, silence_ms, speculative_ms, min_speech_ms)
        self.n = 0  # windows seen
        self.speaking = False  # inside a user turn (speech or a pause shorter than the end of turn)
        self.in_pause = False
        self.speculated = False
        self.run = 0  # consecutive speech windows while not speaking
        self.pause_start = 0  # window index of the first silent window of the pause

    def configure(self, threshold: float, silence_ms: int, speculative_ms: int | None, min_speech_ms: int = 64) -> None:
        win_ms = WINDOW * 1000 / SAMPLE_RATE
        self.threshold = threshold
        self.silence_windows = max(1, int(np.ceil(silence_ms / win_ms)))
        self.spec_windows = None if speculative_ms is None else max(1, int(np.ceil(speculative_ms / win_ms)))
        self.min_speech = max(1, int(np.ceil(min_speech_ms / win_ms)))

    def reset(self) -> None:
        self.speaking = self.in_pause = self.speculated = False
        self.run = 0

    def silence_ms(self) -> float:
        """How long the current pause inside a user turn has lasted (0 outside one)."""
        if not (self.speaking and self.in_pause):
            return 0.0
        return (self.n - self.pause_start) * WINDOW * 1000 / SAMPLE_RATE

    def feed(self, probs: np.ndarray) -> list[TurnEvent]:
        events: list[TurnEvent] = []
        for p in probs:
            i = self.n
            self.n += 1
            is_speech, is_silence = p >= self.threshold, p < self.threshold - 0.15
            if not self.speaking:
                self.run = self.run + 1 if is_speech else 0
                if self.run >= self.min_speech:
                    self.speaking, self.in_pause, self.speculated, self.run = True, False, False, 0
                    events.append(TurnEvent("speech_started", (i + 1 - self.min_speech) * WINDOW))
                continue
            if is_speech:
                if self.in_pause and self.speculated:
                    events.append(TurnEvent("resumed", i * WINDOW))
                self.in_pause = self.speculated = False
            elif is_silence or self.in_pause:
                if not self.in_pause:
                    self.in_pause, self.pause_start = True, i
                silent = i + 1 - self.pause_start
                end = self.pause_start * WINDOW
                if self.spec_windows is not None and not self.speculated and silent >= self.spec_windows \
                        and self.spec_windows < self.silence_windows:
                    self.speculated = True
                    events.append(TurnEvent("speculate", self.n * WINDOW, end))
                if silent >= self.silence_windows:
                    events.append(TurnEvent("end_of_turn", self.n * WINDOW, end))
                    self.speaking = self.in_pause = self.speculated = False
        return events

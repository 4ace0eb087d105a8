"""Stage 1 of the pipeline: input conditioning off the event loop.

Each session's incoming audio is resampled to 16 kHz and scored with silero-vad.
Requests that queue up while a round works (and, under load, for up to GATHER_S
after the first) are conditioned together, one batched network call per 32 ms
window round (see vad.SileroVAD), so the VAD cost grows far slower than the
number of sessions.

Two ways to run it, with one API (`process(state, rate, samples, vad)`,
`release(state)`, `stop()`) and the same rounds (`condition`, `Rounds`):
- `InputWorker`, a thread of the serving process (the server's default);
- `streaming/input_process.py` `InputProcess`, a process of its own. A thread shares
  the GIL with the engine thread and the event loop, and every torch call of a VAD
  round gives the GIL up and waits to get it back behind them: beside long Python
  stretches that costs the thread stage far more than the process
  (`bench/input_stage.py --load python`); beside launch-like work they are equal
  (`--load launches`).
"""

from __future__ import annotations

import asyncio
import itertools
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import numpy as np

from streaming.metrics import Metrics
from streaming.protocol import StreamingResampler
from streaming.timing import observe_stage
from streaming.vad import SAMPLE_RATE, SileroVAD, VADState

_IDS = itertools.count(1)
NO_PROBS = np.zeros(0, np.float32)


@dataclass
class InputState:
    """One session's conditioning state: its resampler to 16 kHz and its VAD state.
    A process stage keeps these in its process, under `sid`; the session's copy is
    then only the handle."""
    vad: VADState = field(default_factory=VADState)
    resampler: StreamingResampler | None = None
    sid: int = field(default_factory=lambda: next(_IDS))

    def resample(self, rate: int, samples: np.ndarray) -> np.ndarray:
        if self.resampler is None or self.resampler.in_rate != rate:
            self.resampler = StreamingResampler(rate, SAMPLE_RATE)
        return self.resampler.process(samples)


class InputStage(Protocol):
    """What a session needs of stage 1 (InputWorker, input_process.InputProcess)."""

    async def ready(self) -> None: ...

    async def process(self, state: InputState, rate: int, samples: np.ndarray,
                      vad: bool) -> tuple[np.ndarray, np.ndarray]: ...

    def release(self, state: InputState) -> None: ...

    def stop(self) -> None: ...


class InputStageError(RuntimeError):
    """The input stage could not condition a request (its process stopped, or the round failed)."""


def condition(vad: SileroVAD, jobs: list[tuple[InputState, int, np.ndarray, bool]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """One round: each job (state, input rate, samples, score with VAD?) -> (16 kHz audio, window
    probabilities); the VAD jobs of the round in one batched network call per window."""
    audio = [st.resample(rate, s) for st, rate, s, _ in jobs]
    todo = [(st.vad, a) for (st, _, _, v), a in zip(jobs, audio) if v]
    scored = iter(vad.probs(todo)) if todo else iter(())
    return [(a, next(scored) if v else NO_PROBS) for (_, _, _, v), a in zip(jobs, audio)]


# Under load (the last round conditioned more than one request) a round waits until its first
# request is this old, so that more sessions' audio goes in one network call: silero's
# forward costs about as much for a few rows as for one, and at 64+ sessions rounds of a
# few requests each kept the thread busy (bench/input_stage.py). One session never waits.
GATHER_S = 0.008


class Rounds:
    """Which requests form a round: the first (blocking), then, if the last round had company,
    a wait until the first is `gather_s` old, then whatever else is queued."""

    def __init__(self, gather_s: float) -> None:
        self.gather_s = gather_s
        self.last = 0

    def take(self, first: Any, t_first: float, more: Callable[[], list]) -> list:
        if self.last > 1 and self.gather_s > 0:
            time.sleep(max(0.0, t_first + self.gather_s - time.perf_counter()))
        batch = [first, *more()]
        self.last = len(batch)
        return batch


def observe_round(metrics: Metrics | None, submitted: list[float], t0: float, t1: float) -> None:
    """Stage timings of one round: each request waited from its submission to t0, computed t1 - t0."""
    if metrics is None:
        return
    for t in submitted:
        observe_stage(metrics, "input", t0 - t, t1 - t0)
    metrics.observe("omni_input_batch_size", len(submitted))
    metrics.observe("omni_input_round_seconds", t1 - t0)


class InputWorker:
    """The input stage on a thread of the serving process."""

    def __init__(self, vad: SileroVAD | None = None, metrics: Metrics | None = None,
                 gather_s: float = GATHER_S) -> None:
        self.vad = vad or SileroVAD()
        self.metrics = metrics  # stage timings ("input"), when given
        self.rounds = Rounds(gather_s)
        self.q: queue.SimpleQueue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="omni-input", daemon=True)
        self.thread.start()

    async def ready(self) -> None:
        """Nothing to wait for: the network is loaded."""

    def stop(self) -> None:
        self.q.put(None)
        self.thread.join(timeout=5)

    def release(self, state: InputState) -> None:
        """The session ended (its state goes with it)."""

    async def process(self, state: InputState, rate: int, samples: np.ndarray,
                      vad: bool) -> tuple[np.ndarray, np.ndarray]:
        """`samples` at `rate` -> (the same audio at 16 kHz, its VAD window probabilities, or none
        when `vad` is off)."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self.q.put((loop, fut, state, rate, samples, vad, time.perf_counter()))
        return await fut

    def _more(self) -> list:
        out = []
        while True:
            try:
                item = self.q.get_nowait()
            except queue.Empty:
                return out
            if item is None:
                self.q.put(None)
                return out
            out.append(item)

    def _run(self) -> None:
        import torch

        # The VAD network is tiny: intra-op threads only spin against the model's
        # threads (100x slower measured on 2 cores). The setting is per thread.
        torch.set_num_threads(1)
        while True:
            first = self.q.get()
            if first is None:
                return
            batch = self.rounds.take(first, first[6], self._more)
            t0 = time.perf_counter()
            try:
                results = condition(self.vad, [(st, rate, s, v) for _, _, st, rate, s, v, _ in batch])
            except Exception as e:  # pragma: no cover - reported to every waiter
                for loop, fut, *_ in batch:
                    deliver(loop, fut, exc=InputStageError(f"input conditioning failed: {e}"))
                continue
            observe_round(self.metrics, [b[6] for b in batch], t0, time.perf_counter())
            for (loop, fut, *_), res in zip(batch, results):
                deliver(loop, fut, res)


def _set(fut: asyncio.Future, value: object) -> None:
    if not fut.done():
        fut.set_result(value)


def _set_exc(fut: asyncio.Future, exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)


def deliver(loop: asyncio.AbstractEventLoop, fut: asyncio.Future, value: object = None,
            exc: BaseException | None = None) -> None:
    """Resolve a waiter from the stage's thread; a waiter whose loop has closed is dropped."""
    try:
        loop.call_soon_threadsafe(_set_exc if exc is not None else _set, fut, exc if exc is not None else value)
    except RuntimeError:  # the loop is closed: nobody waits any more
        pass

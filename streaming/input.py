"""Stage 1 of the pipeline: input conditioning off the event loop.

One thread resamples each session's incoming audio to 16 kHz and scores it with
silero-vad. Requests that queue up while it works (and, under load, for up to
GATHER_S after the first) are scored together, one batched network call per 32 ms
window round (see vad.SileroVAD), so the VAD cost grows far slower than the number
of sessions.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from streaming.metrics import Metrics
from streaming.protocol import StreamingResampler
from streaming.timing import observe_stage
from streaming.vad import SileroVAD, VADState


@dataclass
class InputState:
    vad: VADState = field(default_factory=VADState)


# Under load (the last round scored more than one request) a round waits until its first
# request is this old, so that more sessions' audio goes in one network call: silero's
# forward costs about as much for a few rows as for one, and at 64+ sessions rounds of a
# few requests each kept the thread busy (bench/input_stage.py). One session never waits.
GATHER_S = 0.008


class InputWorker:
    def __init__(self, vad: SileroVAD | None = None, metrics: Metrics | None = None,
                 gather_s: float = GATHER_S) -> None:
        self.vad = vad or SileroVAD()
        self.metrics = metrics  # stage timings ("input"), when given
        self.gather_s = gather_s
        self._last_batch = 0
        self.q: queue.SimpleQueue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="omni-input", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.q.put(None)
        self.thread.join(timeout=5)

    async def process(self, state: InputState, resampler: StreamingResampler, samples: np.ndarray,
                      vad: bool) -> tuple[np.ndarray, np.ndarray]:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self.q.put((loop, fut, state, resampler, samples, vad, time.perf_counter()))
        return await fut

    def _run(self) -> None:
        import torch

        # The VAD network is tiny: intra-op threads only spin against the model's
        # threads (100x slower measured on 2 cores). The setting is per thread.
        torch.set_num_threads(1)
        while True:
            first = self.q.get()
            if first is None:
                return
            if self._last_batch > 1 and self.gather_s > 0:
                time.sleep(max(0.0, first[6] + self.gather_s - time.perf_counter()))
            batch = [first]
            while True:
                try:
                    item = self.q.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self.q.put(None)
                    break
                batch.append(item)
            self._last_batch = len(batch)
            t0 = time.perf_counter()
            try:
                audio = [res.process(s) for (_, _, _, res, s, _, _) in batch]
                todo = [(b[2].vad, a) for b, a in zip(batch, audio) if b[5]]
                scored = iter(self.vad.probs(todo)) if todo else iter(())
                results = [(a, next(scored) if b[5] else np.zeros(0, np.float32)) for b, a in zip(batch, audio)]
            except Exception as e:  # pragma: no cover - reported to every waiter
                for loop, fut, *_ in batch:
                    loop.call_soon_threadsafe(_set_exc, fut, e)
                continue
            if self.metrics is not None:
                t1 = time.perf_counter()
                for item in batch:
                    observe_stage(self.metrics, "input", t0 - item[6], t1 - t0)
                self.metrics.observe("omni_input_batch_size", len(batch))
                self.metrics.observe("omni_input_round_seconds", t1 - t0)
            for (loop, fut, *_), res in zip(batch, results):
                loop.call_soon_threadsafe(_set, fut, res)


def _set(fut: asyncio.Future, value: object) -> None:
    if not fut.done():
        fut.set_result(value)


def _set_exc(fut: asyncio.Future, exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)

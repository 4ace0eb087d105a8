"""Stage 2 of the pipeline: audio and visual encoding on its own thread.

The engine hands each session's next packets to this stage as soon as they reach
the head of the session's command queue and goes on with LLM work (prefill of
packets already encoded, decode steps); packets of all sessions that are waiting
are encoded in one `encode_chunks` call, at most one packet per session per call
(a session's packets are encoded in order: the streaming audio encoder carries
state from one to the next). On a GPU the stage runs on its own CUDA stream; the
engine waits on the job's event before it prefills the result.

Encoder state is shared with the engine thread (slots open, close and close a
user turn there), so both sides hold `lock` while they touch it, and each job
carries the slot's generation: a job whose session closed or whose context was
reset meanwhile is skipped (STALE), and the engine encodes the packet again for
the new slot.

A job is in one `EncodeState`; the stage sets the final one last, once the
result, error and event are in place, so the engine thread may read those
fields as soon as it sees the job finished.
"""

from __future__ import annotations

import enum
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from streaming.metrics import Metrics
from streaming.stage_queue import collect
from streaming.timing import observe_stage

log = logging.getLogger(__name__)


class EncodeState(enum.Enum):
    WAITING = "waiting"  # made by the engine, not handed to the stage yet
    ENCODING = "encoding"  # with the stage
    ENCODED = "encoded"  # `result` (and `event` on a GPU) are final
    FAILED = "failed"  # `error` is final
    STALE = "stale"  # skipped: its slot closed or its context was reset; encode it again

    @property
    def finished(self) -> bool:
        return self in (EncodeState.ENCODED, EncodeState.FAILED, EncodeState.STALE)


@dataclass
class EncodeJob:
    owner: Any  # the engine's slot record: `slot` (model slot), `gen`, `closed`
    gen: int  # owner.gen when the job was made
    chunk: Any  # UserChunk
    result: Any = None
    error: BaseException | None = None
    event: Any = None  # CUDA event recorded after the encoding (None on CPU)
    state: EncodeState = EncodeState.WAITING
    t_submit: float = field(default_factory=time.perf_counter)  # the engine took the packet
    t_dispatch: float = 0.0  # handed to the stage
    t_start: float = 0.0  # its encoding call began
    t_end: float = 0.0  # ...and ended


class EncodeStage:
    def __init__(self, model: Any, metrics: Metrics, lock: threading.Lock, on_done: Callable[[], None]) -> None:
        self.model, self.metrics, self.lock, self.on_done = model, metrics, lock, on_done
        self.q: queue.SimpleQueue = queue.SimpleQueue()
        self.stream = None
        self.device = getattr(model, "device", None)
        self.thread = threading.Thread(target=self._run, name="omni-encoder", daemon=True)
        self.thread.start()

    # ---- any thread ------------------------------------------------------------
    def put(self, job: EncodeJob) -> None:
        job.state, job.t_dispatch = EncodeState.ENCODING, time.perf_counter()
        self.q.put(job)

    def stop(self) -> None:
        self.q.put(None)
        self.thread.join(timeout=10)

    def main_waits(self) -> None:
        """Called by the engine (holding `lock`) before it touches encoder state."""
        if self.stream is not None:
            import torch

            torch.cuda.current_stream(self.device).wait_stream(self.stream)

    # ---- stage thread ----------------------------------------------------------
    def _run(self) -> None:
        import torch

        if self.device is not None and getattr(self.device, "type", None) == "cuda":
            self.stream = torch.cuda.Stream(self.device)
        with torch.inference_mode():
            pending: list[EncodeJob] = []
            while collect(self.q, pending):
                # the oldest packet of every session; the rest wait for the next call
                seen: set[int] = set()
                batch, rest = [], []
                for job in pending:
                    (rest if id(job.owner) in seen else batch).append(job)
                    seen.add(id(job.owner))
                pending = rest
                try:
                    self._encode(batch)
                except Exception as e:  # the stage must not die: the engine would wait for these forever
                    log.exception("encoder stage failed")
                    for job in batch:
                        if not job.state.finished:
                            job.error, job.state = e, EncodeState.FAILED
                self.on_done()

    def _encode(self, batch: list[EncodeJob]) -> None:
        import torch

        t0 = time.perf_counter()
        with self.lock:
            live, stale = [], []
            for job in batch:
                (stale if job.owner.closed or job.owner.gen != job.gen else live).append(job)
            if live:
                if self.stream is not None:  # see the engine's resets / turn closes first
                    self.stream.wait_stream(torch.cuda.current_stream(self.device))
                    with torch.cuda.stream(self.stream):
                        self._call(live)
                        event = torch.cuda.Event()
                        event.record(self.stream)
                    for job in live:
                        job.event = event
                else:
                    self._call(live)
        t1 = time.perf_counter()
        for job in live:
            job.t_start, job.t_end = t0, t1
            observe_stage(self.metrics, "encode", t0 - job.t_dispatch, t1 - t0)
        for job in stale:
            job.state = EncodeState.STALE
        for job in live:  # last: the engine reads the fields above once it sees this
            job.state = EncodeState.FAILED if job.error is not None else EncodeState.ENCODED
        if live:
            self.metrics.observe("omni_encode_seconds", t1 - t0)
            self.metrics.observe("omni_encode_batch_size", len(live))

    def _call(self, jobs: list[EncodeJob]) -> None:
        many = getattr(self.model, "encode_chunks", None)
        items = [(job.owner.slot, job.chunk) for job in jobs]
        try:
            results = many(items) if many is not None else [self.model.encode_chunk(*it) for it in items]
            for job, res in zip(jobs, results):
                job.result = res
            return
        except Exception as e:
            if len(jobs) == 1:
                log.exception("encoding failed")
                jobs[0].error = e
                return
        # isolate the failing packet; the other sessions' packets go on
        log.exception("batched encoding failed; retrying one packet at a time")
        for job in jobs:
            try:
                job.result = self.model.encode_chunk(job.owner.slot, job.chunk)
            except Exception as e:
                job.error = e

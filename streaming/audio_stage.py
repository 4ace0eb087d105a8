"""Stage 4 of the pipeline: streaming codec decoding on its own thread.

The engine thread hands each decode step's output (text + one codec frame per
session) to this stage and goes straight on to the next LLM step, so the
speech decoder of step n runs while the LLM computes step n+1. Frames of all
sessions that are waiting are decoded in one `decode_audio` call; frames of one
response stay in order (one per call), and text is emitted in step order with
its audio (a tool-call block goes out after the text before it). Output of a
response that was rolled back or interrupted meanwhile
is still produced but carries the old epoch, which the session drops.

The job that carries a reply's first speech frame also carries the reply's
first-audio trace (streaming/timing.py); the stage adds its own spans and passes
the trace on with the first delta that holds audio.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from streaming.metrics import Metrics
from streaming.stage_queue import collect
from streaming.timing import add_span, observe_stage

log = logging.getLogger(__name__)


@dataclass
class AudioJob:
    sink: Callable[[Any], None]
    epoch: int
    state: Any  # the response's codec-decoder state
    text: str = ""
    frame: np.ndarray | None = None
    resampler: Any = None  # StreamingResampler to the client's rate, or None
    done_info: dict[str, Any] | None = None  # set on the response's last job: flush, then "done"
    marks: list[dict[str, Any]] = field(default_factory=list)  # engine events sent after this job's delta ("block")
    t_step: float = field(default_factory=time.perf_counter)
    t_decode: float = 0.0  # when the decode step that made it began
    trace: list | None = None  # the reply's first-audio spans (on the job with its first frame)


class AudioStage:
    def __init__(self, model: Any, metrics: Metrics, make_event: Callable[..., Any]) -> None:
        self.model, self.metrics, self.make_event = model, metrics, make_event
        self.q: queue.SimpleQueue = queue.SimpleQueue()
        # a trace whose frame decoded to no samples yet (codec look-ahead): it goes on with the
        # response's next job. Keyed by id of the response's codec state, which the entry
        # holds, so the id cannot be reused meanwhile (a few entries of rolled-back replies stay).
        self.carried: dict[int, tuple[Any, list]] = {}
        self.thread = threading.Thread(target=self._run, name="omni-audio", daemon=True)
        self.thread.start()

    def put(self, job: AudioJob) -> None:
        self.q.put(job)

    def stop(self) -> None:
        self.q.put(None)
        self.thread.join(timeout=10)

    def _run(self) -> None:
        import torch

        with torch.inference_mode():
            pending: list[AudioJob] = []
            while collect(self.q, pending):
                pending = self._round(pending)
            self._round(pending, drain=True)  # stopping: finish what was handed over

    def _round(self, pending: list[AudioJob], drain: bool = False) -> list[AudioJob]:
        """Decode the oldest job of every response in one call (frames of one
        response must go in order); return the jobs left for the next round."""
        while pending:
            seen: set[int] = set()
            batch, rest = [], []
            for job in pending:
                if id(job.state) in seen:
                    rest.append(job)
                else:
                    seen.add(id(job.state))
                    batch.append(job)
            self._decode(batch)
            pending = rest
            if not drain:
                break
        return pending

    def _decode(self, batch: list[AudioJob]) -> None:
        with_frames = [j for j in batch if j.frame is not None]
        t0 = time.perf_counter()
        try:
            pieces = self.model.decode_audio([(j.state, j.frame) for j in with_frames]) if with_frames else []
        except Exception:
            log.exception("codec decoding failed")
            pieces = [np.zeros(0, np.float32)] * len(with_frames)
        t1 = time.perf_counter()
        if with_frames:
            self.metrics.observe("omni_audio_decode_seconds", t1 - t0)
            self.metrics.observe("omni_audio_batch_size", len(with_frames))
            for j in with_frames:
                observe_stage(self.metrics, "audio", t0 - j.t_step, t1 - t0)
        audio_of = {id(j): p for j, p in zip(with_frames, pieces)}
        for j in batch:
            audio = audio_of.get(id(j))
            if audio is not None and j.resampler is not None:
                audio = j.resampler.process(audio)
            trace = self._trace(j, audio is not None, t0, t1)
            if trace is not None and (audio is None or not len(audio)):
                self.carried[id(j.state)], trace = (j.state, trace), None  # no speech yet: the next job carries it
                while len(self.carried) > 64:
                    self.carried.pop(next(iter(self.carried)))
            if j.text or (audio is not None and len(audio)):
                j.sink(self.make_event("delta", j.epoch, text=j.text, audio=audio, trace=trace))
            for m in j.marks:  # e.g. a tool-call block: after the text before it, in order
                j.sink(self.make_event("block", j.epoch, info=m))
            if j.done_info is not None:
                try:
                    tail = self.model.flush_audio(j.state)
                except Exception:
                    log.exception("codec flush failed")
                    tail = np.zeros(0, np.float32)
                if j.resampler is not None:
                    tail = np.concatenate([j.resampler.process(tail), j.resampler.flush()])
                trace = self.carried.pop(id(j.state), (None, None))[1]
                j.sink(self.make_event("done", j.epoch, audio=tail, info=j.done_info,
                                       trace=trace if len(tail) else None))

    def _trace(self, j: AudioJob, decoded: bool, t0: float, t1: float) -> list | None:
        """The first-audio trace this job goes on with, with the codec's spans if it decoded a frame."""
        trace = j.trace
        if trace is None:
            trace = self.carried.pop(id(j.state), (None, None))[1]
            if trace is not None and decoded:  # this job's step, not the first one, made the first sound
                add_span(trace, "decode", j.t_decode, j.t_step)
        if trace is not None and decoded:
            add_span(trace, "audio_queue", j.t_step, t0)
            add_span(trace, "audio_decode", t0, t1)
        return trace

"""Stage 4 of the pipeline: streaming codec decoding on its own thread.

The engine thread hands each decode step's output (text + one codec frame per
session) to this stage and goes straight on to the next LLM step, so the
speech decoder of step n runs while the LLM computes step n+1. Frames of all
sessions that are waiting are decoded in one `decode_audio` call; frames of one
response stay in order (one per call), and text is emitted in step order with
its audio (a tool-call block goes out after the text before it). Output of a
response that was rolled back or interrupted meanwhile
is still produced but carries the old epoch, which the session drops.
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


class AudioStage:
    def __init__(self, model: Any, metrics: Metrics, make_event: Callable[..., Any]) -> None:
        self.model, self.metrics, self.make_event = model, metrics, make_event
        self.q: queue.SimpleQueue = queue.SimpleQueue()
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
        if with_frames:
            self.metrics.observe("omni_audio_decode_seconds", time.perf_counter() - t0)
            self.metrics.observe("omni_audio_batch_size", len(with_frames))
        audio_of = {id(j): p for j, p in zip(with_frames, pieces)}
        for j in batch:
            audio = audio_of.get(id(j))
            if audio is not None and j.resampler is not None:
                audio = j.resampler.process(audio)
            if j.text or (audio is not None and len(audio)):
                j.sink(self.make_event("delta", j.epoch, text=j.text, audio=audio))
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
                j.sink(self.make_event("done", j.epoch, audio=tail, info=j.done_info))

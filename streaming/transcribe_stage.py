"""Input transcription off the serving path: one worker process for all sessions.

A recognizer holds the GIL while it decodes (pocketsphinx does: measured, the
engine thread got ~1% of its loop iterations meanwhile), so it must not run on
the event loop, the engine thread or any thread of the serving process. It runs
in a process of its own (started with `spawn`, niced, one intra-op thread), built
there from a factory named "module:function" (omni/transcribe.py TRANSCRIBERS),
so another transcriber plugs in by name. The process starts with the first
session that asks for transcripts; sessions `await transcribe(audio)`.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

log = logging.getLogger(__name__)
_worker: Any = None  # the transcriber, in the worker process


def _init(factory: str, kwargs: dict[str, Any]) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        os.nice(5)  # the serving process's threads come first on a busy machine
    except OSError:
        pass
    global _worker
    module, name = factory.split(":")
    _worker = getattr(importlib.import_module(module), name)(**kwargs)


def _transcribe(pcm: bytes) -> str:
    audio = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
    return _worker.transcribe(audio)


def _ready() -> str:
    return _worker.name


class TranscribeStage:
    def __init__(self, name: str, factory: str, kwargs: dict[str, Any] | None = None) -> None:
        self.name = name
        self.pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_init, initargs=(factory, kwargs or {}))
        self.pool.submit(_ready)  # start (and build) the transcriber now, not at the first utterance

    async def transcribe(self, audio: np.ndarray) -> str:
        """The words of `audio` (16 kHz float mono)."""
        pcm = (np.clip(np.asarray(audio, dtype=np.float32), -1, 1) * 32767).astype("<i2").tobytes()
        return await asyncio.wrap_future(self.pool.submit(_transcribe, pcm))

    def close(self) -> None:
        # Nothing waits for a transcript once the server closes, and a worker still building its
        # recognizer (a spawn plus imports: tens of seconds on a busy machine) would hold up the
        # process's exit, since concurrent.futures joins its workers at interpreter exit. So the
        # workers are ended, not awaited.
        workers = list((getattr(self.pool, "_processes", None) or {}).values())
        self.pool.shutdown(wait=False, cancel_futures=True)
        for proc in workers:
            if proc.is_alive():
                proc.terminate()

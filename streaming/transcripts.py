"""Input transcripts of a session: `Transcripts`, the part of a session that reports what the user said.

With `audio.input.transcription` on, the 16 kHz audio of each user turn (from
its pre-roll to the confirmed end of turn; or a committed manual buffer; or the
audio parts of a user item) goes to the server's recognizer, which runs in its
own process (streaming/transcribe_stage.py), so the turn and its reply never
wait for it. The words come back as `conversation.item.input_audio_transcription.delta`
(one per word) and `.completed` for the user item, usually while the reply is
already playing; a failure is `.failed`. The item's content then carries the
transcript (`conversation.item.retrieve`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

import numpy as np

from streaming.metrics import Metrics
from streaming.protocol.events import ServerEvents

log = logging.getLogger(__name__)
SR = 16000
MAX_TURN_SECONDS = 120  # audio kept for one transcript (a longer turn is transcribed up to this)


class Transcripts:
    def __init__(self, send: Callable[[dict], None], ev: ServerEvents, conv: Any, metrics: Metrics,
                 config: Callable[[], Any], stage: Callable[[], Any]) -> None:
        # config(): the session's current SessionConfig; stage(): the server's recognizer (started on first use)
        self.send, self.ev, self.conv, self.metrics, self.config, self.stage = send, ev, conv, metrics, config, stage
        self.capture: list[np.ndarray] | None = None  # the current user turn's audio, while transcripts are on
        self.capture_samples = 0
        self.tasks: set = set()

    def start(self, audio: np.ndarray) -> None:
        """A user turn starts (its pre-roll is `audio`): keep its audio if transcripts are on."""
        self.capture = [audio.copy()] if self.config().transcription else None
        self.capture_samples = len(audio)

    def add(self, audio: np.ndarray) -> None:
        if self.capture is not None and self.capture_samples < MAX_TURN_SECONDS * SR:
            self.capture.append(audio)
            self.capture_samples += len(audio)

    def end(self, item_id: str, audio: np.ndarray | None = None) -> None:
        """The turn is committed as `item_id`: transcribe what was kept (or `audio`,
        a committed manual buffer)."""
        kept, self.capture = self.capture, None
        if audio is not None:
            self.transcribe(item_id, 0, audio)
        elif kept:
            self.transcribe(item_id, 0, np.concatenate(kept)[: MAX_TURN_SECONDS * SR])

    def transcribe(self, item_id: str, content_index: int, audio: np.ndarray) -> None:
        if not self.config().transcription or not len(audio):
            return
        stage = self.stage()
        if stage is None:
            return
        task = asyncio.create_task(self._run_transcript(stage, item_id, content_index, audio))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run_transcript(self, stage: Any, item_id: str, content_index: int, audio: np.ndarray) -> None:
        base = dict(item_id=item_id, content_index=content_index)
        try:
            text = await stage.transcribe(audio)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.warning("transcription of %s failed: %s", item_id, e)
            self.metrics.inc("omni_transcription_errors_total")
            self.send(self.ev.make("conversation.item.input_audio_transcription.failed", error={
                "type": "transcription_error", "code": "transcription_failed", "message": str(e)[:500],
                "param": None}, **base))
            return
        words = text.split()
        for i, w in enumerate(words):
            self.send(self.ev.make("conversation.item.input_audio_transcription.delta",
                                   delta=w + (" " if i + 1 < len(words) else ""), **base))
        text = " ".join(words)  # the deltas add up to it exactly
        self.conv.set_transcript(item_id, text)
        self.metrics.inc("omni_transcriptions_total")
        self.send(self.ev.make("conversation.item.input_audio_transcription.completed", transcript=text,
                               usage={"type": "duration", "seconds": round(len(audio) / SR, 3)}, **base))

    def stop(self) -> None:
        for task in list(self.tasks):
            task.cancel()

"""When the page ends the user's turn: the model's own judgment where it has one.

A server whose model has an end-of-turn head (`session.omni.semantic_turn`, the shipped
default model's has) serves `semantic_vad`: the model judges whether the question is
complete after 128 ms of silence and waits out a pause inside it. The page asks for it
with `eagerness: "high"`, measured against the server's default on the same trials
(README "Which turn detection the page asks for",
`bench/results/turn_taking_eagerness_calibrated_cpu.json`,
the shipped model on the 2-core CPU): first audio 345 against 679 ms after a complete
question (p50; mean 549 against 666), pauses of 600-1200 ms inside a question taken over
6 of 24 times against 20 of 24. `auto` waits out more pauses (1 of 24) but makes four
complete questions in ten wait 1.3-2.5 s. A server without a head serves `semantic_vad`
as silence alone, at a shorter silence than its default, so the page then keeps the default.

A played question is the microphone while it plays (`play_as_microphone`): after its own tail of
silence the page keeps sending silence, as a live microphone would, until the server ends the
turn. Without it a question the model judged unfinished would wait for silence that never comes.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np

from demo.tools import session_omni

PAGE_TURN_DETECTION = {"type": "semantic_vad", "eagerness": "high"}
OPEN_MIC_S = 6.0  # the most silence sent after a played question (past every eagerness's longest wait)
CHUNK_S = 0.04


def judges_turns(session: dict[str, Any] | None) -> bool:
    """Whether a server's model judges the end of a turn (`session.omni.semantic_turn`)."""
    return session_omni(session).get("semantic_turn") is True


def page_turn_detection(session: dict[str, Any] | None) -> dict[str, Any]:
    """The `turn_detection` the page configures ({} : the server's default)."""
    return {"turn_detection": dict(PAGE_TURN_DETECTION)} if judges_turns(session) else {}


async def play_as_microphone(client: Any, pcm: np.ndarray, rate: int = 16000, open_mic_s: float = OPEN_MIC_S) -> None:
    """Stream a question (float32 at `rate`, the session's input rate) in real time, then
    silence until the server commits the user's turn, at most `open_mic_s`."""
    start = len(client.events)
    await client.stream_audio(pcm, rate, realtime=True)
    quiet = np.zeros(int(client.in_rate * CHUNK_S), np.float32)  # appends go at the session's rate
    deadline = time.perf_counter() + open_mic_s
    while time.perf_counter() < deadline and not any(
            e.get("type") == "input_audio_buffer.committed" for e in client.events[start:]):
        await client.append_audio(quiet)
        await asyncio.sleep(CHUNK_S)

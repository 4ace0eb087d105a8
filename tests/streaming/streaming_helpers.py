"""Helpers of the streaming tests (a uniquely named module, so test files can
import it whatever other conftest.py files are loaded): spoken questions with
espeak-ng + sox, and a scripted stand-in model for unit tests of the engine and
session logic."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import threading
import wave
from pathlib import Path

import numpy as np
import pytest

from omni.realtime_api import StepOutput, UserChunk


def speak(text: str, path: Path, rate: int = 16000, speed: int = 150) -> np.ndarray:
    """Synthesize `text` with espeak-ng, convert to 16-bit mono `rate` with sox."""
    if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        pytest.fail("espeak-ng and sox are required (Debian packages; see scripts/bootstrap.sh)")
    raw = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", str(speed), "-w", str(raw), text], check=True)
    # trim espeak's leading/trailing silence so tests control the pauses exactly
    subprocess.run(["sox", str(raw), "-r", str(rate), "-c", "1", "-b", "16", str(path),
                    "silence", "1", "0.02", "1%", "reverse", "silence", "1", "0.02", "1%", "reverse"], check=True)
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0


class ScriptedModel:
    """A RealtimeModel stand-in whose context is a plain token list per slot.

    Prefill appends one token per 80 ms of audio; a reply is a fixed script
    spoken one word per decode step with one codec frame each (`replies`: one
    script per reply in turn, the last one repeating; a script given as a list
    is its steps' text pieces exactly, so a tag can be split anywhere). Every call
    records its thread, so tests can prove the model only runs on the engine
    thread."""

    input_sample_rate = 16000
    output_sample_rate = 16000
    codec_frame_samples = 960

    def __init__(self, max_slots: int = 4, reply: str = "Sure. The sky is blue, mostly. Bye now!",
                 step_delay: float = 0.0, encode_delay: float = 0.0, replies: list | None = None) -> None:
        self.max_slots = max_slots
        # each step's text: a string script's words (a space after all but the last), a list's pieces as given
        self.scripts = [list(r) if isinstance(r, list) else [w + " " for w in r.split(" ")[:-1]] + [r.split(" ")[-1]]
                        for r in (replies or [reply])]
        self.replies_begun = 0
        self.words = self.scripts[0]
        self.ctx: dict[int, list] = {}
        self.free = list(range(max_slots))
        self.threads: set[int] = set()
        self.thread_of: dict[str, set[int]] = {}  # call kind -> threads that made it
        self.calls: list[tuple] = []
        self.step_delay = step_delay
        self.encode_delay = encode_delay
        self.spans: list[tuple[str, float, float]] = []  # (call kind, start, end) of encode and decode
        self.pos: dict[int, int] = {}
        self.closed_ctx: dict[int, list] = {}  # context of closed slots, for assertions
        # tests set an unset Event here to hold decoding until they have queued all
        # their commands (batching then does not depend on thread timing)
        self.gate: threading.Event | None = None

    def context(self, slot: int) -> list:
        return self.ctx.get(slot, self.closed_ctx.get(slot))

    def _t(self, *call: object) -> None:
        self.threads.add(threading.get_ident())
        self.thread_of.setdefault(call[0], set()).add(threading.get_ident())
        self.calls.append(call)  # list.append is atomic: safe from the engine and audio threads

    def open_slot(self, system_prompt: str | None = None) -> int:
        self._t("open")
        if not self.free:
            raise RuntimeError("no free slot")
        s = self.free.pop(0)
        self.ctx[s] = [("sys", system_prompt)]
        return s

    def close_slot(self, slot: int) -> None:
        self._t("close", slot)
        self.closed_ctx[slot] = self.ctx.pop(slot)
        self.free.append(slot)

    def slot_length(self, slot: int) -> int:
        return len(self.ctx[slot])

    def truncate(self, slot: int, length: int) -> None:
        self._t("truncate", slot, length)
        assert length <= len(self.ctx[slot])
        del self.ctx[slot][length:]

    def encode_chunk(self, slot: int, chunk: UserChunk) -> list:
        import time

        t0 = time.perf_counter()
        self._t("encode", slot, len(chunk.audio), len(chunk.frames), chunk.speaking)
        if self.encode_delay:
            time.sleep(self.encode_delay)
        self.spans.append(("encode", t0, time.perf_counter()))
        if chunk.start_time < 0:  # tests: a packet the encoder rejects
            raise ValueError("packet with a negative start time")
        # one token per 80 ms frame of absolute time: chunk boundaries do not matter,
        # like an exact streaming encoder with a time-based sequence layout
        a = round(chunk.start_time * 16000)
        first, last = -(-a // 1280), -(-(a + len(chunk.audio)) // 1280)
        return [("img",)] * len(chunk.frames) + [("audio", f) for f in range(first, last)]

    def prefill(self, items) -> None:
        self._t("prefill", [s for s, _ in items])
        for slot, enc in items:
            self.ctx[slot].extend(enc)

    def prefill_text(self, slot: int, role: str, text: str) -> None:
        self._t("text", slot, role, text)
        self.ctx[slot].append((role, text))

    def begin_response(self, slot: int, opening: str = "") -> None:
        self._t("begin", slot)
        self.ctx[slot].append(("begin", opening) if opening else ("begin",))
        self.pos[slot] = 0
        # the next script once a reply was closed (a rolled-back speculative reply takes it again)
        self.words = self.scripts[min(self.replies_begun, len(self.scripts) - 1)]

    def begin_responses(self, items) -> None:
        self._t("begins", [slot for slot, _ in items])
        for slot, opening in items:
            self.begin_response(slot, opening)

    def decode_step(self, slots):
        import time

        t0 = time.perf_counter()
        self._t("decode", list(slots))
        if self.gate is not None:
            assert self.gate.wait(30), "decode gate never opened"
        if self.step_delay:
            time.sleep(self.step_delay)
        self.spans.append(("decode", t0, time.perf_counter()))
        outs = []
        for s in slots:
            i = self.pos[s]
            self.pos[s] = i + 1
            done = i + 1 >= len(self.words)
            word = self.words[i]
            self.ctx[s].append(("tok", word))
            outs.append(StepOutput(i, word, np.array([i, 1, 2, 3]), done))
        return outs

    def end_response(self, slot: int) -> None:
        self._t("end", slot)
        self.replies_begun += 1
        self.ctx[slot].append(("end",))

    def end_responses(self, slots) -> None:
        self._t("ends", list(slots))
        for slot in slots:
            self.end_response(slot)

    def new_audio_state(self):
        return {"n": 0}

    def decode_audio(self, items):
        self._t("audio", len(items))
        out = []
        for st, frame in items:
            st["n"] += 1
            t = np.arange(self.codec_frame_samples) / self.output_sample_rate
            out.append((0.3 * np.sin(2 * np.pi * 220 * (1 + frame[0] % 3) * t)).astype(np.float32))
        return out

    def flush_audio(self, state):
        return np.zeros(0, np.float32)


class SlowTranscriber:
    """A transcriber (built in the server's transcription process) that takes its time
    and says which process it ran in: tests show the turn never waits for it."""

    name = "slow"

    def __init__(self, seconds: float = 2.0) -> None:
        self.seconds = seconds

    def transcribe(self, audio: np.ndarray) -> str:
        import os
        import time

        time.sleep(self.seconds)
        return f"pid {os.getpid()} heard {len(audio)} samples"


def debug_realtime(max_slots: int, capacity: int, max_steps: int):
    """The `debug` model (seed 0) behind a RealtimeOmni, as the server drives it."""
    import torch

    from omni.config import get_omni_config
    from omni.generation import GenerationOptions
    from omni.model import OmniModel
    from omni.realtime import RealtimeOmni

    torch.manual_seed(0)
    model = OmniModel(get_omni_config("debug"))
    return RealtimeOmni(model, max_slots=max_slots, capacity=capacity,
                        options=GenerationOptions(max_new_tokens=max_steps))


def run(coro, timeout: float = 90.0):
    """Run one test's coroutine with a time limit."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


@contextlib.asynccontextmanager
async def serving(model, **kw):
    """An OmniServer on a free port for the block."""
    from streaming.server import OmniServer, ServerConfig

    srv = await OmniServer(model, ServerConfig(port=0, **kw)).start()
    try:
        yield srv
    finally:
        await srv.close()


def silence(seconds: float, sr: int = 16000) -> np.ndarray:
    return np.zeros(int(sr * seconds), np.float32)

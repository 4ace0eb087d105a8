"""A two-minute session with the camera on, on the real `debug` model: the
context is accounted by the real token cost of frames and audio, so when it
fills up the conversation goes on in a fresh context (announced with
`omni.context_reset`, not an error), and no packet is lost on the way."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging

import numpy as np
import pytest
import torch

from streaming.client import RealtimeClient
from streaming.engine_commands import Chunk
from streaming.server import OmniServer, ServerConfig

SR = 16000
MAX_STEPS = 12
SESSION_S = 120.0
FPS = 2.0  # the camera offers frames at the dense rate


@pytest.fixture(scope="module")
def omni():
    from omni.config import get_omni_config
    from omni.generation import GenerationOptions
    from omni.model import OmniModel
    from omni.realtime import RealtimeOmni

    torch.manual_seed(0)
    model = OmniModel(get_omni_config("debug"))
    # a small context, so two minutes of camera fill it several times
    return RealtimeOmni(model, max_slots=2, capacity=2048, options=GenerationOptions(max_new_tokens=MAX_STEPS))


def webcam_jpeg(k: int) -> bytes:
    """A 640x480 frame, as a webcam sends, with structure (a moving square on a gradient)."""
    from PIL import Image

    y, x = np.mgrid[0:480, 0:640]
    img = np.stack([(x * 255 // 640), (y * 255 // 480), np.full_like(x, 90)], -1).astype(np.uint8)
    c = (k * 13) % 560
    img[200:280, c:c + 80] = (250, 40, 40)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=80)
    return buf.getvalue()


def test_two_minutes_with_a_camera_keep_going_without_losing_packets(omni, voice, caplog, monkeypatch):
    questions = [voice(q) for q in ("What do you see on the table?", "Where is the red square now?",
                                    "Is it moving to the left or to the right?", "Tell me about the colors.")]
    submitted, prefilled = [0], [0]
    real_prefill = omni.prefill

    def counting_prefill(items):
        real_prefill(items)  # counted only once it went in
        prefilled[0] += len(items)

    monkeypatch.setattr(omni, "prefill", counting_prefill)

    async def main():
        async with contextlib.AsyncExitStack() as stack:
            srv = await OmniServer(omni, ServerConfig(port=0, max_steps=MAX_STEPS)).start()
            stack.push_async_callback(srv.close)
            real_submit = srv.engine.submit

            def counting_submit(handle, command):
                submitted[0] += isinstance(command, Chunk)
                real_submit(handle, command)

            srv.engine.submit = counting_submit
            c = await stack.enter_async_context(RealtimeClient(srv.url))
            await c.configure(output_modalities=["text"])
            t, k, turn, statuses = 0.0, 0, 0, []

            async def stream(audio: np.ndarray) -> None:
                nonlocal t, k
                for i in range(0, len(audio), 640):  # 40 ms pieces, frames at their media time
                    while k / FPS <= t + i / SR:
                        await c.append_image(webcam_jpeg(k), k / FPS * 1000)
                        k += 1
                    await c.append_audio(audio[i:i + 640])
                t += len(audio) / SR

            while t < SESSION_S:
                # one user turn: ~6 s of questions and the silence that ends it; then the
                # microphone and the camera go on while the assistant answers
                speech = np.concatenate([np.concatenate([questions[(turn + i) % 4], np.zeros(SR // 5, np.float32)])
                                         for i in range(3)] + [np.zeros(SR, np.float32)])
                n = len(c.events)
                await stream(speech)
                await c.wait_for(lambda e: e["type"] == "response.created", 60, start=n)
                await stream(np.zeros(6 * SR, np.float32))
                r = await c.wait_response(60, start=n)
                statuses.append(r.status)
                turn += 1
            await asyncio.wrap_future(srv.engine.barrier())
            return c, statuses, srv.metrics.render()

    with caplog.at_level(logging.ERROR, logger="streaming"):
        c, statuses, prom = asyncio.run(asyncio.wait_for(main(), 600))
    resets = [e for e in c.events if e["type"] == "omni.context_reset"]
    assert not c.errors, c.errors[:3]
    assert len(statuses) >= 8 and all(s in ("completed", "incomplete") for s in statuses), statuses
    assert len(resets) >= 2, "two minutes of camera should fill a 2048-token context more than once"
    assert submitted[0] > 60 and prefilled[0] == submitted[0], (submitted, prefilled)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.records[:3]
    assert "omni_context_resets_total" in prom

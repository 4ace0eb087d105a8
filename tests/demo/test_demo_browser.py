"""The live demo in headless Chromium: a fake microphone plays an espeak-ng
question, the page streams it (and the fake webcam) through the Gradio app to
the realtime server running the `debug` model, and the transcript and the
spoken reply appear in the page."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import threading
import time

import pytest

from tests.demo.browser_helpers import CHROMIUM, FLAGS, replay_audio
from tests.demo.browser_helpers import free_port as _free_port


@pytest.fixture(scope="module")
def server():
    """The realtime server on the debug model, on its own event loop thread."""
    import torch

    from omni.config import get_omni_config
    from omni.generation import GenerationOptions
    from omni.model import OmniModel
    from omni.realtime import RealtimeOmni
    from streaming.server import OmniServer, ServerConfig

    torch.manual_seed(0)
    model = RealtimeOmni(OmniModel(get_omni_config("debug")), max_slots=2, capacity=2048,
                         options=GenerationOptions(max_new_tokens=12))
    loop = asyncio.new_event_loop()
    box: dict = {}

    def run() -> None:
        asyncio.set_event_loop(loop)
        box["srv"] = loop.run_until_complete(OmniServer(model, ServerConfig(port=0, max_steps=12)).start())
        loop.run_forever()

    threading.Thread(target=run, daemon=True).start()
    deadline = time.time() + 60
    while "srv" not in box and time.time() < deadline:
        time.sleep(0.05)
    srv = box["srv"]
    yield srv
    asyncio.run_coroutine_threadsafe(srv.close(), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)


@pytest.mark.browser
@pytest.mark.slow
def test_demo_page_streams_mic_and_shows_transcript_and_reply(server, tmp_path):
    if not os.path.exists(CHROMIUM):
        pytest.fail("Debian chromium is required for the browser test (scripts/bootstrap.sh installs it)")
    from playwright.sync_api import sync_playwright

    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    # the fake microphone loops this file: 0.5 s silence, the question, 2.5 s silence
    raw, mic = tmp_path / "q.wav", tmp_path / "mic.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(raw), "What color is the sky?"], check=True)
    subprocess.run(["sox", str(raw), "-r", "48000", "-c", "1", "-b", "16", str(mic), "pad", "0.5", "2.5"], check=True)

    from demo.app import make_app

    app = make_app(server.url)
    port = _free_port()
    app.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, share=False,
                       quiet=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=FLAGS + [f"--use-file-for-fake-audio-capture={mic}",
                                                      "--autoplay-policy=no-user-gesture-required"])
            page = browser.new_context(permissions=["microphone", "camera"]).new_page()
            page.goto(f"http://127.0.0.1:{port}/", timeout=30000)
            page.get_by_text("Click to Access Webcam").click(timeout=15000)
            page.locator("#cam button.capture-button").click(timeout=15000)
            page.locator("#mic button.record-button").click(timeout=15000)
            # the assistant's reply text shows up in the transcript
            try:
                page.wait_for_function(
                    "(() => { const t = document.querySelector('#transcript textarea').value;"
                    " const m = t.match(/assistant \\[\\w+\\]: (.+)/); return /you: (\\(spoke\\)|[a-z])/.test(t) && m &&"
                    " m[1].trim().length > 0 })()", timeout=120000)
            except Exception:
                pytest.fail(f"no reply in the page; transcript: {page.input_value('#transcript textarea')!r}; "
                            f"status: {page.inner_text('#status')!r}")
            transcript = page.input_value("#transcript textarea")
            # the spoken reply is loaded into the player: fetch it and check it is real audio
            reply_audio, reply_rate = replay_audio(page, tmp_path)
            frames = len(reply_audio)
            # the live player was handed the reply's audio as it arrived: all of it, in chunks
            # (its polls run every 0.3 s and may lag on a busy machine: wait for the count)
            try:
                page.wait_for_function(f"window.omniPlayer && Object.values(window.omniPlayer.byReply)"
                                       f".some(n => n >= {frames})", timeout=30000)
            except Exception:
                pass  # the assertion below reports the counts
            time.sleep(0.5)  # and nothing more arrives after it
            player = page.evaluate("({chunks: omniPlayer.chunks, samples: omniPlayer.samples, byReply: omniPlayer.byReply, "
                                   "rate: omniPlayer.ctx.sampleRate, state: omniPlayer.ctx.state})")
            status = page.inner_text("#status")
            model_line = page.inner_text("#model")
            latency = page.inner_text("#latency")
            browser.close()
    finally:
        app.close()
    assert "connected" in status and "frames 0" not in status  # webcam frames were streamed too
    assert "model: omni" in model_line, model_line  # the name the server's session reports
    seconds = frames / reply_rate
    assert 0.05 < seconds <= 12 * 0.06 + 0.3, seconds  # at most max_steps codec frames of speech
    # every sample of the reply went through the live player, and its context was running (the
    # fake microphone loops, so a next reply may have started meanwhile: count per reply)
    assert player["chunks"] >= 1 and frames in player["byReply"].values(), (player, frames)
    assert player["samples"] == sum(player["byReply"].values()), player
    assert player["state"] == "running", player
    assert "after the end-of-turn confirmation" in latency
    # the user's turn: the words the server's recognizer heard in the fake microphone's tone, or "(spoke)"
    assert re.search(r"you: (\(spoke\)|[a-z])", transcript), transcript

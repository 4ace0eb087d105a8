"""The whole product in headless Chromium: `omni demo` starts `omni serve` on the shipped
default model, the page's virtual camera streams a held-out scene of the model's world,
the page plays a held-out spoken question about it, and the answer appears in the
transcript and is heard (pocketsphinx, grammar of all answers) in the reply audio; then
asking again over the next reply (barge-in) stops it, and the Interrupt button the one
after; the next scene, a video, plays in the page; in a new tab, the suggested light
request switches the page's light (the model's call, run by the page). The page's
screenshot is kept for the README (docs/demo.png)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from omni.defaults import DEFAULT_MODEL_DIR
from tests.demo.browser_helpers import CHROMIUM, replay_audio
from tests.demo.browser_helpers import FLAGS as BROWSER_FLAGS
from tests.demo.browser_helpers import free_port as _free_port

ROOT = Path(__file__).resolve().parents[2]
FLAGS = BROWSER_FLAGS + ["--autoplay-policy=no-user-gesture-required"]
SCENES = os.path.join(DEFAULT_MODEL_DIR, "demo")
TEXT = "(s => (document.querySelector(s) || {innerText: ''}).innerText)"  # '' until the element exists
# whether the page's player stopped the reply whose id ends so (the transcript shows the ends of ids)
STOPPED = "(tail => ((window.omniPlayer || {}).stopped || []).some(r => r.endsWith(tail)))"


@pytest.fixture(scope="module")
def demo_page():
    """`omni demo` on the shipped default model: (page URL, its log file)."""
    if not os.path.isfile(os.path.join(SCENES, "scenes.json")):
        pytest.fail(f"{SCENES}/scenes.json is missing: the shipped default model's demo scenes")
    port, log = _free_port(), ROOT / "runs" / "test_demo_world.log"
    log.parent.mkdir(exist_ok=True)
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1")
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "omni.cli", "demo", "--port", str(port), "--device", "cpu"],
                                cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 240
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"omni demo exited ({proc.returncode}): {log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(url, timeout=2).read()
            break
        except OSError:
            time.sleep(0.5)
    else:
        proc.terminate()
        pytest.fail(f"the demo page did not come up: {log.read_text()[-2000:]}")
    yield url, log
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("omni demo did not stop within 20 s of SIGTERM")
    # the server the demo started goes with it (its port closes)
    server = re.search(r"talking to ws://127\.0\.0\.1:(\d+)/", log.read_text())
    assert server, "the demo's log names no server"
    for _ in range(40):
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", int(server.group(1)))) != 0:
                break
        time.sleep(0.5)
    else:
        pytest.fail(f"the demo's server on port {server.group(1)} still runs after the demo stopped")


def wait_for_new_reply_playing(page, after: int) -> str:
    """Wait until the page's player starts the reply after the transcript's first `after`
    ones, and the state line says speaking; -> the end of the reply's id, as the transcript
    shows it. (The state line alone is no sign of a new reply: it goes on saying speaking
    for a while after an older reply's audio ran out.)"""
    got = page.wait_for_function(
        "(n => { const t = document.querySelector('#transcript textarea').value;"
        " const ids = [...t.matchAll(/assistant \\[(\\w+)\\]/g)].map(m => m[1]);"
        " const played = Object.keys((window.omniPlayer || {}).byReply || {});"
        " return ids.length > n && played.some(r => r.endsWith(ids[n]))"
        f" && {TEXT}('#turn_state').includes('speaking') && ids[n] }})",
        arg=after, timeout=120000)
    return got.json_value()


@pytest.mark.browser
@pytest.mark.slow
def test_a_newcomer_asks_about_a_scene_and_hears_the_answer(demo_page, tmp_path):
    if not os.path.exists(CHROMIUM):
        pytest.fail("Debian chromium is required for the browser test (scripts/bootstrap.sh installs it)")
    from playwright.sync_api import sync_playwright

    from omni.synth.questions import answer_space, normalize_answer
    from omni.synth.recognize import AnswerRecognizer

    url, log = demo_page
    doc = json.loads(Path(SCENES, "scenes.json").read_text())
    question = next(q for q in doc["scenes"][0]["questions"] if q["stream_ok"])  # the page's first choice
    assert [q["stream_ok"] for q in doc["requests"] if q["arguments"] == {"on": True}] == [True]  # checked
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        context = browser.new_context(permissions=["microphone", "camera"], viewport={"width": 1280, "height": 1100})
        page = context.new_page()
        page.goto(url, timeout=60000)
        # the page says what the model knows, shows the scene and suggests questions about it
        page.wait_for_function(f"{TEXT}('#model').includes('Try asking')", timeout=30000)
        assert question["text"] in page.inner_text("#question")
        # the shipped model's card names the world's light: the page shows it
        page.wait_for_function(f"{TEXT}('#light').includes('the light is off')", timeout=30000)
        # the virtual camera streams the scene before anyone speaks
        page.wait_for_function(f"/frames [3-9]|frames \\d\\d/.test({TEXT}('#status'))", timeout=60000)
        page.locator("#play_question").click()
        try:
            page.wait_for_function(
                "(() => { const t = document.querySelector('#transcript textarea').value;"
                " const m = t.match(/assistant \\[\\w+\\]: (.+)/); return m && m[1].trim().length > 0"
                " && /you: (?!\\(sp)[a-z]/.test(t)"  # the user's words, once the server's recognizer sends them
                f" && {TEXT}('#latency').includes('completed') }})()", timeout=120000)
        except Exception:
            pytest.fail(f"no reply; transcript {page.input_value('#transcript textarea')!r}, "
                        f"status {page.inner_text('#status')!r}, state {page.inner_text('#turn_state')!r}, "
                        f"server log: {log.read_text()[-1500:]}")
        transcript = page.input_value("#transcript textarea")
        audio, rate = replay_audio(page, tmp_path)
        shot = tmp_path / "demo.png"
        page.screenshot(path=str(shot), full_page=True)
        # barge-in: asking again while the page plays the reply stops that reply
        page.locator("#play_question").click()
        second = wait_for_new_reply_playing(page, after=1)
        page.locator("#play_question").click()
        page.wait_for_function(f"{STOPPED}({second!r})", timeout=20000)
        # and so does the Interrupt button, for the reply to that question
        third = wait_for_new_reply_playing(page, after=2)
        page.locator("#interrupt").click()
        page.wait_for_function(f"{STOPPED}({third!r})", timeout=20000)
        page.wait_for_function(f"{TEXT}('#turn_state').includes('interrupted')", timeout=20000)
        # the next scene is a video: the page shows the frames the camera sends, moving
        page.locator("#next_scene").click()
        page.wait_for_function("(() => { const i = document.querySelector('#scene_view img'); if (!i) return false;"
                               " window.seen = window.seen || new Set(); window.seen.add(i.src);"
                               " return window.seen.size >= 3 })()", timeout=30000)
        # "new scene": a held-out scene made now, with its own questions, on the virtual camera
        shown = page.evaluate("document.querySelector('#scene_view img').src")
        page.locator("#new_scene").click()
        page.wait_for_function("(() => { const i = document.querySelector('#scene input');"
                               " return i && i.value.startsWith('new scene') })()", timeout=60000)
        page.wait_for_function(f"{TEXT}('#ask').includes('never seen in its training')", timeout=30000)
        page.wait_for_function(f"(() => document.querySelector('#scene_view img').src !== {shown!r})()",
                               timeout=30000)
        new_questions = page.inner_text("#question")
        # the light, in a tab of its own (a new conversation, as check_scenes asks it): the
        # request the page suggests beside the scene switches it through the model's call,
        # which the page runs, and the assistant then says so
        page = context.new_page()
        page.goto(url, timeout=60000)
        page.wait_for_function(f"/frames [3-9]|frames \\d\\d/.test({TEXT}('#status'))", timeout=60000)
        light_on = next(q["text"] for q in doc["requests"] if q["arguments"] == {"on": True})
        page.locator(f'#question input[type=radio][value^="{light_on}"]').check()
        page.locator("#play_question").click()
        try:
            page.wait_for_function(f"{TEXT}('#light').includes('the light is on')", timeout=120000)
            page.wait_for_function("document.querySelector('#transcript textarea').value"
                                   ".includes('assistant called set_light({\"on\":true}) -> {\"light\": \"on\"}')",
                                   timeout=30000)
        except Exception:
            pytest.fail(f"the light did not go on; transcript {page.input_value('#transcript textarea')!r}, "
                        f"light {page.inner_text('#light')!r}, server log: {log.read_text()[-1500:]}")
        browser.close()
    reply = transcript.split("assistant [")[1].split("]: ", 1)[1].splitlines()[0]
    import torch
    import torchaudio.functional as AF

    pcm16k = AF.resample(torch.from_numpy(audio), rate, 16000).numpy()
    heard = AnswerRecognizer(answer_space()).recognize(pcm16k, 16000)
    assert normalize_answer(reply) == normalize_answer(question["answer"]), (question, transcript)
    assert heard == normalize_answer(question["answer"]), (heard, question["answer"])
    # the user's words as the server's recognizer heard them: what that recognizer makes of the
    # recording the page played (its word error rate is bench/transcribe_wer.py's business)
    from demo.scenes import SceneSet, pad_question, read_question
    from omni.synth.heldout import word_accuracy
    from omni.transcribe import world_sphinx

    played = next(q for q in SceneSet.load(SCENES).scenes[0].questions if q.text == question["text"])
    expected = world_sphinx().transcribe(pad_question(read_question(played)))
    said = transcript.split("you: ", 1)[1].splitlines()[0]
    assert word_accuracy(expected, normalize_answer(said)) >= 0.75, (said, expected, question["text"])
    assert "✓" not in new_questions and len(new_questions.strip()) > 0  # its questions, none marked checked
    docs = ROOT / "docs" / "demo.png"
    if os.environ.get("OMNI_UPDATE_SCREENSHOT"):  # kept out of normal runs: CI must not change tracked files
        shutil.copyfile(shot, docs)

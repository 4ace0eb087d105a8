"""The Gradio live demo: a thin browser client of the realtime websocket server.

Microphone and webcam stream from the browser to this Gradio app, which relays
them (as `input_audio_buffer.append` and `input_image_buffer.append` events)
over one websocket per browser tab to `omni serve`. A timer polls the tab's
connection, shows the live transcript, hands the reply audio that has arrived
to a Web Audio player in the page (`demo.live_audio`: it plays while the reply
is still being spoken, and stops at once on barge-in), keeps each whole reply
in an audio player for replay, and prints the latency readout; the Interrupt
button sends `response.cancel`.
The transcript shows the user's words as the server's recognizer heard them
(input transcription, asked for when the tab connects; "(spoke)" until they
arrive, or when the server has no recognizer). The page says which model the
server runs (from the session the server describes) and, when the server reports a randomly initialized model, that its
words and voice are noise. The transcript shows text only: control characters
(but newlines) and U+FFFD replacement characters that a babbling model can
produce are dropped.
The camera can also be virtual (`demo.scenes`): a held-out scene of the default
model's world, or an uploaded picture, streamed to the server at 2 frames a second as
the webcam would be, with suggested questions about the scene that the page can play
into the conversation in a held-out synthetic voice (the microphone pauses meanwhile).
A state line says whether the assistant is listening, thinking, speaking or was
interrupted, and a table gives each turn's latency. "new scene" makes another
held-out scene of that world on the spot, with questions spoken in held-out voices
(`demo.new_scene`).
When the server's model card names function tools the model was trained to call (the
default world's `set_light`), the tab declares them and runs the calls (`demo.tools`): the
page shows the light, a box makes it fail to answer, and the transcript shows each call and
its output before the assistant's spoken answer.
It never imports the model: only streaming.protocol, streaming.client, the demo's own
modules and the synthetic world (omni.synth: numpy, PIL and espeak-ng, no torch).
"""

from __future__ import annotations

import asyncio
import atexit
import shutil
import tempfile
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from demo.live_audio import PLAYER_JS, LiveAudio
from demo.new_scene import SceneMaker
from demo.scenes import (SceneSet, ask_note, frame_jpeg, pad_question, question_choices, question_for,
                         read_question)
from demo.tools import CALL_DONE, PageTools, card_tools, has_light, session_model
from demo.turns import page_turn_detection, play_as_microphone
from streaming.client import RealtimeClient
from streaming.protocol import StreamingResampler

TITLE = "omni-stream live demo"
CAMERAS = ("world scene", "uploaded picture", "webcam")
# the events that move the state line (a late input transcript does not)
TURN_EVENTS = ("input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped", "response.created",
               "response.output_audio.delta", "response.audio.delta", "response.done")
PLAYBACK_SLACK_S = 1.0  # the page gets reply audio some time after it leaves here (a busy browser: later still)
RANDOM_NOTE = ("**randomly initialized (untrained): its words and voice are noise, not answers.** "
               "Start the server with a trained model (`omni serve --model DIR`) for real replies.")


def clean_text(text: str) -> str:
    """Text only: drops control characters (newlines stay), lone surrogates and U+FFFD."""
    return "".join(ch for ch in text if ch == "\n" or (ch != "\ufffd" and unicodedata.category(ch) not in ("Cc", "Cs")))


def model_info(session: dict[str, Any] | None) -> tuple[str | None, bool | None]:
    """(name, trained) of the model a session reports; None where it does not say.

    `session.model` is the model's name (as in the OpenAI protocol) or an object
    {"name": str, "trained": bool}; the extension `session.omni.model` may be
    such an object too (it wins where both say)."""
    name: str | None = None
    trained: bool | None = None
    if not isinstance(session, dict):
        return None, None
    omni = session.get("omni") if isinstance(session.get("omni"), dict) else {}
    for m in (session.get("model"), omni.get("model")):
        if isinstance(m, str) and m:
            name = m
        elif isinstance(m, dict):
            if isinstance(m.get("name"), str) and m["name"]:
                name = m["name"]
            if isinstance(m.get("trained"), bool):
                trained = m["trained"]
    return name, trained


def model_card(session: dict[str, Any] | None) -> tuple[str, list[str]]:
    """(about, questions to ask) from `session.omni.model` (`omni serve` reads them from
    the model directory's card.json); empty where the server does not say."""
    m = session_model(session)
    about = m.get("about") if isinstance(m.get("about"), str) else ""
    ask = m.get("ask") if isinstance(m.get("ask"), list) else []
    return _plain(about, 600), [_plain(q, 100) for q in ask[:8] if isinstance(q, str) and q.strip()]


def _plain(text: str, limit: int) -> str:
    """One line of plain text for the page's Markdown (no markup a server could inject)."""
    text = clean_text(text).replace("\n", " ")[:limit]
    return "".join("\\" + ch if ch in "\\`*_[]<>#|~" else ch for ch in text).strip()


def model_note(session: dict[str, Any] | None) -> str:
    """The page's Markdown about the model the server runs: its name, whether it is
    trained, and (when the server says) what it knows and what to ask it."""
    name, trained = model_info(session)
    if name is None and trained is None:
        return "**model:** not known yet (shown once the page is connected)"
    shown = clean_text(name or "unnamed").replace("`", "'").replace("\n", " ")[:120]
    if trained is False:
        return f"**model:** `{shown}`, {RANDOM_NOTE}"
    note = f"**model:** `{shown}`" + (" (trained)" if trained else "")
    about, ask = model_card(session)
    if about:
        note += f"\n\n{about}"
    if ask:
        note += "\n\n**Try asking:** " + " · ".join(f"*{q}*" for q in ask)
    return note


async def fetch_session(url: str, api_key: str | None = None, timeout: float = 10.0) -> dict[str, Any] | None:
    """The session the server describes to a new connection (then closed at once),
    or None when the server is full. Connection failures raise (OSError, websockets')."""
    client = RealtimeClient(url, api_key=api_key)
    try:
        async with asyncio.timeout(timeout):
            await client.connect()
        return dict(client.session)
    except ConnectionError:
        if client.ws is None:  # no connection at all (refused, unreachable)
            raise
        return None  # connected, then closed before session.created: full, or going down
    finally:
        await client.close()


@dataclass
class TabSession:
    """One browser tab's connection to the server and what it has shown."""

    client: RealtimeClient
    resampler: StreamingResampler | None = None
    in_rate: int = 0
    shown_replies: set = field(default_factory=set)
    mic_seconds: float = 0.0
    frames_sent: int = 0
    t_last_frame: float = 0.0
    log: list[str] = field(default_factory=list)
    live: LiveAudio = field(default_factory=LiveAudio)
    shown_note: str = ""
    playing: asyncio.Task | None = None  # a suggested question being played into the conversation
    cut_at: float = 0.0  # when a reply was last cut here while it played
    scene_id: str = ""  # the virtual camera's scene, and when its video (re)started
    video_t0: float = 0.0
    shown_frame: Path | None = None  # the video frame the page shows
    barge_seen: int = 0  # events already looked through for a barge-in
    tools: PageTools = field(default_factory=PageTools)  # the calls the page runs (the light)

    def reply_on_page(self) -> str | None:
        """The latest reply, if it has audio for the page and nothing stopped it."""
        c = self.client
        if not c.order:
            return None
        rid = c.order[-1]
        r = c.replies[rid]
        if r.t_first_audio is None or rid in self.live.cut_ids or r.status in ("cancelled", "failed"):
            return None
        return rid

    def plays_at(self, rid: str, t: float) -> bool:
        """Whether the page may still be playing reply `rid` at time `t`: the server was
        still sending it, or the page had not played out its arrived audio by then. The
        page plays it in real time from when it was handed over (LiveAudio.playback), and
        never before it arrived here; PLAYBACK_SLACK_S more for the page getting it late."""
        c = self.client
        r = c.replies[rid]
        if r.t_done is None or t < r.t_done:
            return True
        end = r.t_first_audio + sum(len(a) for a in r.audio) / c.out_rate
        handed = self.live.playback.get(rid)
        if handed is not None:
            end = max(end, handed[1])
        return t < end + PLAYBACK_SLACK_S

    def playing_reply(self, now: float | None = None) -> str | None:
        """The reply whose arrived audio the page is still playing."""
        now = time.perf_counter() if now is None else now
        rid = self.reply_on_page()
        return rid if rid is not None and self.plays_at(rid, now) else None

    def cut(self, rid: str) -> None:
        self.live.cut(rid)
        self.cut_at = time.perf_counter()

    def cut_playing(self) -> bool:
        """Stop the reply the page is playing (its audio all arrived); True if there was one."""
        rid = self.playing_reply()
        if rid is None:
            return False
        self.cut(rid)
        return True

    def speech_began(self, e: dict) -> float:
        """When the user's speech of a speech_started event began, on this process's clock:
        when the client sent the audio at the event's audio_start_ms (the server counts it
        in all the session's input audio), else (no longer known) when the event arrived,
        which is later by the server's voice detection and the way back."""
        ms = e.get("audio_start_ms")
        t = self.client.input_time(ms) if isinstance(ms, (int, float)) else None
        return e["_t"] if t is None else min(t, e["_t"])

    def barge_in(self) -> None:
        """The user speaking over a reply the server has already finished: stop playing it.
        Judged at the moment the user's speech began, not when this poll looks: voice
        detection, the event's way here and a late poll together can outlast a short
        reply, and a reply the user spoke over is cut even when the news comes late."""
        c = self.client
        # every event since the last look (a busy poll may come after many audio and transcript events)
        new, self.barge_seen = c.events[self.barge_seen:], len(c.events)
        rid = self.reply_on_page()
        if rid is None:
            return
        first = c.replies[rid].t_first_audio
        # speech the server heard after the reply's audio came (earlier speech is the turn it answers)
        if any(e["type"] == "input_audio_buffer.speech_started" and e["_t"] > first
               and self.plays_at(rid, self.speech_began(e)) for e in new):
            self.cut(rid)

    def question_playing(self) -> bool:
        return self.playing is not None and not self.playing.done()

    def state(self, now: float | None = None) -> str:
        """listening / thinking / speaking / interrupted, from the server's events and
        how much reply audio has arrived (the page plays it in real time)."""
        now = time.perf_counter() if now is None else now
        state, last = "listening", 0.0
        for e in self.client.events:
            kind = e["type"]
            if kind in TURN_EVENTS:
                last = e.get("_t", 0.0)
            if kind == "input_audio_buffer.speech_started":
                state = "listening: you are speaking"
            elif kind == "input_audio_buffer.speech_stopped":
                state = "thinking: end of your turn?"
            elif kind == "response.created":
                state = "thinking: answering"
            elif kind in ("response.output_audio.delta", "response.audio.delta"):
                state = "speaking"
            elif kind == "response.done":
                status = (e.get("response") or {}).get("status")
                state = "interrupted" if status in ("cancelled", "incomplete") else "speaking"
        if state == "speaking" and self.playing_reply(now) is None:  # played out, or cut here
            state = "listening"
        if self.cut_at and self.cut_at >= last:  # Interrupt pressed while the page played a finished reply
            state = "interrupted"
        return state

    def transcript(self) -> str:
        lines = []
        c = self.client
        user_line: dict[str, int] = {}  # user item id -> its line
        for e in c.events:
            if e["type"] == "input_audio_buffer.speech_started":
                user_line[e.get("item_id") or ""] = len(lines)
                lines.append("you: (speaking...)")
            elif e["type"] == "input_audio_buffer.speech_stopped" and lines and lines[-1].endswith("(speaking...)"):
                lines[-1] = "you: (spoke)"
            elif e["type"] == "response.created":
                lines.append(f"assistant [{e['response']['id'][-6:]}]: ")
            elif e["type"] == CALL_DONE:
                lines.append(self.tools.transcript_line(e))
            elif e["type"] == "omni.context_reset":  # not an error: the talk goes on in a fresh context
                lines.append(f"(context full: older turns dropped, the last {e.get('kept_turns', 0)} text turns kept)")
        for item_id, words in getattr(c, "input_transcripts", {}).items():
            at = user_line.get(item_id)
            if at is not None and words.strip():
                lines[at] = "you: " + clean_text(words).replace("\n", " ")
        for rid in c.order:
            r = c.replies[rid]
            tag = f"assistant [{rid[-6:]}]: "
            for i, line in enumerate(lines):
                if line.startswith(tag):
                    suffix = "" if r.status in ("in_progress", "completed") else f"  [{r.status}]"
                    lines[i] = tag + clean_text(r.transcript) + suffix
        for err in c.errors[-3:]:
            lines.append(clean_text(f"[server error] {err.get('code')}: {err.get('message')}"))
        return "\n".join(lines)

    def model_update(self) -> str | None:
        """The model line when it has changed since last shown, else None."""
        note = model_note(self.client.session) if self.client.session else None
        if note is None or note == self.shown_note:
            return None
        self.shown_note = note
        return note

    def latency(self) -> str:
        """One row per finished reply (the last 6): the server's timings of the turn."""
        c = self.client
        done = [(k, c.replies[r]) for k, r in enumerate(c.order) if c.replies[r].t_done is not None]
        if not done:
            return "no reply yet"
        ms = lambda v: "" if v is None else f"{1000 * v:.0f}"
        out = ["| turn | status | first audio after end of speech, ms | after the end-of-turn confirmation, ms "
               "| confirmation after end of speech, ms | speculative lead, ms | real-time factor |",
               "|---|---|---|---|---|---|---|"]
        for k, r in done[-6:]:
            m = r.server_metrics
            rtf = "" if m.get("rtf") is None else f"{m['rtf']:.2f}"
            out.append(f"| {k + 1} | {r.status} | {ms(m.get('first_audio_after_speech_end_s'))} "
                       f"| {ms(m.get('first_audio_after_confirm_s'))} | {ms(m.get('confirm_after_speech_end_s'))} "
                       f"| {ms(m.get('speculative_lead_s'))} | {rtf} |")
        return "\n".join(out)


def make_app(url: str, api_key: str | None = None, session: dict[str, Any] | None = None,
             scenes: SceneSet | None = None, new_scenes: bool = True):
    """The page for the server at `url`; `session` (see fetch_session) says which
    model it runs before a tab connects (each tab then shows what its own session says);
    `scenes` (see demo.scenes) are the virtual camera's scenes, if any; with them,
    `new_scenes` offers a "new scene" button (demo.new_scene; its files live in a
    temporary folder removed when the process ends)."""
    import gradio as gr

    first = scenes.choices()[0] if scenes else None
    maker = None
    if scenes is not None and new_scenes:
        root = Path(tempfile.mkdtemp(prefix="omni-demo-scenes-"))
        atexit.register(shutil.rmtree, root, True)
        maker = SceneMaker(root)

    async def ensure(state: TabSession | None) -> TabSession:
        if state is None or state.client.closed.is_set():
            client = RealtimeClient(url, api_key=api_key)
            await client.connect()
            # the tools the model was trained to call, declared as it learned them (demo.tools)
            tools = card_tools(client.session)
            declared = {"tools": tools, "tool_choice": "auto"} if tools else {}
            # {}: the server's own recognizer (whatever it is); the transcript shows the user's words
            # the model's own end of turn where it has one (demo.turns)
            await client.configure(input_rate=16000, output_rate=24000, transcription={}, **declared,
                                   **page_turn_detection(client.session))
            light_answers = state.tools.light_answers if state is not None else True
            state = TabSession(client)
            state.tools.light_answers = light_answers
            if tools:
                state.tools.start(client)
        return state

    async def on_audio(chunk, state: TabSession | None):
        if chunk is None:
            return state
        state = await ensure(state)
        if state.question_playing():  # a played question is the microphone meanwhile
            return state
        rate, data = chunk
        x = np.asarray(data)
        x = x.astype(np.float32) / 32768.0 if x.dtype == np.int16 else x.astype(np.float32)
        if x.ndim == 2:
            x = x.mean(axis=1)
        if state.resampler is None or state.in_rate != rate:
            state.resampler, state.in_rate = StreamingResampler(int(rate), 16000), rate
        pcm = state.resampler.process(x)
        state.mic_seconds += len(x) / rate
        if len(pcm):
            await state.client.append_audio(pcm)
        return state

    async def send_frame(state: TabSession, frame) -> None:
        now = time.perf_counter()
        if now - state.t_last_frame < 0.45:  # 2 FPS is all the model takes
            return
        await state.client.append_image(frame_jpeg(frame))
        state.frames_sent += 1
        state.t_last_frame = now

    async def on_frame(image, camera: str, state: TabSession | None):
        if image is None or camera != "webcam":
            return state
        state = await ensure(state)
        await send_frame(state, image)
        return state

    async def virtual_camera(camera: str, label: str | None, upload, state: TabSession | None):
        """The chosen scene (or uploaded picture) as the camera, 2 frames a second; a video
        scene plays from its start when chosen and when a question is played, and the page
        shows the frame it sends."""
        scene = scenes.by_label(label) if scenes else None
        shown = gr.skip()
        if camera == "world scene" and scene is not None:
            state = await ensure(state)
            if state.scene_id != scene.id:
                state.scene_id, state.video_t0 = scene.id, time.perf_counter()
            frame = scene.frame_at(time.perf_counter() - state.video_t0)
            await send_frame(state, frame)
            if len(scene.frames) > 1 and frame != state.shown_frame:
                state.shown_frame, shown = frame, str(frame)
        elif camera == "uploaded picture" and upload is not None:
            state = await ensure(state)
            await send_frame(state, upload)
        return state, shown

    def pick_scene(label: str | None):
        scene = scenes.by_label(label) if scenes else None
        choices = question_choices(scene)
        ok = [c for c, q in zip(choices, scene.questions) if q.ok] if scene else []
        return (None if scene is None else str(scene.image), ask_note(scene),
                gr.update(choices=choices, value=(ok or choices or [None])[0]))

    def next_scene(label: str | None):
        if not scenes:
            return gr.update()
        return gr.update(choices=scenes.choices(), value=scenes.next_label(label))

    def new_scene():
        """Another held-out scene of the world, made now (shared with the page's other tabs)."""
        if maker is None or scenes is None:
            return gr.update()
        try:
            label = scenes.add(maker())
        except (OSError, RuntimeError, ValueError) as e:  # e.g. espeak-ng missing: the page goes on
            gr.Warning(f"could not make a new scene: {e}")
            return gr.update()
        return gr.update(choices=scenes.choices(), value=label)

    async def play_question(label: str | None, choice: str | None, state: TabSession | None):
        q = question_for(scenes.by_label(label) if scenes else None, choice)
        if q is None:
            return state
        state = await ensure(state)
        if state.question_playing():  # a new question replaces the one still playing (or its closing silence)
            state.playing.cancel()
            await asyncio.gather(state.playing, return_exceptions=True)
        pcm = pad_question(read_question(q))
        state.mic_seconds += len(pcm) / 16000
        state.video_t0 = time.perf_counter()  # a video scene plays from its start under the question
        state.playing = asyncio.create_task(play_as_microphone(state.client, pcm))
        return state

    async def on_interrupt(state: TabSession | None):
        if state is not None:
            c = state.client
            active = [r for r in c.order if c.replies[r].t_done is None]
            if active:
                await c.send({"type": "response.cancel"})
            else:  # the server sent the whole reply already: stop the page playing it
                state.cut_playing()
        return state

    def on_light_answers(answers: bool, state: TabSession | None):
        if state is not None:
            state.tools.light_answers = bool(answers)
        return state

    def poll(state: TabSession | None):
        if state is None:
            return ("press Record to talk, or play a question", gr.skip(), "no reply yet", "not connected",
                    gr.skip(), gr.skip(), "**state:** not connected", gr.skip())
        c = state.client
        state.barge_in()
        chunk = state.live.next_message(c)
        audio_update = gr.skip()
        finished = [r for r in c.order if c.replies[r].t_done is not None and r not in state.shown_replies]
        if finished:
            rid = finished[-1]
            state.shown_replies.update(finished)
            wav = c.replies[rid].waveform()
            if len(wav):
                audio_update = (c.out_rate, (np.clip(wav, -1, 1) * 32767).astype(np.int16))
        status = ("disconnected" if c.closed.is_set() else "connected") + \
            f" | mic {state.mic_seconds:.1f} s sent | frames {state.frames_sent}"
        note = state.model_update()
        return (state.transcript(), audio_update, state.latency(), status, gr.skip() if chunk is None else chunk,
                gr.skip() if note is None else note, f"**state:** {state.state()}", state.tools.light())

    with gr.Blocks(title=TITLE) as app:
        gr.Markdown(f"## {TITLE}\nTalk to the assistant: press **Record**, speak, pause. "
                    "It answers when you stop; speak over it (or press Interrupt) to cut it off.")
        model = gr.Markdown(model_note(session), elem_id="model")
        state = gr.State(None)
        with gr.Row():
            with gr.Column():
                camera = gr.Radio(list(CAMERAS) if scenes else ["uploaded picture", "webcam"],
                                  value="world scene" if scenes else "webcam", label="camera", elem_id="camera")
                with gr.Row(visible=scenes is not None):
                    scene_pick = gr.Dropdown(scenes.choices() if scenes else [], value=first,
                                             label="scene of the model's world (held out from its training)",
                                             elem_id="scene", scale=4)
                    next_btn = gr.Button("next scene", elem_id="next_scene", scale=1)
                    new_btn = gr.Button("new scene", elem_id="new_scene", scale=1, visible=maker is not None)
                scene_view = gr.Image(value=pick_scene(first)[0], label="the virtual camera", interactive=False,
                                      elem_id="scene_view", height=224, visible=scenes is not None)
                upload = gr.Image(sources=["upload"], type="numpy", label="a picture of your own (camera: "
                                  "uploaded picture)", elem_id="upload", height=160)
                cam = gr.Image(sources=["webcam"], streaming=True, type="numpy", label="webcam", elem_id="cam")
                mic = gr.Audio(sources=["microphone"], streaming=True, type="numpy", label="microphone",
                               elem_id="mic")
            with gr.Column():
                ask = gr.Markdown(pick_scene(first)[1], elem_id="ask")
                with gr.Row(visible=scenes is not None):
                    question = gr.Radio(question_choices(scenes.by_label(first)) if scenes else [],
                                        value=pick_scene(first)[2]["value"] if scenes else None,
                                        label="questions", elem_id="question", scale=4)
                    play = gr.Button("play it in a held-out voice", elem_id="play_question", scale=1)
                turn = gr.Markdown("**state:** not connected", elem_id="turn_state")
                # the model's tool (its card names set_light): ask it to switch the light
                with gr.Row(visible=has_light(session)):
                    light = gr.Markdown(PageTools().light(), elem_id="light")
                    light_answers = gr.Checkbox(True, label="the light answers (untick: its calls fail)",
                                                elem_id="light_answers")
                transcript = gr.Textbox(label="transcript", lines=10, elem_id="transcript", interactive=False)
                # the live player speaks the reply as it arrives; this one keeps it for replay
                reply = gr.Audio(label="last reply (replay)", autoplay=False, interactive=False, elem_id="reply",
                                 type="numpy")
                live_audio = gr.Textbox(visible=False, elem_id="live_audio")
                interrupt = gr.Button("Interrupt", elem_id="interrupt")
                latency = gr.Markdown("no reply yet", elem_id="latency")
                status = gr.Markdown("not connected", elem_id="status")
        mic.stream(on_audio, inputs=[mic, state], outputs=[state], stream_every=0.25, concurrency_limit=None,
                   show_progress="hidden")
        cam.stream(on_frame, inputs=[cam, camera, state], outputs=[state], stream_every=0.5, concurrency_limit=None,
                   show_progress="hidden")
        scene_pick.change(pick_scene, inputs=[scene_pick], outputs=[scene_view, ask, question], show_progress="hidden")
        next_btn.click(next_scene, inputs=[scene_pick], outputs=[scene_pick])
        new_btn.click(new_scene, inputs=None, outputs=[scene_pick])
        play.click(play_question, inputs=[scene_pick, question, state], outputs=[state])
        interrupt.click(on_interrupt, inputs=[state], outputs=[state])
        light_answers.change(on_light_answers, inputs=[light_answers, state], outputs=[state])
        live_audio.change(None, inputs=[live_audio], js=PLAYER_JS)
        gr.Timer(0.5).tick(virtual_camera, inputs=[camera, scene_pick, upload, state], outputs=[state, scene_view],
                           show_progress="hidden")
        gr.Timer(0.3).tick(poll, inputs=[state],
                           outputs=[transcript, reply, latency, status, live_audio, model, turn, light],
                           show_progress="hidden")
    return app

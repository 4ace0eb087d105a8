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
It never imports the model: only streaming.protocol and streaming.client.
"""

from __future__ import annotations

import asyncio
import io
import time
import unicodedata
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from demo.live_audio import PLAYER_JS, LiveAudio
from streaming.client import RealtimeClient
from streaming.protocol import StreamingResampler

TITLE = "omni-stream live demo"
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
    omni = session.get("omni") if isinstance(session, dict) and isinstance(session.get("omni"), dict) else {}
    m = omni.get("model") if isinstance(omni.get("model"), dict) else {}
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
        c = self.client
        done = [c.replies[r] for r in c.order if c.replies[r].t_done is not None]
        if not done:
            return "no reply yet"
        m = done[-1].server_metrics
        rows = [("first audio after end-of-turn confirmation", m.get("first_audio_after_confirm_s")),
                ("first audio after end of speech", m.get("first_audio_after_speech_end_s")),
                ("end-of-turn confirmation after end of speech", m.get("confirm_after_speech_end_s")),
                ("speculative decode lead", m.get("speculative_lead_s"))]
        out = [f"| measure (last reply, status {done[-1].status}) | ms |", "|---|---|"]
        out += [f"| {k} | {1000 * v:.0f} |" for k, v in rows if v is not None]
        if m.get("rtf") is not None:
            out.append(f"| real-time factor (decode time / audio time) | {m['rtf']:.2f} |")
        return "\n".join(out)


def make_app(url: str, api_key: str | None = None, session: dict[str, Any] | None = None):
    """The page for the server at `url`; `session` (see fetch_session) says which
    model it runs before a tab connects (each tab then shows what its own session says)."""
    import gradio as gr

    async def ensure(state: TabSession | None) -> TabSession:
        if state is None or state.client.closed.is_set():
            client = RealtimeClient(url, api_key=api_key)
            await client.connect()
            # {}: the server's own recognizer (whatever it is); the transcript shows the user's words
            await client.configure(input_rate=16000, output_rate=24000, transcription={})
            state = TabSession(client)
        return state

    async def on_audio(chunk, state: TabSession | None):
        if chunk is None:
            return state
        state = await ensure(state)
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

    async def on_frame(image, state: TabSession | None):
        if image is None:
            return state
        state = await ensure(state)
        now = time.perf_counter()
        if now - state.t_last_frame < 0.45:  # 2 FPS is all the model takes
            return state
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(np.asarray(image, dtype=np.uint8)).convert("RGB").save(buf, format="JPEG", quality=80)
        await state.client.append_image(buf.getvalue())
        state.frames_sent += 1
        state.t_last_frame = now
        return state

    async def on_interrupt(state: TabSession | None):
        if state is not None:
            c = state.client
            active = [r for r in c.order if c.replies[r].t_done is None]
            if active:
                await c.send({"type": "response.cancel"})
        return state

    def poll(state: TabSession | None):
        if state is None:
            return "press Record to talk", gr.skip(), "no reply yet", "not connected", gr.skip(), gr.skip()
        c = state.client
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
                gr.skip() if note is None else note)

    with gr.Blocks(title=TITLE) as app:
        gr.Markdown(f"## {TITLE}\nTalk to the assistant: press **Record**, speak, pause. "
                    "It answers when you stop; speak over it (or press Interrupt) to cut it off.")
        model = gr.Markdown(model_note(session), elem_id="model")
        state = gr.State(None)
        with gr.Row():
            with gr.Column():
                mic = gr.Audio(sources=["microphone"], streaming=True, type="numpy", label="microphone",
                               elem_id="mic")
                cam = gr.Image(sources=["webcam"], streaming=True, type="numpy", label="webcam", elem_id="cam")
            with gr.Column():
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
        cam.stream(on_frame, inputs=[cam, state], outputs=[state], stream_every=0.5, concurrency_limit=None,
                   show_progress="hidden")
        interrupt.click(on_interrupt, inputs=[state], outputs=[state])
        live_audio.change(None, inputs=[live_audio], js=PLAYER_JS)
        gr.Timer(0.3).tick(poll, inputs=[state], outputs=[transcript, reply, latency, status, live_audio, model],
                           show_progress="hidden")
    return app

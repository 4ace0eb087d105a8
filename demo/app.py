"""The Gradio live demo: a thin browser client of the realtime websocket server.

Microphone and webcam stream from the browser to this Gradio app, which relays
them (as `input_audio_buffer.append` and `input_image_buffer.append` events)
over one websocket per browser tab to `omni serve`. A timer polls the tab's
connection, shows the live transcript, hands the reply audio that has arrived
to a Web Audio player in the page (`demo.live_audio`: it plays while the reply
is still being spoken, and stops at once on barge-in), keeps each whole reply
in an audio player for replay, and prints the latency readout; the Interrupt
button sends `response.cancel`.
It never imports the model: only streaming.protocol and streaming.client.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field

import numpy as np

from demo.live_audio import PLAYER_JS, LiveAudio
from streaming.client import RealtimeClient
from streaming.protocol import StreamingResampler

TITLE = "omni-stream live demo"


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

    def transcript(self) -> str:
        lines = []
        c = self.client
        for e in c.events:
            if e["type"] == "input_audio_buffer.speech_started":
                lines.append("you: (speaking...)")
            elif e["type"] == "input_audio_buffer.speech_stopped" and lines and lines[-1].endswith("(speaking...)"):
                lines[-1] = "you: (spoke)"
            elif e["type"] == "response.created":
                lines.append(f"assistant [{e['response']['id'][-6:]}]: ")
        for rid in c.order:
            r = c.replies[rid]
            tag = f"assistant [{rid[-6:]}]: "
            for i, line in enumerate(lines):
                if line.startswith(tag):
                    suffix = "" if r.status in ("in_progress", "completed") else f"  [{r.status}]"
                    lines[i] = tag + r.transcript + suffix
        for err in c.errors[-3:]:
            lines.append(f"[server error] {err.get('code')}: {err.get('message')}")
        return "\n".join(lines)

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


def make_app(url: str, api_key: str | None = None):
    import gradio as gr

    async def ensure(state: TabSession | None) -> TabSession:
        if state is None or state.client.closed.is_set():
            client = RealtimeClient(url, api_key=api_key)
            await client.connect()
            await client.configure(input_rate=16000, output_rate=24000)
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
            return "press Record to talk", gr.skip(), "no reply yet", "not connected", gr.skip()
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
        return state.transcript(), audio_update, state.latency(), status, gr.skip() if chunk is None else chunk

    with gr.Blocks(title=TITLE) as app:
        gr.Markdown(f"## {TITLE}\nTalk to the assistant: press **Record**, speak, pause. "
                    "It answers when you stop; speak over it (or press Interrupt) to cut it off.")
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
        gr.Timer(0.3).tick(poll, inputs=[state], outputs=[transcript, reply, latency, status, live_audio],
                           show_progress="hidden")
    return app

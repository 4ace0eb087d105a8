"""Reference asyncio client of the realtime protocol.

Used by `omni client`, the Gradio demo and the benchmark. It speaks the same
events an OpenAI Realtime client does, plus the video-frame extension.

    async with RealtimeClient(url, api_key=...) as c:
        await c.configure(turn_detection={...})
        await c.stream_audio(samples, rate=16000, realtime=True)    # paced like a microphone
        reply = await c.wait_response()                            # Reply: transcript, audio, timings
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable
from urllib.parse import urlsplit

import numpy as np
from websockets.asyncio.client import ClientConnection, connect

from streaming.protocol import StreamingResampler, decode_pcm16, encode_pcm16


@dataclass
class Reply:
    id: str
    item_id: str = ""
    status: str = "in_progress"
    transcript: str = ""
    audio: list[np.ndarray] = field(default_factory=list)  # at the session's output rate
    t_created: float = 0.0
    t_first_audio: float | None = None
    t_done: float | None = None
    server_metrics: dict[str, Any] = field(default_factory=dict)
    status_details: dict[str, Any] | None = None

    def waveform(self) -> np.ndarray:
        return np.concatenate(self.audio) if self.audio else np.zeros(0, np.float32)


def websocket_url(text: str) -> str:
    """A command line's server URL, checked (an argparse type: `omni client`, `omni demo`)."""
    try:
        u = urlsplit(text)
        u.port  # noqa: B018  (raises on a bad port)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{text!r} is not a valid URL ({e})") from None
    if u.scheme not in ("ws", "wss") or not u.hostname:
        raise argparse.ArgumentTypeError(f"{text!r} is not a websocket URL; expected ws://HOST:PORT/v1/realtime")
    return text


class RealtimeClient:
    def __init__(self, url: str, api_key: str | None = None, origin: str | None = None,
                 on_event: Callable[[dict], None] | None = None) -> None:
        self.url, self.api_key, self.origin, self.on_event = url, api_key, origin, on_event
        self.ws: ClientConnection | None = None
        self.events: list[dict] = []  # every server event, with "_t" (receive time, perf_counter)
        self.replies: dict[str, Reply] = {}
        self.order: list[str] = []
        self.errors: list[dict] = []
        self.input_transcripts: dict[str, str] = {}  # user item id -> what the server heard (as it arrives)
        self.session: dict[str, Any] = {}
        self.out_rate = 24000
        self.in_rate = 24000
        self._reader: asyncio.Task | None = None
        self._cond = asyncio.Condition()
        self.closed = asyncio.Event()
        self.t_speech_sent_end: float | None = None
        # (start ms, end ms, perf_counter) of each input audio append, in the stream of all input
        # audio of the session as the server counts it (its audio_start_ms / audio_end_ms, over
        # every append it took); the recent ones place a speech event the server sends a moment later
        self.sent_audio: deque[tuple[float, float, float]] = deque(maxlen=4096)
        self.sent_ms = 0.0

    async def __aenter__(self) -> "RealtimeClient":
        await self.connect()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def connect(self) -> None:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else None
        self.ws = await connect(self.url, additional_headers=headers, origin=self.origin, max_size=None,
                                compression=None)
        self._reader = asyncio.create_task(self._read())
        await self.wait_for(lambda e: e["type"] == "session.created", timeout=10)

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    async def _read(self) -> None:
        assert self.ws is not None
        try:
            async for raw in self.ws:
                e = json.loads(raw)
                e["_t"] = time.perf_counter()
                self._track(e)
                self.events.append(e)
                if self.on_event is not None:
                    self.on_event(e)
                async with self._cond:
                    self._cond.notify_all()
        except Exception:
            pass
        finally:
            self.closed.set()
            async with self._cond:
                self._cond.notify_all()

    def _track(self, e: dict) -> None:
        kind = e["type"]
        if kind in ("session.created", "session.updated"):
            self.session = e["session"]
            self.out_rate = e["session"]["audio"]["output"]["format"].get("rate", 24000)
            self.in_rate = e["session"]["audio"]["input"]["format"].get("rate", 24000)
        elif kind == "error":
            self.errors.append(e["error"])
        elif kind == "conversation.item.input_audio_transcription.delta":
            self.input_transcripts[e["item_id"]] = self.input_transcripts.get(e["item_id"], "") + (e.get("delta") or "")
        elif kind == "conversation.item.input_audio_transcription.completed":
            self.input_transcripts[e["item_id"]] = e["transcript"]
        elif kind == "response.created":
            rid = e["response"]["id"]
            self.replies[rid] = Reply(rid, t_created=e["_t"])
            self.order.append(rid)
        elif kind in ("response.output_audio.delta", "response.audio.delta"):
            r = self.replies.get(e["response_id"])
            if r is not None:
                r.item_id = e["item_id"]
                if r.t_first_audio is None:
                    r.t_first_audio = e["_t"]
                r.audio.append(decode_pcm16(e["delta"]))
        elif kind in ("response.output_audio_transcript.delta", "response.audio_transcript.delta"):
            r = self.replies.get(e["response_id"])
            if r is not None:
                r.transcript += e["delta"]
        elif kind == "response.done":
            resp = e["response"]
            r = self.replies.setdefault(resp["id"], Reply(resp["id"]))
            r.status, r.t_done = resp["status"], e["_t"]
            r.status_details = resp.get("status_details")
            r.server_metrics = resp.get("omni_metrics") or {}
            spoken = [o for o in resp.get("output") or [] if o.get("type") == "message"]
            if spoken:  # the reply's message item (function calls are items of their own)
                r.item_id = spoken[0]["id"]

    # ---- sending -----------------------------------------------------------
    async def send(self, event: dict) -> None:
        assert self.ws is not None
        await self.ws.send(json.dumps(event))

    async def configure(self, turn_detection: dict | None | str = "default", input_rate: int = 16000,
                        output_rate: int = 24000, instructions: str | None = None,
                        transcription: dict | None | str = "default", **extra: Any) -> dict:
        """session.update; `transcription` ({} = the server's recognizer, None = off) asks for
        input transcripts; `extra` fields (tools, tool_choice, ...) go into the session as given."""
        audio_in: dict[str, Any] = {"format": {"type": "audio/pcm", "rate": input_rate}}
        if turn_detection != "default":
            audio_in["turn_detection"] = turn_detection
        if transcription != "default":
            audio_in["transcription"] = transcription
        session: dict[str, Any] = {"type": "realtime", "audio": {
            "input": audio_in, "output": {"format": {"type": "audio/pcm", "rate": output_rate}}}}
        if instructions is not None:
            session["instructions"] = instructions
        session.update(extra)
        n = len(self.events)
        await self.send({"type": "session.update", "session": session})
        e = await self.wait_for(lambda e: e["type"] in ("session.updated", "error"), timeout=10, start=n)
        if e["type"] == "error":
            raise RuntimeError(f"session.update refused: {e['error']}")
        return e["session"]

    async def append_audio(self, samples: np.ndarray) -> None:
        """Send input audio at the session's input rate; when it left is kept (input_time)."""
        if len(samples):
            end = self.sent_ms + 1000 * len(samples) / self.in_rate
            self.sent_audio.append((self.sent_ms, end, time.perf_counter()))
            self.sent_ms = end
        await self.send({"type": "input_audio_buffer.append", "audio": encode_pcm16(samples)})

    def input_time(self, ms: float) -> float | None:
        """When the input audio at `ms` of the session's input stream (the server's
        audio_start_ms / audio_end_ms) was live, on this client's clock (perf_counter):
        an append is sent once its audio has been captured (a microphone's chunk, or
        stream_audio's real-time pacing), so a sample inside it was live as long before
        the send as the rest of the chunk lasts. None where this client no longer knows
        (older than its record) or never sent that far."""
        for start, end, t in reversed(self.sent_audio):
            if start <= ms:
                return t - (end - ms) / 1000 if ms <= end else None
        return None

    async def append_image(self, jpeg: bytes, time_ms: float | None = None) -> None:
        ev: dict[str, Any] = {"type": "input_image_buffer.append", "image": base64.b64encode(jpeg).decode()}
        if time_ms is not None:
            ev["time_ms"] = time_ms
        await self.send(ev)

    async def stream_audio(self, samples: np.ndarray, rate: int, realtime: bool = True, chunk_ms: int = 40,
                           frames: list[tuple[float, bytes]] | None = None, t0: float | None = None,
                           speech_end_s: float | None = None) -> None:
        """Send `samples` (float32 mono at `rate`) in chunk_ms pieces, paced in real time
        from `t0`; `frames` are (time_s, jpeg) sent when their time comes."""
        res = StreamingResampler(rate, self.in_rate)
        step = rate * chunk_ms // 1000
        frames = sorted(frames or [], key=lambda f: f[0])
        fi = 0
        t0 = time.perf_counter() if t0 is None else t0
        for i in range(0, len(samples), step):
            t_media = i / rate
            while fi < len(frames) and frames[fi][0] <= t_media + chunk_ms / 1000:
                await self.append_image(frames[fi][1], frames[fi][0] * 1000)
                fi += 1
            piece = res.process(samples[i:i + step])
            if i + step >= len(samples):
                piece = np.concatenate([piece, res.flush()])
            if realtime:
                delay = t0 + (i + step) / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            await self.append_audio(piece)
            if speech_end_s is not None and self.t_speech_sent_end is None and (i + step) / rate >= speech_end_s:
                self.t_speech_sent_end = time.perf_counter()

    async def keep_silent_until(self, pred: Callable[[dict], bool], start: int = 0, rate: int = 16000,
                                chunk_ms: int = 40, limit_s: float = 30.0) -> bool:
        """Send silence in real time, as an open microphone does after its user stops
        speaking, until an event at index >= start satisfies `pred` (True) or `limit_s`
        passes or the connection closes (False). A server that ends the turn on the
        model's judgment may wait longer than a fixed tail of silence lasts."""
        res = StreamingResampler(rate, self.in_rate)
        chunk = np.zeros(rate * chunk_ms // 1000, np.float32)
        t0, sent, i = time.perf_counter(), 0, start
        while True:
            while i < len(self.events):
                if pred(self.events[i]):
                    return True
                i += 1
            if self.closed.is_set() or time.perf_counter() - t0 >= limit_s:
                return False
            await self.append_audio(res.process(chunk))
            sent += 1
            delay = t0 + sent * chunk_ms / 1000 - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)

    # ---- waiting -----------------------------------------------------------
    async def wait_for(self, pred: Callable[[dict], bool], timeout: float = 30.0, start: int = 0) -> dict:
        """The first event at index >= start satisfying pred (bounded wait)."""
        async def scan() -> dict:
            i = start
            async with self._cond:
                while True:
                    while i < len(self.events):
                        if pred(self.events[i]):
                            return self.events[i]
                        i += 1
                    if self.closed.is_set():
                        raise ConnectionError(f"connection closed; errors: {self.errors}")
                    await self._cond.wait()
        return await asyncio.wait_for(scan(), timeout)

    async def wait_response(self, timeout: float = 60.0, start: int = 0) -> Reply:
        e = await self.wait_for(lambda e: e["type"] == "response.done", timeout, start)
        return self.replies[e["response"]["id"]]

    async def iter_events(self) -> AsyncIterator[dict]:
        i = 0
        while True:
            e = await self.wait_for(lambda e: True, timeout=3600, start=i)
            i += 1
            yield e

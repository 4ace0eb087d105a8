"""The websocket server: transport, security and admission around `Session`.

Endpoints (one port):
  ws   /v1/realtime (also /realtime and /)   the realtime protocol
  GET  /metrics                              Prometheus text
  GET  /healthz                              "ok"

Security: binds 127.0.0.1 unless told otherwise; with an API key configured a
connection needs `Authorization: Bearer KEY` (what the openai SDK sends) or
the browser form, subprotocol `openai-insecure-api-key.KEY`; browser origins
must be on the allow-list (loopback origins are allowed by default; clients
that send no Origin header are not browsers and are not restricted). Messages
over `max_message_bytes` get an `error` event; messages over 4x that close the
connection (code 1009). At `max_sessions` a new connection gets a
`too_many_sessions` error event and is closed with code 1013 (try again later).
A connection idle for `idle_timeout_s` is closed after a `session_idle_timeout`
error event.
"""

from __future__ import annotations

import asyncio
import hmac
import http
import logging
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from omni.realtime_api import RealtimeModel
from omni.transcribe import TRANSCRIBERS
from streaming.backchannel import BackchannelDetector
from streaming.engine import PREFILL_WAIT_S, Engine
from streaming.input import InputWorker
from streaming.input_process import InputProcess
from streaming.metrics import Metrics
from streaming.protocol import ProtocolError, parse_client_event
from streaming.protocol.events import ServerEvents, dumps
from streaming.session import Limits, Session
from streaming.timing import observe_stage
from streaming.transcribe_stage import TranscribeStage

log = logging.getLogger(__name__)
WS_PATHS = ("/v1/realtime", "/realtime", "/")
INPUT_STAGES = {"process": InputProcess, "thread": InputWorker}
LOOPBACK_ORIGIN = re.compile(r"^https?://(127\.0\.0\.1|localhost|\[::1\])(:\d+)?$")


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8765
    api_key: str | None = None
    allowed_origins: list[str] = field(default_factory=list)  # exact origins, besides loopback ones
    max_message_bytes: int = 1 << 20
    max_sessions: int | None = None  # default: the model's slots
    idle_timeout_s: float = 300.0
    max_steps: int = 1000
    spec_ahead_frames: int = 8  # speech a speculative reply may prepare before the end of turn is confirmed
    prefill_wait_s: float = PREFILL_WAIT_S  # how long a mid-turn packet may wait while replies decode (engine.py)
    # stage 1 (resampling + VAD): "thread" (a thread of this process) or "process" (its own process,
    # whose rounds never wait for the GIL behind the engine and the event loop: streaming/input_process.py)
    input_stage: str = "thread"
    # the interpreter's thread switch interval while serving (sys.setswitchinterval), None: as it is.
    # A thread waiting for the GIL waits this long before it asks for it: at Python's 5 ms, every torch
    # call or socket operation of the input stage and the event loop can wait that long behind a thread
    # that runs Python (bench/input_stage.py --switch-interval-ms), yet a shorter interval also makes the
    # model's thread hand the GIL over more often: on a GPU server 0.5 ms cost first audio 6-28 % at 32-128
    # sessions (bench/streaming_gpu.sh SWITCH=5,0.5), so omni serve keeps Python's own unless told
    switch_interval_ms: float | None = None
    model_name: str = "omni"
    model_trained: bool | None = None  # sessions report it (session.omni.model.trained)
    model_card: dict | None = None  # sessions report it too (session.omni.model.about / .ask)
    # input transcription (a name of omni/transcribe.py TRANSCRIBERS, or a "module:factory"), in its own process from the first session
    # that asks for it; None: the server has none (sessions that ask get transcription null)
    transcriber: str | None = "world-sphinx"
    transcriber_args: dict = field(default_factory=dict)
    prestart_transcriber: bool = False  # start its process with the server (omni serve), not at first use
    # "uh-huh" during a reply does not stop it: the shipped detector (streaming/backchannel.py), a file, or off
    backchannels: str | bool = True


class OmniServer:
    def __init__(self, model: RealtimeModel, cfg: ServerConfig | None = None) -> None:
        self.cfg = cfg or ServerConfig()
        t = self.cfg.transcriber
        if t is not None and t not in TRANSCRIBERS and ":" not in t:
            raise ValueError(f"unknown transcriber {t!r}; known: {sorted(TRANSCRIBERS)} or a 'module:factory'")
        if self.cfg.input_stage not in INPUT_STAGES:
            raise ValueError(f"unknown input stage {self.cfg.input_stage!r}; known: {sorted(INPUT_STAGES)}")
        self.metrics = Metrics()
        self.engine = Engine(model, self.metrics, max_steps=self.cfg.max_steps,
                             spec_ahead_frames=self.cfg.spec_ahead_frames, prefill_wait_s=self.cfg.prefill_wait_s).start()
        self.inputs = INPUT_STAGES[self.cfg.input_stage](metrics=self.metrics)
        b = self.cfg.backchannels
        self.backchannels = None if b is False else BackchannelDetector.load(None if b is True else b)
        slots = getattr(model, "max_slots", 1)
        self.max_sessions = min(self.cfg.max_sessions or slots, slots)
        self.active = 0
        self.server: Any = None
        self.transcribe_stage: TranscribeStage | None = None
        self._switch_before: float | None = None  # the interpreter's switch interval before start()

    def transcripts(self) -> TranscribeStage | None:
        """The transcription process, started when a session first needs it."""
        if self.transcribe_stage is None and self.cfg.transcriber is not None:
            name = self.cfg.transcriber
            self.transcribe_stage = TranscribeStage(name, TRANSCRIBERS.get(name, name), self.cfg.transcriber_args)
        return self.transcribe_stage

    # ---- lifecycle ---------------------------------------------------------
    async def start(self) -> "OmniServer":
        await self.inputs.ready()  # no session's audio waits for the input process to load
        if self.cfg.switch_interval_ms is not None:
            self._switch_before = sys.getswitchinterval()
            sys.setswitchinterval(self.cfg.switch_interval_ms / 1000)
        self.server = await serve(
            self._handler, self.cfg.host, self.cfg.port,
            process_request=self._process_request,
            select_subprotocol=self._select_subprotocol,
            max_size=4 * self.cfg.max_message_bytes,
            compression=None,  # audio is incompressible; deflate only costs CPU
            close_timeout=2,  # a vanished client must not hold up shutdown
        )
        self.port = self.server.sockets[0].getsockname()[1]
        if self.cfg.prestart_transcriber:
            self.transcripts()
        log.info("serving on ws://%s:%d/v1/realtime", self.cfg.host, self.port)
        return self

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        self.engine.stop()
        self.inputs.stop()
        if self._switch_before is not None:
            sys.setswitchinterval(self._switch_before)
            self._switch_before = None
        if self.transcribe_stage is not None:
            self.transcribe_stage.close()

    @property
    def url(self) -> str:
        return f"ws://{self.cfg.host}:{self.port}/v1/realtime"

    # ---- handshake ---------------------------------------------------------
    def _key_ok(self, headers: Headers) -> bool:
        if not self.cfg.api_key:
            return True
        want = self.cfg.api_key.encode()
        auth = headers.get("Authorization", "")
        if auth.startswith("Bearer ") and hmac.compare_digest(auth[7:].strip().encode(), want):
            return True
        for proto in ",".join(headers.get_all("Sec-WebSocket-Protocol")).split(","):
            proto = proto.strip()
            if proto.startswith("openai-insecure-api-key.") and hmac.compare_digest(
                    proto.split(".", 1)[1].encode(), want):
                return True
        return False

    def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path == "/metrics":
            self.metrics.set("omni_sessions_active", self.active)
            resp = conn.respond(http.HTTPStatus.OK, self.metrics.render())
            resp.headers["Content-Type"] = "text/plain; version=0.0.4; charset=utf-8"
            return resp
        if path == "/healthz":
            return conn.respond(http.HTTPStatus.OK, "ok\n")
        if path not in WS_PATHS:
            return conn.respond(http.HTTPStatus.NOT_FOUND, f"no such endpoint {path}; use /v1/realtime\n")
        origin = request.headers.get("Origin")
        if origin is not None and not (LOOPBACK_ORIGIN.match(origin) or origin in self.cfg.allowed_origins):
            return conn.respond(http.HTTPStatus.FORBIDDEN, f"origin {origin} is not allowed (see --allow-origin)\n")
        if not self._key_ok(request.headers):
            return conn.respond(http.HTTPStatus.UNAUTHORIZED, "missing or wrong API key (Authorization: Bearer)\n")
        return None

    @staticmethod
    def _select_subprotocol(conn: ServerConnection, offered: Any) -> Any:
        return "realtime" if "realtime" in offered else None

    # ---- one connection ----------------------------------------------------
    async def _handler(self, ws: ServerConnection) -> None:
        beta = "realtime=v1" in (ws.request.headers.get("OpenAI-Beta") or "")
        if self.active >= self.max_sessions:
            self.metrics.inc("omni_sessions_rejected_total")
            err = ProtocolError("too_many_sessions", f"the server is full ({self.max_sessions} sessions); "
                                "try again later", type="server_error")
            await ws.send(dumps(ServerEvents(beta).error(err)))
            await ws.close(1013, "server full")
            return
        self.active += 1
        self.metrics.inc("omni_sessions_total")
        out: asyncio.Queue = asyncio.Queue()  # (event, when queued, on_sent or None); None ends the writer

        def send(event: dict, on_sent: Any = None) -> None:
            out.put_nowait((event, time.perf_counter(), on_sent))

        session = Session(send, self.engine, self.inputs, self.metrics,
                          Limits(), beta=beta, model_name=self.cfg.model_name,
                          model_trained=self.cfg.model_trained, transcriber=self.cfg.transcriber,
                          transcribe_stage=self.transcripts, model_card=self.cfg.model_card,
                          semantic_turn=getattr(self.engine.model, "turn_end", None) is not None,
                          backchannels=self.backchannels)
        writer = asyncio.create_task(self._writer(ws, out))
        try:
            send(session.ev.make("session.created", session=session.cfg.to_json()))
            while True:
                try:
                    async with asyncio.timeout(self.cfg.idle_timeout_s):
                        raw = await ws.recv()
                except TimeoutError:
                    session.error(ProtocolError("session_idle_timeout",
                                                f"no message for {self.cfg.idle_timeout_s:g} s; closing"))
                    await asyncio.sleep(0)
                    break
                try:
                    event = parse_client_event(raw, self.cfg.max_message_bytes)
                except ProtocolError as err:
                    session.error(err)
                    continue
                await session.handle(event)
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("session failed")
        finally:
            session.close()
            self.active -= 1
            out.put_nowait(None)
            try:
                await asyncio.wait_for(writer, 2)
            except (asyncio.TimeoutError, ConnectionClosed):
                writer.cancel()
            await ws.close()

    async def _writer(self, ws: ServerConnection, out: asyncio.Queue) -> None:
        """The connection's one writer: events leave in order. Each event's wait in the
        queue and its send are the pipeline's last stage ("send")."""
        try:
            while True:
                item = await out.get()
                if item is None:
                    return
                event, t_queued, on_sent = item
                t_send = time.perf_counter()
                await ws.send(dumps(event))
                t_sent = time.perf_counter()
                observe_stage(self.metrics, "send", t_send - t_queued, t_sent - t_send)
                if on_sent is not None:
                    on_sent(t_queued, t_send, t_sent)
        except ConnectionClosed:
            return

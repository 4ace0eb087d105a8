"""A realtime server on its own thread and event loop, for tests that talk to
one server from many short `asyncio.run` calls (one per test or per fuzz
example), and a log watcher: any record at ERROR or above while it runs is a
server fault (a traceback, a failed task), which those tests must not see."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from typing import Any

from websockets.asyncio.client import connect

from streaming.server import OmniServer, ServerConfig


class ErrorLog(logging.Handler):
    """Keeps every log record at ERROR or above, from any thread."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def text(self) -> str:
        return "\n".join(self.format(r) for r in self.records)


class LiveServer:
    def __init__(self, model: Any, **cfg: Any) -> None:
        self.model, self.cfg = model, cfg
        self.errors = ErrorLog()
        self.errors.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        self.srv: OmniServer | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="live-server", daemon=True)
        self.loop: asyncio.AbstractEventLoop | None = None

    def _run(self) -> None:
        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self.srv = await OmniServer(self.model, ServerConfig(port=0, **self.cfg)).start()
            self._ready.set()
            await self._stop.wait()
            await self.srv.close()

        asyncio.run(main())

    def __enter__(self) -> "LiveServer":
        logging.getLogger().addHandler(self.errors)
        self._thread.start()
        assert self._ready.wait(60), "the server did not start"
        return self

    def __exit__(self, *exc: Any) -> None:
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        logging.getLogger().removeHandler(self.errors)

    @property
    def url(self) -> str:
        return self.srv.url


async def recv_json(ws: Any, timeout: float = 10.0) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def until(ws: Any, pred: Any, timeout: float = 10.0, seen: list | None = None) -> dict:
    """The first event satisfying `pred` (every event read is appended to `seen`)."""
    async def scan() -> dict:
        while True:
            e = json.loads(await ws.recv())
            if seen is not None:
                seen.append(e)
            if pred(e):
                return e
    return await asyncio.wait_for(scan(), timeout)


__all__ = ["ErrorLog", "LiveServer", "connect", "recv_json", "until"]

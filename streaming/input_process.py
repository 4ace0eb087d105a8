"""Stage 1 in a process of its own: input conditioning that never waits for the GIL.

On a thread of the serving process, every torch call of a VAD round gives the
GIL up and must win it back from the engine thread and the event loop; beside a
thread that runs Python without a break, each hand-over can take a switch interval
(5 ms), and a round makes dozens of them (bench/input_stage.py --load python
measures it against the thread stage). Here the rounds run in
a child process (spawned, one intra-op thread) that keeps every session's
resampler and VAD state under the session's id; the serving process only sends
each append's samples and reads back its 16 kHz audio and window probabilities.

    parent: event loop -> queue -> sender thread ==pipe==> child: rounds (input.condition)
    parent: event loop <- call_soon_threadsafe <- reader thread <==pipe== child

If the child dies, the appends in flight fail with `InputStageError` (the
session reports it and goes on) and a new child starts, with fresh states.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import multiprocessing
import os
import queue
import signal
import threading
import time

import numpy as np

from streaming.input import GATHER_S, InputStageError, InputState, Rounds, condition, deliver, observe_round
from streaming.metrics import Metrics

log = logging.getLogger(__name__)
START_TIMEOUT_S = 120.0  # a spawn imports torch and loads silero: seconds on a busy 2-core machine


def _child(conn, gather_s: float) -> None:
    """The child's loop. Messages in: lists of ("job", rid, sid, rate, samples, vad, t_submit),
    ("drop", sid), ("stop",). Out: ("ready",), ("done", [(rid, audio, probs)], t0, t1),
    ("failed", [rid], message), ("states", how many sessions' states it holds)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the parent stops us
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    from streaming.vad import SileroVAD

    torch.set_num_threads(1)  # the network is tiny: intra-op threads only spin (see input.InputWorker)
    vad = SileroVAD()
    states: dict[int, InputState] = {}
    rounds = Rounds(gather_s)
    backlog: list = []

    def more() -> list:
        out = backlog[:]
        backlog.clear()
        while conn.poll(0):
            out.extend(conn.recv())
        return out

    conn.send(("ready",))
    held = 0  # sessions whose state the child holds, reported when it changes
    while True:
        try:
            if not backlog:
                backlog.extend(conn.recv())
        except (EOFError, OSError):
            return  # the parent is gone
        first = backlog.pop(0)
        msgs = rounds.take(first, first[6] if first[0] == "job" else float("-inf"), more)
        jobs = [m for m in msgs if m[0] == "job"]
        if jobs:
            t0 = time.perf_counter()
            try:
                work = [(states.setdefault(sid, InputState(sid=sid)), rate, samples, v)
                        for _, _, sid, rate, samples, v, _ in jobs]
                results = condition(vad, work)
                conn.send(("done", [(j[1], a, p) for j, (a, p) in zip(jobs, results)], t0, time.perf_counter()))
            except Exception as e:
                conn.send(("failed", [j[1] for j in jobs], f"{type(e).__name__}: {e}"))
        for m in msgs:
            if m[0] == "drop":
                states.pop(m[1], None)
            elif m[0] == "stop":
                return
        if len(states) != held:
            held = len(states)
            conn.send(("states", held))


class InputProcess:
    """The input stage in a child process; the API of input.InputWorker."""

    def __init__(self, metrics: Metrics | None = None, gather_s: float = GATHER_S) -> None:
        self.metrics = metrics
        self.gather_s = gather_s
        self._ids = itertools.count()
        self._pending: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Future, float]] = {}
        self._lock = threading.Lock()
        self._closed = False
        self.restarts = 0
        self.states = 0  # sessions whose state the child holds (released ones are dropped)
        self.q: queue.SimpleQueue = queue.SimpleQueue()
        self._start()
        self.sender = threading.Thread(target=self._send_loop, name="omni-input-send", daemon=True)
        self.sender.start()

    def _start(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        conn, child = ctx.Pipe()
        started = threading.Event()
        proc = ctx.Process(target=_child, args=(child, self.gather_s), name="omni-input", daemon=True)
        proc.start()
        child.close()
        # published together once the child runs: the sender, stop() and ready() read them any time
        self.started, self.proc, self.conn = started, proc, conn
        threading.Thread(target=self._read, args=(conn, proc, started), name="omni-input-read", daemon=True).start()

    async def ready(self) -> None:
        """Wait until the child has loaded the VAD (a server starts serving after that)."""
        started, proc = self.started, self.proc
        ok = await asyncio.get_running_loop().run_in_executor(None, _wait_started, started, proc, START_TIMEOUT_S)
        if not ok:
            raise InputStageError(f"the input process did not start within {START_TIMEOUT_S:g} s "
                                  f"(exit code {proc.exitcode})")

    async def process(self, state: InputState, rate: int, samples: np.ndarray,
                      vad: bool) -> tuple[np.ndarray, np.ndarray]:
        """As InputWorker.process: (16 kHz audio, VAD window probabilities)."""
        if self._closed:
            raise InputStageError("the input stage is stopped")
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        rid = next(self._ids)
        t = time.perf_counter()
        with self._lock:
            self._pending[rid] = (loop, fut, t)
        self.q.put(("job", rid, state.sid, rate, np.asarray(samples, np.float32), vad, t))
        return await fut

    def release(self, state: InputState) -> None:
        if not self._closed:
            self.q.put(("drop", state.sid))

    def stop(self) -> None:
        self._closed = True
        self.q.put(None)
        self.sender.join(timeout=5)
        self.proc.join(timeout=3)
        if self.proc.is_alive():  # a child slow to stop (a loaded machine): ended, and waited for
            self.proc.terminate()
            self.proc.join(timeout=3)
            if self.proc.is_alive():
                self.proc.kill()
                self.proc.join()
        self._fail_pending("the input stage is stopped")

    # ---- the parent's two threads ------------------------------------------
    def _send_loop(self) -> None:
        while True:
            batch = [self.q.get()]
            while True:
                try:
                    batch.append(self.q.get_nowait())
                except queue.Empty:
                    break
            stop = any(m is None for m in batch)
            msgs = [m for m in batch if m is not None] + ([("stop",)] if stop else [])
            try:
                self.conn.send(msgs)
            except (OSError, ValueError) as e:  # the child is gone: its reader restarts it
                self._fail([m[1] for m in msgs if m[0] == "job"], f"the input process stopped ({e})")
            if stop:
                return

    def _read(self, conn, proc, started: threading.Event) -> None:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                break
            if msg[0] == "ready":
                started.set()
            elif msg[0] == "done":
                _, results, t0, t1 = msg
                with self._lock:
                    done = [(self._pending.pop(rid, None), audio, probs) for rid, audio, probs in results]
                observe_round(self.metrics, [p[2] for p, _, _ in done if p is not None], t0, t1)
                for p, audio, probs in done:
                    if p is not None:
                        deliver(p[0], p[1], (audio, probs))
            elif msg[0] == "failed":
                self._fail(msg[1], f"input conditioning failed: {msg[2]}")
            elif msg[0] == "states":
                self.states = msg[1]
                if self.metrics is not None:
                    self.metrics.set("omni_input_states", msg[1])
        conn.close()
        proc.join(timeout=1)
        if self._closed:
            return
        if not started.is_set():  # it never started: starting it again would fail the same way
            log.error("the input process failed to start (exit code %s)", proc.exitcode)
            self._fail_pending(f"the input process failed to start (exit code {proc.exitcode})")
            return
        log.error("the input process stopped (exit code %s); starting a new one (sessions' VAD states reset)",
                  proc.exitcode)
        self.states = 0
        self._fail_pending(f"the input process stopped (exit code {proc.exitcode})")
        self._start()
        self.restarts += 1  # after the new child is in place: a waiter on this count may use it at once
        if self.metrics is not None:
            self.metrics.inc("omni_input_restarts_total")

    def _fail(self, rids: list[int], why: str) -> None:
        with self._lock:
            gone = [self._pending.pop(r, None) for r in rids]
        for p in gone:
            if p is not None:
                deliver(p[0], p[1], exc=InputStageError(why))

    def _fail_pending(self, why: str) -> None:
        with self._lock:
            rids = list(self._pending)
        self._fail(rids, why)


def _wait_started(started: threading.Event, proc, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if started.wait(0.1):
            return True
        if proc.exitcode is not None:
            return False
    return False

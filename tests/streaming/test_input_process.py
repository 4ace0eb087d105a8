"""The input stage in its own process (streaming/input_process.py): the same conditioning
as the thread stage, per-session states released, and a child that dies replaced."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import numpy as np
import pytest

from streaming.input import InputStageError, InputState, InputWorker
from streaming.input_process import InputProcess
from streaming.metrics import Metrics

from streaming_helpers import run, speak


@pytest.fixture(scope="module")
def words(tmp_path_factory) -> dict[int, np.ndarray]:
    """Speech with pauses at 16 and 24 kHz: the VAD's probabilities move, so states matter."""
    d = tmp_path_factory.mktemp("words")
    out = {}
    for rate in (16000, 24000):
        a = speak("turn the light on, please", d / f"w{rate}.wav", rate=rate)
        gap = np.zeros(rate // 3, np.float32)
        out[rate] = np.concatenate([gap, a, gap, a[: len(a) // 2], gap])
    return out


async def _feed(stage, state: InputState, rate: int, audio: np.ndarray, chunk_s: float = 0.04):
    step = int(rate * chunk_s)
    parts = [await stage.process(state, rate, audio[i:i + step], True) for i in range(0, len(audio), step)]
    return np.concatenate([a for a, _ in parts]), np.concatenate([p for _, p in parts])


async def _until(cond, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        await asyncio.sleep(0.02)


def test_the_process_stage_conditions_as_the_thread_stage_does(words):
    """Two sessions at 24 and 16 kHz, concurrently: the same 16 kHz audio (exactly) and the same
    window probabilities (within batching's float noise) from both stages."""
    a24, a16 = words[24000], words[16000]

    async def main():
        proc, thread = InputProcess(metrics=Metrics()), InputWorker()
        try:
            await proc.ready()
            got = []
            for stage in (proc, thread):
                got.append(await asyncio.gather(_feed(stage, InputState(), 24000, a24),
                                                _feed(stage, InputState(), 16000, a16)))
            await _until(lambda: proc.states == 2)  # reported after the rounds' results
        finally:
            proc.stop()
            thread.stop()
        return got

    (p24, p16), (t24, t16) = run(main())
    for (pa, pp), (ta, tp), n in ((p24, t24, len(a24) * 2 // 3), (p16, t16, len(a16))):
        assert len(pa) >= n - 64 and np.array_equal(pa, ta)
        assert len(pp) == len(tp) >= n // 512 - 1 and pp.max() > 0.9 and pp.min() < 0.1  # speech and pauses
        np.testing.assert_allclose(pp, tp, atol=1e-5)


def test_a_released_session_starts_afresh_and_its_state_is_dropped(words):
    x, y = words[24000], words[24000][:12000]

    async def main():
        m = Metrics()
        proc = InputProcess(metrics=m)
        try:
            await proc.ready()
            a, b = InputState(), InputState()
            await _feed(proc, a, 24000, x)
            await _feed(proc, b, 24000, x)
            await _until(lambda: proc.states == 2)
            proc.release(a)
            await _until(lambda: proc.states == 1)
            again = await _feed(proc, a, 24000, y)  # the same handle after release: a new state
            fresh = await _feed(proc, InputState(), 24000, y)
            kept = await _feed(proc, b, 24000, y)  # b was not released: it goes on from x
            await _until(lambda: proc.states == 3 and m.gauges["omni_input_states"] == 3)  # a (anew), the fresh one, b
            return again, fresh, kept
        finally:
            proc.stop()

    again, fresh, kept = run(main())
    assert np.array_equal(again[0], fresh[0]) and np.array_equal(again[1], fresh[1])
    assert not np.array_equal(kept[0], fresh[0])  # a kept state carries the resampler's history


def test_a_dead_input_process_fails_what_was_in_flight_and_is_replaced(words):
    x = words[24000][:12000]

    async def main():
        m = Metrics()
        proc = InputProcess(metrics=m)
        try:
            await proc.ready()
            st = InputState()
            await _feed(proc, st, 24000, x)
            os.kill(proc.proc.pid, signal.SIGSTOP)  # a request is in flight when the child dies
            pending = asyncio.ensure_future(proc.process(st, 24000, x[:960], True))
            await asyncio.sleep(0.2)
            proc.proc.kill()
            with pytest.raises(InputStageError, match="stopped"):
                await pending
            await _until(lambda: proc.restarts == 1)
            await proc.ready()
            after = await _feed(proc, st, 24000, x)  # the new child: fresh states
            fresh = await _feed(proc, InputState(), 24000, x)
            assert m.counter("omni_input_restarts_total") == 1
            return after, fresh
        finally:
            proc.stop()

    after, fresh = run(main())
    assert np.array_equal(after[0], fresh[0]) and np.allclose(after[1], fresh[1], atol=1e-5)


def test_a_stopped_stage_refuses_new_work_clearly():
    async def main():
        proc = InputProcess()
        await proc.ready()
        proc.stop()
        with pytest.raises(InputStageError, match="stopped"):
            await proc.process(InputState(), 16000, np.zeros(640, np.float32), True)
        assert not proc.proc.is_alive()

    run(main())


def test_a_served_session_uses_the_process_stage_and_is_released_when_it_closes(words):
    """A server with the process stage: a spoken turn is heard through it (a reply comes), and
    the child drops the session's state once the connection closes."""
    from streaming.client import RealtimeClient
    from streaming.server import OmniServer, ServerConfig
    from streaming_helpers import ScriptedModel, serving, silence

    async def main():
        async with serving(ScriptedModel(reply="On."), input_stage="process") as srv:
            assert isinstance(srv.inputs, InputProcess)
            async with RealtimeClient(srv.url) as c:
                await c.configure(input_rate=24000, transcription=None)
                await c.stream_audio(np.concatenate([words[24000], silence(1.2, 24000)]), 24000, realtime=False)
                await c.wait_response(30)
                await _until(lambda: srv.inputs.states == 1)
            await _until(lambda: srv.inputs.states == 0)
        with pytest.raises(ValueError, match="unknown input stage"):
            OmniServer(ScriptedModel(), ServerConfig(port=0, input_stage="fork"))

    run(main())


def test_the_server_serves_at_its_switch_interval_and_restores_the_interpreters():
    import sys

    from streaming_helpers import ScriptedModel, serving

    before = sys.getswitchinterval()

    async def main():
        async with serving(ScriptedModel(), switch_interval_ms=0.5):
            assert sys.getswitchinterval() == 0.0005
        assert sys.getswitchinterval() == before
        async with serving(ScriptedModel()):  # None: left as it is
            assert sys.getswitchinterval() == before

    run(main())


def test_omni_serve_keeps_pythons_switch_interval_unless_told():
    """The GPU measurement (README: "The GPU server is not like that") found a 0.5 ms interval
    slower for first audio at 32-128 sessions, so `omni serve` leaves the interpreter's own."""
    import argparse

    from streaming.cli_serve import add_arguments

    p = argparse.ArgumentParser()
    add_arguments(p)
    assert p.parse_args([]).switch_interval_ms is None
    assert p.parse_args(["--switch-interval-ms", "0.5"]).switch_interval_ms == 0.5
    assert p.parse_args([]).input_stage == "thread"

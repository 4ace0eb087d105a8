"""Faults stay in their session, on the real `debug` model behind RealtimeOmni:
one client's poisoned requests (a text that cannot fit the context, over-long
instructions, a failing model call) never fail or wedge another's reply, and
the poisoned session itself goes on. Real websockets and engine threads."""

from __future__ import annotations

import asyncio

import pytest
import streaming_helpers as helpers
from streaming_helpers import debug_realtime

from streaming.client import RealtimeClient
from streaming.server import OmniServer

MAX_STEPS = 16
TURNS = 3


@pytest.fixture(scope="module")
def omni():
    return debug_realtime(max_slots=4, capacity=1024, max_steps=MAX_STEPS)


def run(coro, timeout: float = 180.0):
    return helpers.run(coro, timeout)


def serving(model, **kw):
    return helpers.serving(model, max_steps=MAX_STEPS, **kw)


def text_item(text: str, role: str = "user") -> dict:
    return {"type": "conversation.item.create",
            "item": {"type": "message", "role": role, "content": [{"type": "input_text", "text": text}]}}


async def talk(c: RealtimeClient, name: str) -> list[str]:
    statuses = []
    for turn in range(TURNS):
        start = len(c.events)
        await c.send(text_item(f"{name} asks question {turn}: what do you see?"))
        await c.send({"type": "response.create"})
        r = await c.wait_response(60, start)
        statuses.append(r.status)
    return statuses


async def wait_for(pred, timeout: float = 30.0) -> None:
    t = 0.0
    while not pred():
        await asyncio.sleep(0.05)
        t += 0.05
        assert t < timeout, "timed out"


def test_poisoned_requests_leave_other_sessions_and_itself_working(omni):
    async def poison(c: RealtimeClient) -> list[str]:
        # while the others decode: texts the protocol accepts (< 64k characters) but
        # the 1024-token context cannot hold, as a user turn and as instructions
        await c.send(text_item("what is this? " * 4_000))
        await c.send({"type": "session.update", "session": {"instructions": "be brief. " * 5_000}})
        await wait_for(lambda: len(c.errors) >= 2)
        # and its own next turn still works
        start = len(c.events)
        await c.send(text_item("and now a normal question"))
        await c.send({"type": "response.create"})
        r = await c.wait_response(60, start)
        return [r.status]

    async def main():
        async with serving(omni) as srv:
            clients = [RealtimeClient(srv.url) for _ in range(4)]
            for c in clients:
                await c.__aenter__()
                await c.configure(turn_detection=None, output_modalities=["text"])
            try:
                results = await asyncio.gather(*(talk(c, f"user{i}") for i, c in enumerate(clients[:3])),
                                               poison(clients[3]))
            finally:
                for c in clients:
                    await c.__aexit__(None, None, None)
            return clients, results

    clients, results = run(main())
    for c, statuses in zip(clients[:3], results[:3]):
        assert len(statuses) == TURNS and all(s in ("completed", "incomplete") for s in statuses), statuses
        assert not c.errors, c.errors
    bad = clients[3]
    codes = [e["code"] for e in bad.errors]
    assert "input_too_long" in codes and "instructions_too_long" in codes, bad.errors
    assert results[3][0] in ("completed", "incomplete")


def test_a_failing_model_call_fails_only_that_reply(omni, monkeypatch):
    """A model call that raises for one slot: that session's reply ends failed with a
    typed error, its next turn works, and the other sessions never notice."""
    real, real_many = omni.begin_response, omni.begin_responses
    poisoned: set[int] = set()

    def flaky(slot: int) -> None:
        if slot in poisoned:
            poisoned.discard(slot)  # once
            raise RuntimeError("injected fault")
        real(slot)

    def flaky_many(items) -> None:  # replies begun together: the batch fails, the engine retries one by one
        if poisoned & {slot for slot, _ in items}:
            raise RuntimeError("injected fault in a batch")
        real_many(items)

    monkeypatch.setattr(omni, "begin_response", flaky)
    monkeypatch.setattr(omni, "begin_responses", flaky_many)

    async def victim(c: RealtimeClient, srv: OmniServer) -> list[str]:
        # the victim configured first: its engine record has the smallest handle
        poisoned.add(min(srv.engine.slots.values(), key=lambda s: s.handle).slot)
        await c.send(text_item("a question"))
        await c.send({"type": "response.create"})
        first = await c.wait_response(60)
        start = len(c.events)
        await c.send(text_item("a second question"))
        await c.send({"type": "response.create"})
        second = await c.wait_response(60, start)
        return [first.status, second.status]

    async def main():
        async with serving(omni) as srv:
            clients = [RealtimeClient(srv.url) for _ in range(3)]
            for c in clients:
                await c.__aenter__()
                await c.configure(turn_detection=None, output_modalities=["text"])
            try:
                results = await asyncio.gather(victim(clients[0], srv),
                                               *(talk(c, f"user{i}") for i, c in enumerate(clients[1:])))
            finally:
                for c in clients:
                    await c.__aexit__(None, None, None)
            return clients, results

    clients, results = run(main())
    assert results[0][0] == "failed" and results[0][1] in ("completed", "incomplete"), results[0]
    assert any(e["code"] == "server_error" and "injected fault" in e["message"] for e in clients[0].errors)
    for c, statuses in zip(clients[1:], results[1:]):
        assert all(s in ("completed", "incomplete") for s in statuses), statuses
        assert not c.errors, c.errors

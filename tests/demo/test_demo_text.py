"""What the page writes: the transcript as text only, and which model the server
runs, with a plain warning when that model is randomly initialized."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import pytest

from demo.app import RANDOM_NOTE, TabSession, clean_text, fetch_session, model_info, model_note
from streaming.client import Reply


def test_clean_text_keeps_text_and_newlines_only():
    assert clean_text("red\x00 star\x07\x1b[31m\ufffd\n\tblue\r\x7f\x85") == "red star[31m\nblue"
    assert clean_text("caf\u00e9 \u2014 \u4f60\u597d \U0001f600") == "caf\u00e9 \u2014 \u4f60\u597d \U0001f600"
    assert clean_text("\ud800lone surrogate") == "lone surrogate"
    assert clean_text("") == ""


def _tab(*replies: Reply, errors=(), session=None) -> TabSession:
    events = [{"type": "response.created", "response": {"id": r.id}} for r in replies]
    client = SimpleNamespace(events=events, order=[r.id for r in replies], replies={r.id: r for r in replies},
                             errors=list(errors), session=session or {})
    return TabSession(client)


def test_transcript_shows_no_control_bytes_or_replacement_characters():
    r = Reply("resp_babble1", status="completed", transcript="\ufffd\ufffdthe\x01 sky\x00 is\ufffd\x1f blue")
    tab = _tab(r, errors=[{"code": "bad\x00", "message": "oops\ufffd\x07"}])
    text = tab.transcript()
    assert text == "assistant [abble1]: the sky is blue\n[server error] bad: oops"
    assert all(ch == "\n" or ch.isprintable() for ch in text)


def test_model_info_reads_every_shape_the_server_may_use():
    assert model_info(None) == (None, None)
    assert model_info({}) == (None, None)
    assert model_info({"model": "debug"}) == ("debug", None)  # the OpenAI shape: a name only
    assert model_info({"model": {"name": "mini", "trained": True}}) == ("mini", True)
    assert model_info({"model": "debug", "omni": {"model": {"name": "debug", "trained": False}}}) == ("debug", False)
    assert model_info({"model": {"name": 3, "trained": "yes"}}) == (None, None)  # wrong types are ignored


def test_model_note_warns_about_a_random_model():
    random = model_note({"model": {"name": "debug", "trained": False}})
    assert "`debug`" in random and RANDOM_NOTE in random and "noise" in random
    trained = model_note({"model": {"name": "mini", "trained": True}})
    assert "`mini`" in trained and "noise" not in trained
    named = model_note({"model": "omni"})  # a server that does not say whether it is trained
    assert "`omni`" in named and "noise" not in named
    assert "not known" in model_note(None)
    # a hostile name cannot break out of its code span or carry control bytes
    odd = model_note({"model": {"name": "a`b\x00\nc" + "x" * 500, "trained": True}})
    assert odd.count("`") == 2 and "\x00" not in odd and "\n" not in odd and len(odd) < 200


def test_tab_shows_the_model_line_once_per_change():
    tab = _tab(session={"model": {"name": "debug", "trained": False}})
    note = tab.model_update()
    assert note is not None and "noise" in note
    assert tab.model_update() is None  # unchanged: the page is not updated again
    tab.client.session = {"model": {"name": "mini", "trained": True}}
    assert "`mini`" in tab.model_update()


def test_fetch_session_reads_session_created_and_survives_a_full_server():
    async def main():
        from websockets.asyncio.server import serve

        session = {"id": "sess_1", "model": {"name": "debug", "trained": False},
                   "audio": {"input": {"format": {"rate": 24000}}, "output": {"format": {"rate": 24000}}}}

        async def describe(ws):
            await ws.send(json.dumps({"type": "session.created", "session": session}))
            await ws.wait_closed()

        async def full(ws):
            await ws.send(json.dumps({"type": "error", "error": {"code": "too_many_sessions", "message": "full"}}))
            await ws.close(1013, "server full")

        async with serve(describe, "127.0.0.1", 0) as a, serve(full, "127.0.0.1", 0) as b:
            got = await fetch_session(f"ws://127.0.0.1:{a.sockets[0].getsockname()[1]}/v1/realtime")
            none = await fetch_session(f"ws://127.0.0.1:{b.sockets[0].getsockname()[1]}/v1/realtime")
        return got, none

    got, none = asyncio.run(main())
    assert got["model"] == {"name": "debug", "trained": False} and none is None


def test_fetch_session_raises_when_nothing_listens():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(OSError):
        asyncio.run(fetch_session(f"ws://127.0.0.1:{port}/v1/realtime", timeout=5))


def test_context_reset_is_a_note_not_an_error():
    tab = _tab(Reply("resp_000001", status="completed", transcript="hi"))
    tab.client.events.append({"type": "omni.context_reset", "reason": "full", "kept_turns": 3})
    text = tab.transcript()
    assert "last 3 text turns kept" in text and "[server error]" not in text


def test_the_server_says_whether_its_model_is_trained():
    """`omni serve` tells sessions the model's name and whether it was trained
    (session.omni.model), and the page turns that into its warning."""
    from streaming.cli_serve import model_identity
    from streaming.server import OmniServer, ServerConfig
    from tests.streaming.streaming_helpers import ScriptedModel

    assert model_identity(SimpleNamespace(model=None, flavor="debug")) == ("debug", False)

    async def main():
        srv = await OmniServer(ScriptedModel(), ServerConfig(port=0, model_name="debug", model_trained=False)).start()
        try:
            return await fetch_session(srv.url)
        finally:
            await srv.close()

    session = asyncio.run(main())
    assert session["omni"]["model"] == {"name": "debug", "trained": False}
    assert "noise" in model_note(session)


def test_transcript_shows_the_users_words_once_they_are_heard():
    tab = _tab(Reply("resp_000001", status="completed", transcript="It is red."))
    c = tab.client
    c.events[:0] = [{"type": "input_audio_buffer.speech_started", "item_id": "item_u1"},
                    {"type": "input_audio_buffer.speech_stopped", "item_id": "item_u1"}]
    c.events += [{"type": "input_audio_buffer.speech_started", "item_id": "item_u2"}]
    c.input_transcripts = {}
    assert tab.transcript().splitlines()[0] == "you: (spoke)"  # not heard yet
    c.input_transcripts = {"item_u1": "what color is\x00 the\nstar", "item_u2": "and"}
    assert tab.transcript().splitlines() == ["you: what color is the star", "assistant [000001]: It is red.",
                                             "you: and"]


def test_the_page_says_what_a_trained_model_knows_and_what_to_ask():
    """A server with a model card (`card.json` of the model directory) reports it to
    every session; the page shows it as plain text (markup a server sends is escaped)."""
    from streaming.server import OmniServer, ServerConfig
    from tests.streaming.streaming_helpers import ScriptedModel

    card = {"about": "Coloured *shapes* only.", "ask": ["what color is the circle", "what is moving"]}

    async def main():
        srv = await OmniServer(ScriptedModel(), ServerConfig(port=0, model_name="default", model_trained=True,
                                                             model_card=card)).start()
        try:
            return await fetch_session(srv.url)
        finally:
            await srv.close()

    session = asyncio.run(main())
    assert session["omni"]["model"] == {"name": "default", "trained": True, **card}
    note = model_note(session)
    assert "Coloured \\*shapes\\* only." in note and "noise" not in note
    assert "**Try asking:** *what color is the circle* · *what is moving*" in note
    assert model_note({"model": {"name": "x", "trained": True}}).count("\n") == 0  # no card: one line
    hostile = {"omni": {"model": {"name": "m", "trained": True, "about": "<img src=x>`[a](b)`\x00",
                                  "ask": ["**bold**", 7, "", "q" * 500] + ["ok"] * 20}}}
    note = model_note(hostile)
    import re

    assert not re.search(r"(?<!\\)[<`\[]", note.split("\n", 1)[1]) and "\\<img" in note and "\x00" not in note
    assert note.count("*ok*") == 4 and "q" * 101 not in note  # at most 8 questions, each cut to 100

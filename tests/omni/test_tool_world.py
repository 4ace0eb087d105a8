"""The default world's tool: its requests, cases, and the conversation layout a served
session holds (the server's own builder and call checker are the reference)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from omni.sequence import ChatFormat, Tokens
from omni.sequence_av import EncodedChunk, build_av_user_turn
from omni.sequence_stream import IncrementalBuilder
from omni.synth.questions import all_wordings
from omni.synth.tool_world import (FAILURE_ANSWER, LIGHT, REQUESTS, ToolCase, answer_texts, draw_case,
                                   request_texts, system_prompt, tool_conversation)
from omni.tool_calls import CALL_CLOSE, CALL_OPEN, ToolCall, check_call
from streaming.calls import system_prompt as session_system_prompt

D = 8


def _words(texts):
    return {w for t in texts for w in t.replace("{x}", " ").split()}


def test_requests_split_like_the_questions():
    train, held = request_texts("train"), request_texts("heldout")
    assert not set(train) & set(held)
    # held-out requests are new sentences of words the train texts teach
    assert _words(held) <= _words(train) | _words(all_wordings("train")), sorted(_words(held) - _words(train))
    for on in (True, False):  # every wording names the state it asks for
        assert all(("on" if on else "off") in t.split() for split in REQUESTS[on].values() for t in split)
    with pytest.raises(ValueError, match="split"):
        request_texts("test")


def test_cases_read_the_output():
    rng = np.random.default_rng(0)
    cases = [draw_case(rng, "train") for _ in range(400)]
    assert {c.on for c in cases} == {True, False} and {c.ok for c in cases} == {True, False}
    assert all(c.request in REQUESTS[c.on]["train"] for c in cases)
    for c in cases:
        out = json.loads(c.output)
        assert c.answer in answer_texts()
        if c.ok:
            assert out == {"light": "on" if c.on else "off"} and c.answer == f"the light is {out['light']}"
        else:
            assert "error" in out and c.answer == FAILURE_ANSWER
    # the same request ends in different answers: only the output tells them apart
    on_answers = {c.answer for c in cases if c.on}
    assert len(on_answers) == 2


def test_call_is_one_the_server_accepts():
    for on in (True, False):
        call = ToolCase("turn the light on", on, True).call
        assert call.startswith(CALL_OPEN) and call.endswith(CALL_CLOSE)
        got = check_call(call[len(CALL_OPEN):-len(CALL_CLOSE)], {LIGHT.name: LIGHT})
        assert got == ToolCall("set_light", json.dumps({"on": on}, separators=(",", ":")))


def test_system_prompt_is_the_sessions():
    """A client declaring the tool in session.update gets this system prompt."""
    assert session_system_prompt(None, [LIGHT.to_json()], "auto") == system_prompt()
    assert "### Tool name: set_light" in system_prompt()


def _reply(fmt, text, frames):
    """A spoken reply's rows: text + EOS padded, aligned with `frames` codec rows."""
    ids = fmt.tok.encode(text) + [fmt.sp.eos]
    ids += [fmt.sp.pad] * (frames - len(ids))
    codec = torch.randint(4, 100, (frames, 4))
    return Tokens(torch.tensor(ids), codec)


def _served(fmt, user_runs, call_reply, output, answer_reply):
    """What a served session's context holds, run by run, built by the server's own
    incremental builder (RealtimeOmni's prefill / begin_response / end_response)."""
    b = IncrementalBuilder(fmt)
    runs = [b.add_text_turn("system", session_system_prompt(None, [LIGHT.to_json()], "auto"))]
    runs += user_runs(b)
    runs += [b.begin_response(voice=True), call_reply, b.end_response(needs_eos=False)]
    runs += [b.add_text_turn("tool", output), b.begin_response(voice=True), answer_reply, b.end_response(False)]
    return Tokens.cat(runs)


def test_conversation_equals_the_served_context_typed_request(tok):
    fmt = ChatFormat(tok)
    case = ToolCase("please turn the light off", False, True)
    call, answer = _reply(fmt, case.call, 40), _reply(fmt, case.answer, 20)
    conv = tool_conversation(fmt, fmt.user_text_turn(case.request), call, case.output, answer)
    served = _served(fmt, lambda b: [b.add_text_turn("user", case.request)], call, case.output, answer)
    assert torch.equal(conv.tokens.ids, served.ids) and torch.equal(conv.tokens.codec, served.codec)
    a, b = conv.call_span
    c, d = conv.answer_span
    assert torch.equal(conv.tokens.ids[a:b], call.ids) and torch.equal(conv.tokens.ids[c:d], answer.ids)
    text = tok.hf.decode(conv.tokens.ids.tolist())
    assert text.startswith("SYSTEM:# Tools") and "USER:<longcat_tool_response>" in text
    assert text.count("VOICE ASSISTANT:") == 2 and text.endswith("\n")
    at = 0
    for piece in ("USER:" + case.request, "VOICE ASSISTANT:" + case.call + "</longcat_s>", "\nUSER:<longcat_tool_response>"
                  + case.output, "VOICE ASSISTANT:" + case.answer + "</longcat_s>"):  # in this order
        at = text.index(piece, at) + len(piece)


def test_conversation_equals_the_served_context_spoken_request(tok):
    """The request streamed as audio (the offline user turn of omni.sequence_av against
    the builder fed one packet)."""
    fmt = ChatFormat(tok)
    case = ToolCase("could you switch on the light", True, False)
    g = torch.Generator().manual_seed(0)
    n = 28000
    audio = torch.randn(20, D, generator=g)
    video = [(0.0, torch.randn(3, D, generator=g)), (1.0, torch.randn(3, D, generator=g))]
    call, answer = _reply(fmt, case.call, 40), _reply(fmt, case.answer, 25)

    def user_runs(b):
        runs = [b.open_user_turn()]
        runs.append(b.add_chunk(EncodedChunk(0.0, audio[:12], [f for _, f in video], [t for t, _ in video], n)))
        runs.append(b.close_user_turn(audio[12:]))
        return runs

    user_turn = build_av_user_turn(fmt, audio, n, video)
    conv = tool_conversation(fmt, user_turn, call, case.output, answer)
    served = _served(fmt, user_runs, call, case.output, answer)
    assert torch.equal(conv.tokens.ids, served.ids) and torch.equal(conv.tokens.codec, served.codec)
    assert [x.shape for x in conv.tokens.audio] == [x.shape for x in served.audio]
    assert case.answer == FAILURE_ANSWER and '"error"' in case.output


def test_corpus_lines_teach_the_tool_text():
    from omni.synth.corpus import corpus_lines
    from omni.synth.tool_world import corpus_lines as tool_lines

    lines = corpus_lines()
    assert all("\n" not in x and x for x in tool_lines()) and set(tool_lines()) <= set(lines)
    assert "### Tool name: set_light" in lines and not set(request_texts("heldout")) & set(lines)
    assert any(ToolCase(r, True, False).output in x for x in lines for r in request_texts("train"))

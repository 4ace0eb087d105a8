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


def _bench():
    import importlib.util
    import os

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "bench",
                        "tool_world.py")
    spec = importlib.util.spec_from_file_location("tool_world_bench", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class _Scripted:
    """A RealtimeOmni stand-in whose replies are scripted per turn from what it was told
    (the bench's scoring is under test here, not a model)."""

    def __init__(self, first, second):
        self.first, self.second, self.told, self.turn, self.left = first, second, {}, {}, {}

    def open_slot(self, prompt):
        s = len(self.told)
        assert prompt == system_prompt()
        self.told[s], self.turn[s] = [], 0
        return s

    def prefill_text(self, s, role, text):
        self.told[s].append((role, text))

    def begin_responses(self, items):
        for s, _ in items:
            self.turn[s] += 1
            request = self.told[s][0][1]
            text = self.first(request) if self.turn[s] == 1 else self.second(self.told[s][-1][1])
            self.left[s] = [text[i:i + 3] for i in range(0, len(text), 3)]  # 3 characters a step

    def decode_step(self, slots):
        from omni.realtime_api import StepOutput

        outs = []
        for s in slots:
            piece = self.left[s].pop(0) if self.left[s] else ""
            outs.append(StepOutput(1, piece, None, done=not self.left[s]))
        return outs

    def end_responses(self, slots):
        pass

    def close_slot(self, s):
        pass


def test_tool_bench_scores_calls_and_answers():
    bench = _bench()
    rng = np.random.default_rng(3)
    cases = [draw_case(rng, "heldout") for _ in range(24)]
    by_request = {c.request: c for c in cases}
    answers = {c.output: c.answer for c in cases}
    right = _Scripted(lambda r: by_request[r].call, lambda out: "The light " + answers[out][len("the light "):] + ".")
    rows = bench.run_cases(right, cases, None, max_steps=200)
    s = bench.summary(rows)
    assert s["both_ok"]["all"] == {"n": 24, "accuracy": 1.0}
    assert sum(v["n"] for k, v in s["call_ok"].items() if k != "all") == 24
    # the call's arguments wrong, two calls, a spoken call, or an answer from the request alone: all scored wrong
    flip = lambda r: ToolCase(r, not by_request[r].on, True).call  # noqa: E731
    flipped = bench.summary(bench.run_cases(_Scripted(flip, lambda o: answers[o]), cases, None, 200))
    assert flipped["call_ok"]["all"]["accuracy"] == 0.0 and flipped["call_valid"]["all"]["accuracy"] == 1.0
    twice = lambda r: by_request[r].call * 2  # noqa: E731
    assert not any(r["call_valid"] for r in bench.run_cases(_Scripted(twice, lambda o: ""), cases, None, 200))
    said = lambda r: by_request[r].call[len(CALL_OPEN):-len(CALL_CLOSE)]  # noqa: E731
    assert not any(r["call_ok"] for r in bench.run_cases(_Scripted(said, lambda o: ""), cases, None, 200))
    guess = bench.run_cases(_Scripted(lambda r: by_request[r].call, lambda o: "the light is on"), cases, None, 200)
    assert {r["answer_ok"] for r in guess} == {True, False}
    assert all(r["answer_ok"] == (r["expected_answer"] == "the light is on") for r in guess)


def test_corpus_lines_teach_the_tool_text():
    from omni.synth.corpus import corpus_lines
    from omni.synth.tool_world import corpus_lines as tool_lines

    lines = corpus_lines()
    assert all("\n" not in x and x for x in tool_lines()) and set(tool_lines()) <= set(lines)
    assert "### Tool name: set_light" in lines and not set(request_texts("heldout")) & set(lines)
    assert any(ToolCase(r, True, False).output in x for x in lines for r in request_texts("train"))

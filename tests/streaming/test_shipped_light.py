"""The shipped default model switches the world's light through the server, as a client of
the OpenAI Realtime API drives it: the session declares the tools the model's card names,
a request in a held-out wording and voice becomes a `set_light` call with the asked
argument (never spoken), the client's `function_call_output` and `response.create` bring
the spoken answer that output calls for; a typed request whose light does not answer gets
that failure said. Real model, real server, greedy decoding on the CPU."""

from __future__ import annotations

import json

import numpy as np
import pytest
from streaming_helpers import run, serving, silence

from omni.defaults import DEFAULT_MODEL_DIR
from omni.model_card import read_card
from omni.synth.questions import normalize_answer
from omni.synth.tool_world import FAILURE, FAILURE_ANSWER, LIGHT, REQUESTS, state_answer
from streaming.client import RealtimeClient

SR = 16000


@pytest.fixture(scope="module")
def shipped():
    from streaming.model_loader import load_realtime_model

    rt, _ = load_realtime_model(device="cpu")  # no --model: the shipped default model
    return rt


def spoken_request(text: str, seed: int) -> np.ndarray:
    """`text` in a voice of the world's held-out set (espeak-ng), 16 kHz float32."""
    from omni.synth.audio import to_float
    from omni.synth.voices import sample_voice, synthesize

    return to_float(synthesize(text, sample_voice(np.random.default_rng(seed), "heldout")))


async def answer_call(c: RealtimeClient, call: dict, output: str) -> str:
    """Send the call's output and ask for the reply; -> what the assistant says."""
    m = len(c.events)
    await c.send({"type": "conversation.item.create", "item": {
        "type": "function_call_output", "call_id": call["call_id"], "output": output}})
    await c.send({"type": "response.create"})
    return (await c.wait_response(120, start=m)).transcript


def calls_of(c: RealtimeClient, start: int = 0) -> list[dict]:
    return [e for e in c.events[start:] if e["type"] == "response.function_call_arguments.done"]


def test_the_card_names_the_light():
    assert (read_card(DEFAULT_MODEL_DIR) or {}).get("tools") == [LIGHT.to_json()]


@pytest.mark.slow
def test_a_spoken_request_switches_the_light_and_the_answer_reads_the_output(shipped):
    request = REQUESTS[True]["heldout"][1]  # "please turn the light on": a wording never trained
    assert request not in REQUESTS[True]["train"]
    tools = read_card(DEFAULT_MODEL_DIR)["tools"]

    async def main():
        async with serving(shipped) as srv, RealtimeClient(srv.url) as c:
            session = await c.configure(tools=tools, tool_choice="auto")
            assert [t["name"] for t in session["tools"]] == ["set_light"]
            n = len(c.events)
            await c.stream_audio(np.concatenate([silence(0.3), spoken_request(request, seed=3), silence(1.2)]), SR,
                                 realtime=False)
            first = await c.wait_response(120, start=n)
            calls = calls_of(c, n)
            assert len(calls) == 1, (first.transcript, [e["type"] for e in c.events[n:]])
            said = await answer_call(c, calls[0], json.dumps({"light": "on"}))
            return first, calls[0], said

    first, call, said = run(main())
    assert call["name"] == "set_light" and json.loads(call["arguments"]) == {"on": True}
    assert "longcat" not in first.transcript  # the call block is never spoken
    assert normalize_answer(said) == state_answer(True), said


@pytest.mark.slow
def test_a_typed_request_whose_light_fails_gets_the_failure_said(shipped):
    request = REQUESTS[False]["heldout"][0]  # "could you switch off the light"

    async def main():
        async with serving(shipped) as srv, RealtimeClient(srv.url) as c:
            await c.configure(turn_detection=None, tools=read_card(DEFAULT_MODEL_DIR)["tools"], tool_choice="auto")
            n = len(c.events)
            await c.send({"type": "conversation.item.create", "item": {
                "type": "message", "role": "user", "content": [{"type": "input_text", "text": request}]}})
            await c.send({"type": "response.create"})
            await c.wait_response(120, start=n)
            calls = calls_of(c, n)
            assert len(calls) == 1, [e["type"] for e in c.events[n:]]
            return calls[0], await answer_call(c, calls[0], json.dumps(FAILURE))

    call, said = run(main())
    assert json.loads(call["arguments"]) == {"on": False}
    assert normalize_answer(said) == FAILURE_ANSWER, said

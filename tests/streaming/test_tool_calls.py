"""Function calling end to end with a scripted model whose replies hold LongCat
tool-call blocks (split across decode steps at awkward places): the call
streams as a function_call item and is never spoken; bad calls become typed
errors, never calls; results go back as function_call_output items and the
model goes on, in speech. Clients: raw events, the unmodified `openai` SDK and
the OpenAI Agents SDK's realtime runner."""

from __future__ import annotations

import asyncio
import base64
import json

import numpy as np
import pytest
from streaming_helpers import ScriptedModel, run, serving, silence

from omni.tool_calls import NO_TOOLS
from streaming.client import RealtimeClient
from streaming.protocol import encode_pcm16
from streaming.protocol.audio import resample

SR = 16000
FRAME_24K = 24000 * 960 // 16000  # one scripted codec frame at the client's 24 kHz
LAMP = {"type": "function", "name": "set_lamp", "description": "Turn the lamp on or off.",
        "parameters": {"type": "object", "properties": {"on": {"type": "boolean"}}, "required": ["on"],
                       "additionalProperties": False}}
# tags split inside their names, the JSON split across steps
CALL = ["Okay, ", "turning it on. ", "<longcat", "_tool_call>", '{"name": "set_lamp", ', '"arguments": {"on": true}}',
        "</longcat_tool", "_call>"]
AFTER = "The lamp is on now."



def block(name: str, args: str) -> list[str]:
    return ["<longcat_tool_call>", '{"name": ' + json.dumps(name) + ', "arguments": ' + args + "}",
            "</longcat_tool_call>"]


async def text_turn(c: RealtimeClient, text: str = "turn on the lamp", **response) -> int:
    n = len(c.events)
    await c.send({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}})
    await c.send({"type": "response.create", **({"response": response} if response else {})})
    return n


def of(c: RealtimeClient, kind: str, start: int = 0) -> list[dict]:
    return [e for e in c.events[start:] if e["type"] == kind]


def test_a_call_streams_as_an_item_is_never_spoken_and_the_model_goes_on_from_its_result():
    model = ScriptedModel(replies=[CALL, AFTER])

    async def main():
        async with serving(model) as srv, RealtimeClient(srv.url) as c:
            session = await c.configure(turn_detection=None, tools=[LAMP], tool_choice="auto")
            n = await text_turn(c)
            first = await c.wait_response(20, start=n)
            done = of(c, "response.function_call_arguments.done", n)[0]
            m = len(c.events)
            await c.send({"type": "conversation.item.create", "item": {
                "type": "function_call_output", "call_id": done["call_id"], "output": '{"lamp": "on"}'}})
            await c.send({"type": "response.create"})
            second = await c.wait_response(20, start=m)
            return c, session, n, m, first, second, done

    c, session, n, m, first, second, done = run(main())
    assert session["tools"] == [LAMP] and session["tool_choice"] == "auto"
    # spoken: only the text before the call, and only its two steps' speech frames
    assert first.transcript == "Okay, turning it on. "
    assert len(first.waveform()) == pytest.approx(2 * FRAME_24K, abs=48)
    assert not any("longcat" in e.get("delta", "") for e in of(c, "response.output_audio_transcript.delta"))
    kinds = [e["type"] for e in c.events[n:m]]
    call_events = ["response.output_item.added", "conversation.item.added", "response.function_call_arguments.delta",
                   "response.function_call_arguments.done", "response.output_item.done", "conversation.item.done"]
    at = kinds.index("response.function_call_arguments.delta") - 2
    assert kinds[at:at + 6] == call_events
    assert done["name"] == "set_lamp" and json.loads(done["arguments"]) == {"on": True}
    output = of(c, "response.done", n)[0]["response"]["output"]
    assert [o["type"] for o in output] == ["message", "function_call"]
    assert output[1]["call_id"] == done["call_id"] and output[1]["status"] == "completed"
    assert [e["output_index"] for e in of(c, "response.function_call_arguments.delta", n)] == [1]
    # the continuation is spoken, and the model read the tool's result before it
    assert second.status == "completed" and second.transcript == AFTER and len(second.waveform())
    ctx = model.context(0)
    assert ctx[0][0] == "sys" and "### Tool name: set_lamp" in ctx[0][1]
    assert ("tool", '{"lamp": "on"}') in ctx and ctx.index(("tool", '{"lamp": "on"}')) < len(ctx) - 5


def test_several_calls_in_one_reply_and_bad_ones_fail_closed():
    reply = (["Let me see. "] + block("set_lamp", '{"on": false}') + block("set_lamp", '{"on": "yes"}')
             + block("set_lamp", '{"on": true, "color": "red"}') + block("open_door", "{}")
             + ["<longcat_tool_call>", '{"name": "set_lamp", "arguments": {"on": tr'] + ["</longcat_tool_call>"]
             + block("set_lamp", '{"on": true}') + ["Done."])
    model = ScriptedModel(replies=[reply])

    async def main():
        async with serving(model) as srv, RealtimeClient(srv.url) as c:
            await c.configure(turn_detection=None, tools=[LAMP])
            n = await text_turn(c)
            r = await c.wait_response(20, start=n)
            return c, r

    c, r = run(main())
    calls = of(c, "response.function_call_arguments.done")
    assert [json.loads(e["arguments"]) for e in calls] == [{"on": False}, {"on": True}]
    assert [e["output_index"] for e in calls] == [1, 2]  # after the message item
    errors = [e["error"] for e in of(c, "error")]
    assert [(e["type"], e["code"]) for e in errors] == [
        ("tool_call_error", "tool_call_invalid_arguments"), ("tool_call_error", "tool_call_invalid_arguments"),
        ("tool_call_error", "tool_call_unknown_function"), ("tool_call_error", "tool_call_invalid_json")]
    assert errors[0]["param"] == "arguments.on" and errors[1]["param"] == "arguments.color"
    assert errors[2]["name"] == "open_door" and all(e["response_id"] == r.id for e in errors)
    assert r.status == "completed" and r.transcript == "Let me see. Done."
    output = of(c, "response.done")[0]["response"]["output"]
    assert [o["type"] for o in output] == ["message", "function_call", "function_call"]


def test_thinking_is_never_spoken_and_a_deleted_call_cannot_be_answered():
    think = ["<longcat_", "think>the user ", "wants light</longcat", "_think>", "On it. "] + block("set_lamp", '{"on": true}')
    model = ScriptedModel(replies=[think])

    async def main():
        async with serving(model) as srv, RealtimeClient(srv.url) as c:
            await c.configure(turn_detection=None, tools=[LAMP])
            n = await text_turn(c)
            r = await c.wait_response(20, start=n)
            done = of(c, "response.function_call_arguments.done", n)[0]
            m = len(c.events)
            await c.send({"type": "conversation.item.delete", "item_id": done["item_id"]})
            await c.send({"type": "conversation.item.create", "item": {
                "type": "function_call_output", "call_id": done["call_id"], "output": "on"}})
            err = await c.wait_for(lambda e: e["type"] == "error", 10, start=m)
            return c, r, err, m, srv.metrics.counter("omni_thinking_sections_total")

    c, r, err, m, thoughts = run(main())
    assert r.transcript == "On it. " and len(r.waveform()) == pytest.approx(FRAME_24K, abs=48)  # one spoken step
    assert thoughts == 1
    assert of(c, "conversation.item.deleted", m) and err["error"]["code"] == "call_id_not_found"


def test_tool_choice_none_required_and_named():
    model = ScriptedModel(replies=[block("set_lamp", '{"on": true}'), ['{"name": "set_lamp", "arguments": {"on": true}}',
                                                                       "</longcat_tool_call>"],
                                   ['{"on": false}}', "</longcat_tool_call>"], "ok"])

    async def main():
        async with serving(model) as srv, RealtimeClient(srv.url) as c:
            await c.configure(turn_detection=None, tools=[LAMP], tool_choice="none")
            n0 = await text_turn(c)
            await c.wait_response(20, start=n0)
            n1 = await text_turn(c, tool_choice="required")
            await c.wait_response(20, start=n1)
            n2 = await text_turn(c, tool_choice={"type": "function", "name": "set_lamp"})
            await c.wait_response(20, start=n2)
            await c.send({"type": "response.create", "response": {"tool_choice": {"type": "function", "name": "nope"}}})
            err = await c.wait_for(lambda e: e["type"] == "error" and e["error"]["code"] == "invalid_value", 10)
            return c, n0, n1, n2, err

    c, n0, n1, n2, err = run(main())
    # none: the tools are not declared to the model, and a call it makes anyway is refused
    assert of(c, "error", n0)[0]["error"]["code"] == "tool_call_not_allowed"
    assert not [e for e in c.events[n0:n1] if e["type"] == "response.function_call_arguments.done"]
    assert [json.loads(e["arguments"]) for e in of(c, "response.function_call_arguments.done", n1)] == [
        {"on": True}, {"on": False}]
    ctx = model.context(0)
    assert ctx[0] == ("sys", None)  # tool_choice none: nothing declared at the start
    assert ("begin", "<longcat_tool_call>") in ctx  # required: the reply opens a call
    assert ("begin", '<longcat_tool_call>{"name": "set_lamp", "arguments": ') in ctx  # named
    assert sum(1 for t in ctx if t[0] == "system" and "### Tool name: set_lamp" in t[1]) == 1
    assert err["error"]["param"] == "response.tool_choice.name"


def test_a_responses_own_tools_are_declared_for_it_alone():
    """`response.create` with `tools` on a session that has none: the model is told them
    before that reply and may call them there; the next reply has the session's (none)
    again, the model is told so, and a call it makes anyway is refused."""
    model = ScriptedModel(replies=[block("set_lamp", '{"on": true}'), block("set_lamp", '{"on": false}')])

    async def main():
        async with serving(model) as srv, RealtimeClient(srv.url) as c:
            await c.configure(turn_detection=None)
            n0 = await text_turn(c, tools=[LAMP])
            await c.wait_response(20, start=n0)
            n1 = await text_turn(c, "and off")
            await c.wait_response(20, start=n1)
            return c, n0, n1

    c, n0, n1 = run(main())
    # the first reply's call is a call; the second's is refused, never a call
    assert [json.loads(e["arguments"]) for e in of(c, "response.function_call_arguments.done", n0)] == [{"on": True}]
    assert not [e for e in c.events[n0:n1] if e["type"] == "error"]
    assert [e["error"]["code"] for e in of(c, "error", n1)] == ["tool_call_unknown_function"]
    ctx = model.context(0)
    assert ctx[0] == ("sys", None)  # the session declared nothing
    begins = [k for k, t in enumerate(ctx) if t[0] == "begin"]
    told = [(k, t[1]) for k, t in enumerate(ctx) if t[0] == "system"]
    assert len(told) == 2 and "### Tool name: set_lamp" in told[0][1] and told[0][0] < begins[0]
    assert told[1][1] == NO_TOOLS and begins[0] < told[1][0] < begins[1]


def test_outputs_for_unknown_or_answered_calls_and_refused_item_types_are_typed_errors():
    model = ScriptedModel(replies=[block("set_lamp", '{"on": true}'), AFTER])

    async def main():
        async with serving(model) as srv, RealtimeClient(srv.url) as c:
            await c.configure(turn_detection=None, tools=[LAMP])
            n = await text_turn(c)
            await c.wait_response(20, start=n)
            call_id = of(c, "response.function_call_arguments.done")[0]["call_id"]
            sends = [
                {"type": "function_call_output", "call_id": "call_nope", "output": "x"},
                {"type": "function_call_output", "call_id": call_id, "output": "ok"},
                {"type": "function_call_output", "call_id": call_id, "output": "again"},
                {"type": "mcp_approval_response", "approval_request_id": "a", "approve": True},
                {"type": "function_call", "call_id": "call_mine", "name": "set_lamp", "arguments": "[1]"},
                {"type": "function_call", "call_id": "call_mine", "name": "set_lamp", "arguments": '{"on": false}'},
                {"type": "function_call_output", "call_id": "call_mine", "output": "done"},
            ]
            m = len(c.events)
            for item in sends:
                await c.send({"type": "conversation.item.create", "item": item})
            await c.send({"type": "session.update", "session": {"tools": [{"type": "mcp", "server_label": "x"}]}})
            await c.send({"type": "session.update", "session": {"tools": [{**LAMP, "parameters": {
                "type": "object", "if": {"type": "object"}}}]}})
            while len([e for e in c.events[m:] if e["type"] in ("error", "conversation.item.done")]) < 9:
                await asyncio.sleep(0.05)
            return [e["error"]["code"] if e["type"] == "error" else e["item"]["type"]
                    for e in c.events[m:] if e["type"] in ("error", "conversation.item.done")], c

    got, c = run(main())
    assert got == ["call_id_not_found", "function_call_output", "call_already_answered", "unsupported_item_type",
                   "invalid_value", "function_call", "function_call_output", "unsupported_tool_type",
                   "invalid_value"]
    errors = [e["error"] for e in c.events if e["type"] == "error"]
    assert errors[0]["param"] == "item.call_id" and "mcp_approval_response" in errors[2]["message"]
    assert errors[-1]["param"] == "session.tools[0].parameters.if"
    ctx = model.context(0)
    assert ("assistant", '<longcat_tool_call>{"name": "set_lamp", "arguments": {"on": false}}</longcat_tool_call>') in ctx
    assert ("tool", "done") in ctx and ("tool", "again") not in ctx


def test_barge_in_during_a_call_drops_it_and_a_call_already_given_stays(voice):
    q, again = voice("Turn on the lamp."), voice("Stop please.")
    slow = (["Okay, ", "one moment. "] + [f"w{i} " for i in range(12)] + ["<longcat_tool_call>", '{"name": "set_lamp", ']
            + ['"arguments": '] * 1 + [" "] * 60 + ['{"on": true}}', "</longcat_tool_call>"])
    given = ["Sure. "] + block("set_lamp", '{"on": true}') + [f"x{i} " for i in range(60)]
    model = ScriptedModel(replies=[slow, given, AFTER, AFTER], step_delay=0.04)

    async def main():
        async with serving(model) as srv, RealtimeClient(srv.url) as c:
            await c.configure(tools=[LAMP])
            await c.stream_audio(np.concatenate([q, silence(0.8)]), SR, realtime=False)
            # the call block has begun (its opening step is hidden, w11 was the last word spoken)
            await c.wait_for(lambda e: e.get("delta") == "w11 ", 20)
            await asyncio.sleep(0.3)
            await c.stream_audio(np.concatenate([again, silence(0.8)]), SR, realtime=False)
            first = await c.wait_response(20)
            # the next reply gives its call, then the user barges in again while it speaks on
            await c.wait_for(lambda e: e.get("delta") == "x5 ", 20)
            await c.stream_audio(np.concatenate([again, silence(0.8)]), SR, realtime=False)
            second = await c.wait_for(lambda e: e["type"] == "response.done" and e["response"]["id"] != first.id, 30)
            call = of(c, "response.function_call_arguments.done")[-1]
            await c.wait_response(30, start=c.events.index(second) + 1)  # the reply to the barge-in
            m = len(c.events)
            await c.send({"type": "conversation.item.create", "item": {
                "type": "function_call_output", "call_id": call["call_id"], "output": "on"}})
            answered = await c.wait_for(lambda e: e["type"] in ("error", "conversation.item.done"), 10, start=m)
            return c, first, c.replies[second["response"]["id"]], answered

    c, first, second, answered = run(main())
    assert first.status == "cancelled" and not [e for e in of(c, "response.function_call_arguments.done")
                                                if e["response_id"] == first.id]
    # the cut reply ends before the unfinished block: the model never "made" that call
    ctx = model.context(0)
    end = ctx.index(("end",))
    kept = "".join(t[1] for t in ctx[:end] if t[0] == "tok")
    assert "longcat" not in kept and kept.endswith(". ")
    # the second reply was cut after its call: the call stays in the context and can be answered
    assert second.status == "cancelled" and second.transcript.startswith("Sure. ")
    given_calls = [e for e in of(c, "response.function_call_arguments.done") if e["response_id"] == second.id]
    assert len(given_calls) == 1
    ends = [i for i, t in enumerate(ctx) if t == ("end",)]
    kept = "".join(t[1] for t in ctx[ends[0]:ends[1]] if t[0] == "tok")
    assert kept.startswith("Sure. <longcat_tool_call>") and kept.endswith("</longcat_tool_call>")
    assert answered["type"] == "conversation.item.done" and answered["item"]["type"] == "function_call_output"


def test_openai_sdk_registers_a_tool_gets_the_call_and_hears_the_continuation(voice):
    openai = pytest.importorskip("openai")
    q = voice("Please turn on the lamp.")
    model = ScriptedModel(replies=[CALL, AFTER])

    async def main():
        async with serving(model, api_key="sk-local") as srv:
            client = openai.AsyncOpenAI(api_key="sk-local", websocket_base_url=f"ws://127.0.0.1:{srv.port}/v1")
            seen, calls, transcript, audio = [], [], "", b""
            async with client.realtime.connect(model="gpt-realtime") as conn:
                await conn.session.update(session={"type": "realtime", "output_modalities": ["audio"], "tools": [LAMP],
                                                   "tool_choice": "auto", "audio": {"input": {
                                                       "turn_detection": {"type": "server_vad"}}}})
                pcm = resample(np.concatenate([q, silence(1.0)]), SR, 24000)
                for i in range(0, len(pcm), 4800):
                    await conn.input_audio_buffer.append(audio=encode_pcm16(pcm[i:i + 4800]))
                responses = 0
                async for event in conn:
                    seen.append(event.type)
                    if event.type == "session.updated":
                        assert [t.name for t in event.session.tools] == ["set_lamp"]
                    elif event.type == "response.function_call_arguments.done":
                        calls.append((event.name, json.loads(event.arguments), event.call_id))
                    elif event.type == "response.output_audio_transcript.delta" and responses == 1:
                        transcript += event.delta
                    elif event.type == "response.output_audio.delta" and responses == 1:
                        audio += base64.b64decode(event.delta)
                    elif event.type == "response.done":
                        responses += 1
                        if responses == 2:
                            break
                        name, args, call_id = calls[0]
                        assert args == {"on": True}
                        await conn.conversation.item.create(item={
                            "type": "function_call_output", "call_id": call_id, "output": '{"lamp": "on"}'})
                        await conn.response.create()
            return seen, calls, transcript, audio

    seen, calls, transcript, audio = run(main())
    assert [c[:2] for c in calls] == [("set_lamp", {"on": True})]
    assert transcript == AFTER and len(audio) > 0
    assert "error" not in seen


def test_agents_sdk_realtime_runner_calls_the_tool_and_hears_the_continuation(voice):
    agents = pytest.importorskip("agents")
    from agents.realtime import RealtimeAgent, RealtimeRunner

    agents.set_tracing_disabled(True)
    q = voice("Please turn on the lamp.")
    model = ScriptedModel(replies=[CALL, AFTER])
    called: list[bool] = []

    @agents.function_tool
    def set_lamp(on: bool) -> str:
        """Turn the lamp on or off."""
        called.append(on)
        return "the lamp is on" if on else "the lamp is off"

    async def main():
        async with serving(model, api_key="sk-local") as srv:
            agent = RealtimeAgent(name="lamp", instructions="You control a lamp.", tools=[set_lamp])
            runner = RealtimeRunner(agent, config={"model_settings": {"turn_detection": {"type": "semantic_vad"}}})
            session = await runner.run(model_config={"url": srv.url, "api_key": "sk-local"})
            kinds, errors, transcripts, heard, done = [], [], [], 0, 0
            async with session:
                pcm = resample(np.concatenate([q, silence(1.2)]), SR, 24000)
                for i in range(0, len(pcm), 4800):
                    await session.send_audio((np.clip(pcm[i:i + 4800], -1, 1) * 32767).astype("<i2").tobytes())
                async for event in session:
                    kinds.append(event.type)
                    if event.type == "error":
                        errors.append(str(event.error))
                    elif event.type == "audio" and called:
                        heard += len(event.audio.data)
                    elif event.type == "raw_model_event" and event.data.type == "input_audio_transcription_completed":
                        transcripts.append(event.data.transcript)
                    if event.type == "agent_end" and called:
                        done += 1
                    if heard and transcripts and done:  # the continuation was heard, the user's words arrived
                        break
            return kinds, errors, transcripts, heard, srv.transcribe_stage is not None

    kinds, errors, transcripts, heard, transcribing = run(main(), 120)
    assert called == [True]
    assert "tool_start" in kinds and "tool_end" in kinds and heard > 0
    assert not errors, errors
    # the SDK asks for input transcription (and then retrieves the item): the server's recognizer ran
    assert transcribing and transcripts and transcripts[0].strip()


def test_a_responses_own_instructions_apply_to_it_alone():
    """`response.create` with `instructions`: the model is told them for that reply, and
    the session's again before the next reply (a system turn only when they change)."""
    model = ScriptedModel(replies=["Oui.", "Yes.", "Yes again."])

    async def main():
        async with serving(model) as srv, RealtimeClient(srv.url) as c:
            await c.configure(turn_detection=None, instructions="Be brief.")
            for extra in ({"instructions": "Answer in French."}, {}, {}):
                n = await text_turn(c, "hello", **extra)
                await c.wait_response(20, start=n)
            await c.send({"type": "response.create", "response": {"instructions": 7}})
            err = await c.wait_for(lambda e: e["type"] == "error", 10)
            return err

    err = run(main())
    assert err["error"]["code"] == "invalid_type" and err["error"]["param"] == "response.instructions"
    ctx = model.context(0)
    told = [t[1] for t in ctx if t[0] == "system"]
    assert told == ["Answer in French.", "Be brief."], ctx  # the session's were in the system prompt already
    begins = [k for k, t in enumerate(ctx) if t[0] == "begin"]
    french = ctx.index(("system", "Answer in French."))
    assert begins[0] > french and french > begins[0] - 3  # told right before the first reply
    assert begins[0] < ctx.index(("system", "Be brief.")) < begins[1]  # and back before the second

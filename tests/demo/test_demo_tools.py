"""The page runs the tools its model was trained to call: a model card that names
`set_light` makes the page declare it and answer its calls (the light switches, or
reports that it did not answer), and the assistant goes on from the output."""

from __future__ import annotations

import asyncio
import json

from demo.app import TabSession
from demo.tools import PageTools, card_tools, has_light
from omni.synth.tool_world import FAILURE, LIGHT, system_prompt
from streaming.client import RealtimeClient

CALL = ["Okay. ", "<longcat_tool_call>", '{"name": "set_light", "arguments": {"on": true}}', "</longcat_tool_call>"]


def test_the_page_runs_set_light_as_the_world_s_tool_answers():
    tools = PageTools()
    assert json.loads(tools.run("set_light", '{"on": true}')) == {"light": "on"} and tools.light_on
    tools.light_answers = False  # the page's box unticked: the world's failure output, the light unchanged
    assert json.loads(tools.run("set_light", '{"on": false}')) == FAILURE and tools.light_on
    assert "does not answer" in tools.light()
    tools.light_answers = True
    assert json.loads(tools.run("set_light", '{"on": false}')) == {"light": "off"} and not tools.light_on
    assert "error" in json.loads(tools.run("open_door", "{}"))
    assert "error" in json.loads(tools.run("set_light", '{"on": "yes"}')) and not tools.light_on


def test_card_tools_read_the_session_and_ignore_what_is_not_a_tool():
    light = LIGHT.to_json()
    session = {"omni": {"model": {"name": "m", "trained": True, "tools": [light, 3, {"name": 4}]}}}
    assert card_tools(session) == [light] and has_light(session)
    assert card_tools({"omni": {"model": {"tools": "set_light"}}}) == [] and not has_light(None)


def test_a_call_from_the_model_switches_the_light_and_the_assistant_says_so():
    """A server whose model card names set_light: the page's client declares it (the model's
    system prompt is the one the tool was trained under), the call's output goes back once
    the reply is done, then response.create, and the transcript shows the call."""
    from streaming.server import OmniServer, ServerConfig
    from tests.streaming.streaming_helpers import ScriptedModel

    model = ScriptedModel(replies=[CALL, "The light is on."])
    card = {"about": "a light", "ask": [], "tools": [LIGHT.to_json()]}

    async def main():
        srv = await OmniServer(model, ServerConfig(port=0, model_name="default", model_trained=True,
                                                   model_card=card)).start()
        try:
            client = RealtimeClient(srv.url)
            await client.connect()
            tools = card_tools(client.session)
            await client.configure(turn_detection=None, transcription=None, tools=tools, tool_choice="auto")
            tab = TabSession(client)
            tab.tools.start(client)
            await client.send({"type": "conversation.item.create", "item": {
                "type": "message", "role": "user", "content": [{"type": "input_text", "text": "turn the light on"}]}})
            await client.send({"type": "response.create"})
            second = await client.wait_for(lambda e: e["type"] == "response.done" and len(client.order) >= 2, 20)
            light = tab.tools.light_on
            text = tab.transcript()
            await client.close()
            await asyncio.wait_for(tab.tools.task, 5)  # the runner ends with the session
            return tools, second, light, text
        finally:
            await srv.close()

    tools, second, light, text = asyncio.run(main())
    assert tools == [LIGHT.to_json()]
    assert model.context(0)[0] == ("sys", system_prompt())  # declared exactly as the tool was learned
    assert ("tool", json.dumps({"light": "on"})) in model.context(0)
    assert light and second["response"]["status"] == "completed"
    lines = text.splitlines()
    assert lines[1] == 'assistant called set_light({"on":true}) -> {"light": "on"}'
    assert lines[2].endswith("The light is on.")


def test_a_call_in_a_reply_the_user_cut_off_gets_its_output_and_no_new_reply():
    """The call was made, so the light switches and its output goes in; the user spoke over
    the reply, so no reply is asked for (the server accepts the output: no error)."""
    from streaming.server import OmniServer, ServerConfig
    from tests.streaming.streaming_helpers import ScriptedModel

    longer = CALL + ["and ", "then ", "some ", "more ", "words ", "to ", "say."]
    model = ScriptedModel(replies=[longer, "The light is on."], step_delay=0.1)
    card = {"tools": [LIGHT.to_json()]}

    async def main():
        srv = await OmniServer(model, ServerConfig(port=0, model_card=card)).start()
        try:
            async with RealtimeClient(srv.url) as client:
                await client.configure(turn_detection=None, transcription=None, tools=card_tools(client.session))
                tab = TabSession(client)
                tab.tools.start(client)
                await client.send({"type": "conversation.item.create", "item": {
                    "type": "message", "role": "user", "content": [{"type": "input_text", "text": "light on"}]}})
                await client.send({"type": "response.create"})
                await client.wait_for(lambda e: e["type"] == "response.function_call_arguments.done", 20)
                await client.send({"type": "response.cancel"})
                done = await client.wait_for(lambda e: e["type"] == "response.done", 20)
                await client.wait_for(lambda e: e["type"] == "conversation.item.done"
                                      and e["item"]["type"] == "function_call_output", 10)
                await asyncio.sleep(0.5)  # a new reply, if one were asked for, would have begun
                return done, tab.tools.light_on, list(client.order), list(client.errors), tab.transcript()
        finally:
            await srv.close()

    done, light, order, errors, text = asyncio.run(main())
    assert done["response"]["status"] == "cancelled" and light and len(order) == 1 and errors == []
    assert text.splitlines()[1] == 'assistant called set_light({"on":true}) -> {"light": "on"}'

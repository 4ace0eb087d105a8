"""The tools the demo page runs for the assistant: the default world's light.

A model whose card names function tools (`omni.model_card`: the tools it was trained to
call) learned them under the system prompt that a session declaring exactly those tools
gets, so the page declares them when its tab connects and answers the calls that come,
as any client of OpenAI Realtime function calling does: once the reply that made a call
is done, a `function_call_output` item per call, then `response.create`, and the
assistant says what happened. `set_light` switches the page's light; with "the light
answers" unticked it reports that the light did not answer, an output the world's tool
can give (`omni.synth.tool_world`), so the spoken answer shows that the model read the
output. A function the page does not run gets an error output. A reply cut off by the
user still gets its outputs (the call was made), but no new reply talks over the user.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.exceptions import ConnectionClosed

from omni.synth.tool_world import LIGHT, ToolCase

CALL_DONE = "response.function_call_arguments.done"


def session_omni(session: dict[str, Any] | None) -> dict[str, Any]:
    """`session.omni` of a server's session, the protocol's extension ({} where absent)."""
    omni = session.get("omni") if isinstance(session, dict) else None
    return omni if isinstance(omni, dict) else {}


def session_model(session: dict[str, Any] | None) -> dict[str, Any]:
    """`session.omni.model` of a server's session: the model's name and card ({} where absent)."""
    model = session_omni(session).get("model")
    return model if isinstance(model, dict) else {}


def card_tools(session: dict[str, Any] | None) -> list[dict]:
    """The function tools a server's model was trained to call (`session.omni.model.tools`)."""
    tools = session_model(session).get("tools")
    return [t for t in tools if isinstance(t, dict) and isinstance(t.get("name"), str)] if isinstance(tools, list) else []


def has_light(session: dict[str, Any] | None) -> bool:
    return any(t["name"] == LIGHT.name for t in card_tools(session))


class PageTools:
    """One tab's tools: the light's state, and the calls answered (call id -> (name,
    arguments, output)) for the transcript."""

    def __init__(self) -> None:
        self.light_on = False
        self.light_answers = True  # the page's checkbox
        self.answered: dict[str, tuple[str, str, str]] = {}
        self.task: asyncio.Task | None = None

    def run(self, name: str, arguments: str) -> str:
        """The output (JSON text) of one call."""
        if name != LIGHT.name:
            return json.dumps({"error": f"this page does not run {name}"})
        try:
            on = json.loads(arguments)["on"]
        except (ValueError, KeyError, TypeError):
            on = None
        if not isinstance(on, bool):  # the server checks calls against the schema: this is a guard only
            return json.dumps({"error": "set_light takes {\"on\": true | false}"})
        case = ToolCase("", on, self.light_answers)
        if case.ok:
            self.light_on = on
        return case.output

    def light(self) -> str:
        """The page's line about the light."""
        state = "**on**" if self.light_on else "off"
        return f"the light is {state}" + ("" if self.light_answers else " (and does not answer: calls fail)")

    def start(self, client) -> None:
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self.serve(client))

    async def serve(self, client) -> None:
        """Answer every call of the session until it closes."""
        i = 0
        while not client.closed.is_set():
            try:
                call = await client.wait_for(lambda e: e["type"] == CALL_DONE, timeout=3600, start=i)
                rid = call.get("response_id")
                done = await client.wait_for(
                    lambda e: e["type"] == "response.done" and e["response"]["id"] == rid, timeout=120, start=i)
            except (ConnectionError, TimeoutError):
                return
            end = next(k for k in range(i, len(client.events)) if client.events[k] is done)
            calls = [e for e in client.events[i:end] if e["type"] == CALL_DONE and e.get("response_id") == rid]
            i = end + 1
            try:
                for c in calls:
                    output = self.run(c["name"], c["arguments"])
                    self.answered[c["call_id"]] = (c["name"], c["arguments"], output)
                    await client.send({"type": "conversation.item.create", "item": {
                        "type": "function_call_output", "call_id": c["call_id"], "output": output}})
                if done["response"]["status"] == "completed":
                    await client.send({"type": "response.create"})
            except (ConnectionError, ConnectionClosed):  # the tab reconnects on its next action
                return

    def transcript_line(self, e: dict) -> str | None:
        """The transcript's line for a call event (`response.function_call_arguments.done`)."""
        if e.get("type") != CALL_DONE:
            return None
        got = self.answered.get(e.get("call_id", ""))
        tail = f" -> {got[2]}" if got else " (running...)"
        return f"assistant called {e.get('name')}({e.get('arguments')}){tail}"

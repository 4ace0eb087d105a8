"""Function calling in a session: `Calls`, the part of a session that handles tools.

Declaring: the tools in force (the session's, or a `response.create`'s own) are
written into the model's context as a system turn in LongCat-Flash's tool
format (omni/tool_calls.py) whenever they change; at the first `session.update`
they go into the system prompt itself, so they survive a context reset.
`tool_choice: "none"` declares no tools; `required` and a named function open
the reply with a call block, so the model must call (a named one: that one).

Calling: the engine hands over each tool-call block the model wrote (never
spoken). A block that is a valid call of a declared tool becomes a
`function_call` item, streamed as `response.output_item.added`,
`response.function_call_arguments.delta` / `.done`, `response.output_item.done`.
A block that is not (bad JSON, unknown tool, arguments that break the schema,
a choice it violates, or cut off) becomes an `error` event of type
`tool_call_error` naming the problem, and never a call (fail closed).

Results: a `function_call_output` item for a call of this conversation goes
into the context as a tool turn; `response.create` then lets the model go on.
An output for a call the conversation does not have gets `call_id_not_found`,
a second output for one call `call_already_answered`.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any, Callable

from omni.tool_calls import (NO_INSTRUCTIONS, NO_TOOLS, CallError, Tool, call_block, check_call, forced_opening,
                             tool_section)
from streaming.engine import EngineSlot
from streaming.engine_commands import Text
from streaming.metrics import Metrics
from streaming.protocol import ProtocolError
from streaming.protocol.events import ServerEvents, new_id

MAX_CALLS = 256  # calls remembered per session (the oldest are forgotten first)


def _tools(tools: list[dict]) -> list[Tool]:
    return [Tool.from_json(t) for t in tools]


def declared_key(tools: list[dict], choice: Any) -> str:
    """What the model is told: no tools under tool_choice "none"."""
    return json.dumps(tools if choice != "none" else [], sort_keys=True)


def system_prompt(instructions: str | None, tools: list[dict], choice: Any) -> str | None:
    """Instructions and the tool section, as the slot's system prompt."""
    section = tool_section(_tools(tools)) if choice != "none" else ""
    return "\n\n".join(x for x in (instructions, section) if x) or None


class Calls:
    """The tools the model was told about and the calls of one conversation."""

    def __init__(self, send: Callable[[dict], None], ev: ServerEvents, slot: EngineSlot, conv: Any,
                 metrics: Metrics) -> None:
        self.send, self.ev, self.slot, self.conv, self.metrics = send, ev, slot, conv, metrics
        self.calls: OrderedDict[str, str] = OrderedDict()  # call_id -> "pending" | "answered"
        self.declared = declared_key([], "auto")  # what the model was last told: no tools yet
        self.opened_with = self.declared  # the tools in the slot's system prompt (they survive a context reset)
        self.told = self.opened_told = ""  # the instructions in force for the model, and the system prompt's

    def opened(self, tools: list[dict], choice: Any, instructions: str | None = None) -> None:
        """The slot was opened with these tools and instructions in its system prompt."""
        self.declared = self.opened_with = declared_key(tools, choice)
        self.told = self.opened_told = instructions or ""

    def context_reset(self, tools: list[dict], choice: Any) -> None:
        """The model starts over with the system prompt's tools only: tell it again if they differ."""
        self.declared = self.opened_with
        self.told = self.opened_told
        self.declare(tools, choice)

    def tell(self, instructions: str | None) -> None:
        """The instructions in force for what the model says next (the session's, or a
        `response.create`'s own for that reply): a system turn when they changed."""
        text = instructions or ""
        if text == self.told:
            return
        self.slot.submit(Text("system", text or NO_INSTRUCTIONS))
        self.told = text

    def forget(self, call_id: str | None) -> None:
        """A deleted call can no longer be answered."""
        self.calls.pop(call_id, None)

    def tool_context(self, r: Any, tools: list[dict], choice: Any) -> str:
        """Give reply `r` its tools, tell the model if they changed; the reply's forced opening."""
        r.tools = {t.name: t for t in _tools(tools)}
        r.tool_choice = choice
        self.declare(tools, choice)
        return forced_opening(choice) if tools else ""

    def declare(self, tools: list[dict], choice: Any) -> None:
        key = declared_key(tools, choice)
        if key == self.declared:
            return
        shown = tools if choice != "none" else []
        self.slot.submit(Text("system", tool_section(_tools(shown)) or NO_TOOLS))
        self.declared = key

    def _remember_call(self, call_id: str) -> None:
        self.calls[call_id] = "pending"
        while len(self.calls) > MAX_CALLS:
            self.calls.popitem(last=False)

    # ---- the model's calls ---------------------------------------------------
    def on_block(self, r: Any, e: Any) -> None:
        r.blocks += 1
        text = e.info.get("text", "")
        if e.info.get("complete"):
            res = check_call(text, r.tools, r.tool_choice)
        else:
            res = CallError("tool_call_incomplete", "the reply ended inside a tool call (no closing tag)")
        if isinstance(res, CallError):
            self.metrics.inc("omni_tool_call_errors_total")
            self.send(self.ev.make("error", error={
                "type": "tool_call_error", "code": res.code, "message": res.message, "param": res.param,
                "event_id": None, "response_id": r.id, "name": res.name, "text": text[:2000]}))
            return
        item_id, call_id, index = new_id("item"), new_id("call"), len(r.outputs)
        added = ServerEvents.function_call_item(item_id, call_id, res.name, "", "in_progress")
        done = ServerEvents.function_call_item(item_id, call_id, res.name, res.arguments, "completed")
        base = dict(response_id=r.id, item_id=item_id, output_index=index, call_id=call_id)
        r.outputs.append(done)
        self.send(self.ev.make("response.output_item.added", response_id=r.id, output_index=index, item=added))
        self.send(self.ev.make("conversation.item.added", item=added, previous_item_id=None))
        # the arguments go out once the block is complete and checked: a call is never announced unchecked
        self.send(self.ev.make("response.function_call_arguments.delta", delta=res.arguments, **base))
        self.send(self.ev.make("response.function_call_arguments.done", arguments=res.arguments, name=res.name,
                               **base))
        self.send(self.ev.make("response.output_item.done", response_id=r.id, output_index=index, item=done))
        self.send(self.ev.make("conversation.item.done", item=done, previous_item_id=None))
        self.conv.add(done)
        self._remember_call(call_id)
        self.metrics.inc("omni_tool_calls_total")

    # ---- items from the client ---------------------------------------------
    def output_item(self, item: dict) -> dict:
        """A tool's result: into the context as a tool turn. Returns the item to announce."""
        call_id = item["call_id"]
        state = self.calls.get(call_id)
        if state is None:
            raise ProtocolError("call_id_not_found", f"no function call {call_id!r} in this conversation",
                                param="item.call_id")
        if state == "answered":
            raise ProtocolError("call_already_answered", f"function call {call_id!r} already has its output",
                                param="item.call_id")
        self.slot.submit(Text("tool", item["output"]))
        self.calls[call_id] = "answered"
        return {"id": item.get("id") or new_id("item"), "object": "realtime.item", "type": "function_call_output",
                "status": "completed", "call_id": call_id, "output": item["output"]}

    def call_item(self, item: dict) -> dict:
        """A call the client writes into the conversation (e.g. replayed history)."""
        try:
            args = json.loads(item["arguments"])
        except ValueError as e:
            raise ProtocolError("invalid_value", f"arguments must be a JSON object ({e})",
                                param="item.arguments") from None
        if not isinstance(args, dict):
            raise ProtocolError("invalid_value", "arguments must be a JSON object", param="item.arguments")
        if item["call_id"] in self.calls:
            raise ProtocolError("invalid_value", f"call_id {item['call_id']!r} is already used", param="item.call_id")
        self.slot.submit(Text("assistant", call_block(item["name"], args)))
        self._remember_call(item["call_id"])
        return ServerEvents.function_call_item(item.get("id") or new_id("item"), item["call_id"], item["name"],
                                               item["arguments"], "completed")

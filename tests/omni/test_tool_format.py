"""LongCat tool calls on the model side: the tool section and call / result
rendering, the fail-closed check of a call against its tool's schema, and the
incremental splitter that keeps tool calls and thinking out of speech."""

from __future__ import annotations

import json

import pytest

from omni.reply_stream import MAX_BLOCK_CHARS, Piece, ReplyStream
from omni.tool_calls import (CallError, SchemaError, Tool, ToolCall, call_block, check_call, check_schema,
                             forced_opening, tool_response, tool_section)

LAMP = Tool("set_lamp", "Turn the lamp on or off.", {
    "type": "object", "properties": {"on": {"type": "boolean"}, "level": {"type": "integer", "minimum": 0,
                                                                          "maximum": 10}},
    "required": ["on"], "additionalProperties": False})
TOOLS = {"set_lamp": LAMP}


def test_tool_section_has_the_longcat_structure_and_calls_round_trip():
    text = tool_section([LAMP])
    assert text.startswith("# Tools\nYou have access to the following tools:\n\n## Tool namespace: function\n\n")
    assert "### Tool name: set_lamp\nDescription: Turn the lamp on or off.\n\nInputSchema:\n{" in text
    assert '<longcat_tool_call>{"name": <function-name>, "arguments": <args-dict>}</longcat_tool_call>' in text
    assert tool_section([]) == ""
    block = call_block("set_lamp", '{"on": true}')
    assert block == '<longcat_tool_call>{"name": "set_lamp", "arguments": {"on": true}}</longcat_tool_call>'
    inner = block[len("<longcat_tool_call>"):-len("</longcat_tool_call>")]
    assert check_call(inner, TOOLS) == ToolCall("set_lamp", '{"on":true}')
    assert tool_response('{"ok": 1}') == '<longcat_tool_response>{"ok": 1}</longcat_tool_response>'
    assert forced_opening("required") == "<longcat_tool_call>"
    assert forced_opening({"type": "function", "name": "set_lamp"}) == '<longcat_tool_call>{"name": "set_lamp", "arguments": '
    assert forced_opening("auto") == forced_opening("none") == ""


@pytest.mark.parametrize("block,code,param", [
    ('{"name": "set_lamp", "arguments": {"on": tru', "tool_call_invalid_json", None),
    ('["set_lamp"]', "tool_call_invalid_json", None),
    ('{"name": "set_lamp", "arguments": "{\\"on\\": true}"}', "tool_call_invalid_json", None),
    ('{"name": "open_door", "arguments": {}}', "tool_call_unknown_function", None),
    ('{"name": "set_lamp", "arguments": {}}', "tool_call_invalid_arguments", "arguments.on"),
    ('{"name": "set_lamp", "arguments": {"on": 1}}', "tool_call_invalid_arguments", "arguments.on"),
    ('{"name": "set_lamp", "arguments": {"on": true, "level": 11}}', "tool_call_invalid_arguments", "arguments.level"),
    ('{"name": "set_lamp", "arguments": {"on": true, "level": 2.5}}', "tool_call_invalid_arguments", "arguments.level"),
    ('{"name": "set_lamp", "arguments": {"on": true, "hue": 3}}', "tool_call_invalid_arguments", "arguments.hue"),
])
def test_bad_calls_are_errors_never_calls(block, code, param):
    res = check_call(block, TOOLS)
    assert isinstance(res, CallError) and res.code == code and res.param == param


def test_tool_choice_is_enforced():
    ok = '{"name": "set_lamp", "arguments": {"on": false, "level": 3}}'
    assert check_call(ok, TOOLS, {"type": "function", "name": "set_lamp"}) == ToolCall("set_lamp", '{"on":false,"level":3}')
    assert check_call(ok, TOOLS, "none").code == "tool_call_not_allowed"
    assert check_call(ok, TOOLS, {"type": "function", "name": "other"}).code == "tool_call_not_allowed"


def test_schema_keywords_refs_and_combinators():
    schema = {"type": "object", "$defs": {"Color": {"type": "string", "enum": ["red", "blue"]}},
              "properties": {"color": {"$ref": "#/$defs/Color"}, "tags": {"type": "array", "items": {"type": "string"},
                                                                         "maxItems": 2, "uniqueItems": True},
                             "n": {"anyOf": [{"type": "integer"}, {"type": "null"}]}, "title": {"type": "string"}},
              "title": "args"}
    check_schema(schema)
    tools = {"paint": Tool("paint", "", schema)}
    good = {"color": "red", "tags": ["a", "b"], "n": None}
    assert isinstance(check_call(json.dumps({"name": "paint", "arguments": good}), tools), ToolCall)
    for bad, where in (({"color": "green"}, "arguments.color"), ({"tags": ["a", "a"]}, "arguments.tags"),
                       ({"tags": [1]}, "arguments.tags[0]"), ({"n": "x"}, "arguments.n")):
        res = check_call(json.dumps({"name": "paint", "arguments": bad}), tools)
        assert isinstance(res, CallError) and res.param == where, (bad, res)
    with pytest.raises(SchemaError) as e:
        check_schema({"type": "object", "properties": {"x": {"type": "string", "not": {"const": "a"}}}})
    assert e.value.path == "parameters.properties.x.not"
    with pytest.raises(SchemaError):
        check_schema({"$ref": "https://example.com/schema.json"})


def split_everywhere(text: str):
    """Every way of cutting `text` into two or three pieces."""
    for i in range(len(text) + 1):
        for j in range(i, len(text) + 1, 3):
            yield [text[:i], text[i:j], text[j:]]


def run_stream(pieces: list[str]) -> list[Piece]:
    s, out = ReplyStream(), []
    for p in pieces:
        out += s.feed(p)
    out += s.finish()
    merged: list[Piece] = []
    for p in out:  # adjacent text pieces are one text
        if merged and p.kind == "text" == merged[-1].kind:
            merged[-1] = Piece("text", merged[-1].text + p.text)
        elif p.kind != "text" or p.text:
            merged.append(p)
    return merged


def test_reply_stream_splits_calls_and_thinking_wherever_the_tags_are_cut():
    text = ('<longcat_think>the user wants light</longcat_think>Okay, <lamp> on. <longcat_tool_call>{"name": "set_lamp", '
            '"arguments": {"on": true}}</longcat_tool_call><longcat_tool_call>{"name": "x", "arguments": {}}'
            '</longcat_tool_call>Done <')
    want = [Piece("think", "the user wants light"), Piece("text", "Okay, <lamp> on. "),
            Piece("call", '{"name": "set_lamp", "arguments": {"on": true}}'), Piece("call", '{"name": "x", "arguments": {}}'),
            Piece("text", "Done <")]
    for pieces in split_everywhere(text):
        assert run_stream(pieces) == want, pieces


def test_reply_stream_holds_only_possible_tags_and_cuts_unclosed_blocks():
    s = ReplyStream()
    assert s.feed("a <longcat_t") == [Piece("text", "a ")] and s.hiding and not s.in_block
    assert s.feed("ea") == [Piece("text", "<longcat_tea")] and not s.hiding
    assert s.feed("<longcat_tool_call>{") == [] and s.in_block
    assert s.finish() == [Piece("call", "{", complete=False)]
    long = ReplyStream()
    out = long.feed("<longcat_think>" + "x" * (MAX_BLOCK_CHARS + 10) + "</longcat_think>ok")
    assert out[0].kind == "think" and not out[0].complete and len(out[0].text) == MAX_BLOCK_CHARS
    assert out[1] == Piece("text", "ok")

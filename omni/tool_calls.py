"""Function tools in LongCat-Flash's format: declaring them, writing calls and
results, and checking a call before anyone acts on it.

The model calls a tool by writing a block into its reply (several blocks may
follow one another, one call each):

    <longcat_tool_call>{"name": "set_lamp", "arguments": {"on": true}}</longcat_tool_call>

Declaration. `tool_section` renders the tools for the system prompt with the
structure of LongCat-Flash-Chat's chat template: a `# Tools` heading, a
`## Tool namespace: function` block, per tool its name, description and JSON
input schema, and a note on the call format. The official template's exact
sentences were not at hand when this was written, so the wording below is this
project's own, fixed by tests (tests/omni/test_tool_format.py); a checkpoint
trained on the official wording should change only the constants here:

    # Tools
    You have access to the following tools:

    ## Tool namespace: function

    ### Tool name: set_lamp
    Description: Turn the lamp on or off.

    InputSchema:
    {"type": "object", "properties": {"on": {"type": "boolean"}}, "required": ["on"]}

    **Note**: to call a tool, write <longcat_tool_call>{"name": <function-name>, "arguments": <args-dict>}</longcat_tool_call>.
    To call several tools, write one block per call, one after another.

A result goes back as a user turn whose text is
`<longcat_tool_response>{output}</longcat_tool_response>` (`tool_response`).

Checking (`check_call`) fails closed: a block that is not a JSON object with a
string `name` and an object `arguments`, names no declared tool, breaks the
tool choice, or has arguments that do not match the tool's schema is a
`CallError`, never a call. `check_schema` refuses, up front, a schema that uses
a keyword this checker does not implement (so no call is ever passed unchecked).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

CALL_OPEN, CALL_CLOSE = "<longcat_tool_call>", "</longcat_tool_call>"
RESPONSE_OPEN, RESPONSE_CLOSE = "<longcat_tool_response>", "</longcat_tool_response>"
TOOL_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")

SECTION_HEAD = "# Tools\nYou have access to the following tools:\n\n## Tool namespace: function\n\n"
NO_TOOLS = "# Tools\nNo tools are available now."  # declared when tools are withdrawn after being offered
NO_INSTRUCTIONS = "No special instructions apply now."  # when instructions given earlier are withdrawn
SECTION_NOTE = (
    "**Note**: to call a tool, write " + CALL_OPEN + '{"name": <function-name>, "arguments": <args-dict>}'
    + CALL_CLOSE + ".\nTo call several tools, write one block per call, one after another."
)

# keywords that only annotate a schema (nothing to check)
ANNOTATIONS = {"title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated",
               "readOnly", "writeOnly", "format", "$defs", "definitions", "strict"}
CHECKED = {"type", "enum", "const", "properties", "required", "additionalProperties", "items", "minItems",
           "maxItems", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength",
           "pattern", "anyOf", "oneOf", "allOf", "$ref", "uniqueItems", "multipleOf"}
JSON_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


@dataclass(frozen=True)
class Tool:
    """A function the client offers: name, description, JSON-schema parameters."""

    name: str
    description: str = ""
    parameters: dict = field(default_factory=lambda: {"type": "object", "properties": {}})

    def to_json(self) -> dict:
        return {"type": "function", "name": self.name, "description": self.description,
                "parameters": self.parameters}

    @staticmethod
    def from_json(tool: dict) -> "Tool":
        """A declared function tool ({"name", "description"?, "parameters"}, already validated)."""
        return Tool(tool["name"], tool.get("description") or "", tool["parameters"])


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: str  # canonical JSON text of the arguments object


@dataclass(frozen=True)
class CallError:
    """Why a block is not a call. code: tool_call_invalid_json | tool_call_unknown_function |
    tool_call_not_allowed | tool_call_invalid_arguments | tool_call_incomplete."""

    code: str
    message: str
    name: str | None = None
    param: str | None = None


class SchemaError(ValueError):
    def __init__(self, message: str, path: str) -> None:
        super().__init__(message)
        self.path = path


# ------------------------------------------------------------------ rendering
def tool_section(tools: list[Tool]) -> str:
    """The tool declaration of the system prompt (empty for no tools)."""
    if not tools:
        return ""
    body = "".join(
        f"### Tool name: {t.name}\nDescription: {t.description}\n\nInputSchema:\n"
        f"{json.dumps(t.parameters, ensure_ascii=False, sort_keys=True)}\n\n" for t in tools)
    return SECTION_HEAD + body + SECTION_NOTE


def call_block(name: str, arguments: Any) -> str:
    """How a call is written (a client-created function_call item goes into the context so)."""
    args = json.loads(arguments) if isinstance(arguments, str) else arguments
    return CALL_OPEN + json.dumps({"name": name, "arguments": args}, ensure_ascii=False) + CALL_CLOSE


def tool_response(output: str) -> str:
    """The text of the user turn that gives the model a tool's result."""
    return RESPONSE_OPEN + output + RESPONSE_CLOSE


def forced_opening(tool_choice: Any) -> str:
    """What the reply is opened with so that the model must call a tool: `required`
    opens a call block, a named function opens a call of that function; else ""."""
    if tool_choice == "required":
        return CALL_OPEN
    if isinstance(tool_choice, dict) and tool_choice.get("type") == "function":
        return CALL_OPEN + '{"name": ' + json.dumps(tool_choice["name"]) + ', "arguments": '
    return ""


# ------------------------------------------------------------------ checking
def check_call(block: str, tools: dict[str, Tool], tool_choice: Any = "auto") -> ToolCall | CallError:
    """The call a complete block's text makes, or why it is none (fail closed)."""
    try:
        obj = json.loads(block)
    except (ValueError, RecursionError) as e:
        return CallError("tool_call_invalid_json", f"the tool call is not valid JSON ({e})")
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str) or not isinstance(obj.get("arguments"), dict):
        return CallError("tool_call_invalid_json",
                         'a tool call must be {"name": <string>, "arguments": <object>}')
    name = obj["name"]
    if tool_choice == "none":
        return CallError("tool_call_not_allowed", f"tool_choice is none, but the model called {name!r}", name)
    if isinstance(tool_choice, dict) and tool_choice.get("name") != name:
        return CallError("tool_call_not_allowed",
                         f"tool_choice names {tool_choice.get('name')!r}, but the model called {name!r}", name)
    tool = tools.get(name)
    if tool is None:
        return CallError("tool_call_unknown_function", f"the model called {name!r}, which is not a declared tool",
                         name)
    try:
        validate(obj["arguments"], tool.parameters, tool.parameters, "arguments")
    except SchemaError as e:
        return CallError("tool_call_invalid_arguments", f"arguments of {name!r}: {e}", name, e.path)
    except RecursionError:  # a schema whose $refs go round in circles
        return CallError("tool_call_invalid_arguments", f"the schema of {name!r} nests too deeply to check", name)
    return ToolCall(name, json.dumps(obj["arguments"], ensure_ascii=False, separators=(",", ":")))


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _regex(v: Any) -> bool:
    try:
        return isinstance(v, str) and re.compile(v) is not None
    except re.error:
        return False


# what the value of each checked keyword must be (so checking a call can never fail on the schema itself)
KEYWORD_VALUES = {
    "type": (lambda v: (isinstance(v, str) and v in TYPE_NAMES) or (
        isinstance(v, list) and v and all(isinstance(t, str) and t in TYPE_NAMES for t in v)), "a JSON type name"),
    "enum": (lambda v: isinstance(v, list), "an array"),
    "const": (lambda v: True, "any value"),
    "properties": (lambda v: isinstance(v, dict), "an object"),
    "required": (lambda v: isinstance(v, list) and all(isinstance(k, str) for k in v), "an array of strings"),
    "additionalProperties": (lambda v: isinstance(v, (bool, dict)), "a boolean or a schema"),
    "items": (lambda v: isinstance(v, (bool, dict)), "a schema"),
    "minItems": (_count, "a non-negative integer"), "maxItems": (_count, "a non-negative integer"),
    "minLength": (_count, "a non-negative integer"), "maxLength": (_count, "a non-negative integer"),
    "minimum": (_number, "a number"), "maximum": (_number, "a number"),
    "exclusiveMinimum": (_number, "a number"), "exclusiveMaximum": (_number, "a number"),
    "multipleOf": (lambda v: _number(v) and v > 0, "a positive number"),
    "pattern": (_regex, "a regular expression"),
    "uniqueItems": (lambda v: isinstance(v, bool), "a boolean"),
    "anyOf": (lambda v: isinstance(v, list) and v, "a non-empty array of schemas"),
    "oneOf": (lambda v: isinstance(v, list) and v, "a non-empty array of schemas"),
    "allOf": (lambda v: isinstance(v, list) and v, "a non-empty array of schemas"),
    "$ref": (lambda v: isinstance(v, str), "a string"),
}
TYPE_NAMES = {"object", "array", "string", "number", "integer", "boolean", "null"}


def check_schema(schema: Any, path: str = "parameters", root: Any = None) -> None:
    """Raise SchemaError if `schema` uses a keyword `validate` does not implement, or
    gives a checked keyword a value of the wrong kind."""
    root = schema if root is None else root
    if isinstance(schema, bool):
        return
    if not isinstance(schema, dict):
        raise SchemaError(f"{path} must be a JSON schema object", path)
    for key, value in schema.items():
        if key in KEYWORD_VALUES and not KEYWORD_VALUES[key][0](value):
            raise SchemaError(f"{path}.{key} must be {KEYWORD_VALUES[key][1]}", f"{path}.{key}")
        if key in ANNOTATIONS:
            if key in ("$defs", "definitions") and isinstance(value, dict):
                for k, sub in value.items():
                    check_schema(sub, f"{path}.{key}.{k}", root)
            continue
        if key not in CHECKED:
            raise SchemaError(f"{path} uses the JSON-schema keyword {key!r}, which this server cannot check; "
                              f"supported: {', '.join(sorted(CHECKED))}", f"{path}.{key}")
        if key == "properties":
            for k, sub in value.items():
                check_schema(sub, f"{path}.properties.{k}", root)
        elif key in ("items", "additionalProperties"):
            check_schema(value, f"{path}.{key}", root)
        elif key in ("anyOf", "oneOf", "allOf"):
            for i, sub in enumerate(value):
                check_schema(sub, f"{path}.{key}[{i}]", root)
        elif key == "$ref":
            m = re.match(r"^#/(\$defs|definitions)/([^/]+)$", value)
            group = root.get(m.group(1)) if m and isinstance(root, dict) else None
            if not (isinstance(group, dict) and m.group(2) in group):
                raise SchemaError(f"{path}.$ref must point into the schema's own $defs, got {value[:80]!r}",
                                  f"{path}.$ref")


def _is_type(value: Any, kind: str) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool) or (
            isinstance(value, float) and math.isfinite(value) and value == int(value))
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    want = JSON_TYPES.get(kind)
    return want is not None and isinstance(value, want) and not (want is not bool and isinstance(value, bool))


def validate(value: Any, schema: Any, root: dict, path: str) -> None:
    """Raise SchemaError (naming the path) unless `value` matches `schema` (the keywords of CHECKED)."""
    if schema is True or schema == {}:
        return
    if schema is False:
        raise SchemaError(f"{path} is not allowed", path)
    if "$ref" in schema:
        group, name = schema["$ref"].split("/")[1:]
        target = (root.get(group) or {}).get(name)
        if target is None:
            raise SchemaError(f"{path}: $ref {schema['$ref']} points nowhere", path)
        validate(value, target, root, path)
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else list(kinds)
        if not any(_is_type(value, k) for k in kinds):
            raise SchemaError(f"{path} must be {' or '.join(kinds)}, got {_json_name(value)}", path)
    if "enum" in schema and not any(_same(value, v) for v in schema["enum"]):
        raise SchemaError(f"{path} must be one of {json.dumps(schema['enum'])}", path)
    if "const" in schema and not _same(value, schema["const"]):
        raise SchemaError(f"{path} must be {json.dumps(schema['const'])}", path)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        _check_number(value, schema, path)
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", math.inf):
            raise SchemaError(f"{path} has {len(value)} characters, outside the allowed length", path)
        if "pattern" in schema and re.search(schema["pattern"], value) is None:
            raise SchemaError(f"{path} does not match the pattern {schema['pattern']!r}", path)
    if isinstance(value, list):
        _check_array(value, schema, root, path)
    if isinstance(value, dict):
        _check_object(value, schema, root, path)
    for sub in schema.get("allOf", []):
        validate(value, sub, root, path)
    if "anyOf" in schema and not any(_matches(value, s, root, path) for s in schema["anyOf"]):
        raise SchemaError(f"{path} matches none of the allowed forms (anyOf)", path)
    if "oneOf" in schema and sum(_matches(value, s, root, path) for s in schema["oneOf"]) != 1:
        raise SchemaError(f"{path} must match exactly one allowed form (oneOf)", path)


def _check_number(value: float, schema: dict, path: str) -> None:
    lo, hi = schema.get("minimum", -math.inf), schema.get("maximum", math.inf)
    if value < lo or value > hi:
        raise SchemaError(f"{path} = {value} is outside [{lo}, {hi}]", path)
    if "exclusiveMinimum" in schema and not value > schema["exclusiveMinimum"]:
        raise SchemaError(f"{path} must be above {schema['exclusiveMinimum']}", path)
    if "exclusiveMaximum" in schema and not value < schema["exclusiveMaximum"]:
        raise SchemaError(f"{path} must be below {schema['exclusiveMaximum']}", path)
    step = schema.get("multipleOf")
    if step and abs(value / step - round(value / step)) > 1e-9:
        raise SchemaError(f"{path} must be a multiple of {step}", path)


def _check_array(value: list, schema: dict, root: dict, path: str) -> None:
    if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", math.inf):
        raise SchemaError(f"{path} has {len(value)} items, outside the allowed count", path)
    if schema.get("uniqueItems") and len({json.dumps(v, sort_keys=True) for v in value}) != len(value):
        raise SchemaError(f"{path} must not repeat items", path)
    if isinstance(schema.get("items"), (dict, bool)):
        for i, v in enumerate(value):
            validate(v, schema["items"], root, f"{path}[{i}]")


def _check_object(value: dict, schema: dict, root: dict, path: str) -> None:
    for key in schema.get("required", []):
        if key not in value:
            raise SchemaError(f"{path}.{key} is required", f"{path}.{key}")
    props = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    for key, v in value.items():
        if key in props:
            validate(v, props[key], root, f"{path}.{key}")
        elif extra is False:
            raise SchemaError(f"{path}.{key} is not a parameter of this tool", f"{path}.{key}")
        elif isinstance(extra, dict):
            validate(v, extra, root, f"{path}.{key}")


def _matches(value: Any, schema: Any, root: dict, path: str) -> bool:
    try:
        validate(value, schema, root, path)
        return True
    except SchemaError:
        return False


def _same(a: Any, b: Any) -> bool:
    """JSON equality: true is not 1."""
    return type(a) is type(b) and a == b or (
        isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool)
        and not isinstance(b, bool) and a == b)


def _json_name(value: Any) -> str:
    for name, kind in (("a boolean", bool), ("an integer", int), ("a number", float), ("a string", str),
                       ("an array", list), ("an object", dict)):
        if isinstance(value, kind):
            return name
    return "null"

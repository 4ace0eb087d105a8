"""A model directory's card: what the model knows and what to ask it.

`DIR/card.json` (optional) holds {"about": str, "ask": [str, ...], "tools": [...]}.
`omni serve` reports it to every session (`session.omni.model.about` / `.ask` / `.tools`)
and the demo page shows it, so a newcomer learns what the model can talk about before
speaking to it. `tools` (optional) are the function tools the model was trained to call,
as a client declares them in `session.update` ({"type": "function", "name", "description",
"parameters"}): a client that declares exactly these gives the model the system prompt it
learned them under (the demo page does, and runs the default world's `set_light`).
A card is advice, not part of the model: a missing one is fine, a malformed one is
reported and ignored (the model still serves).
"""

from __future__ import annotations

import json
import logging
import os

from omni.tool_calls import TOOL_NAME, SchemaError, check_schema

CARD = "card.json"
MAX_ABOUT = 600
MAX_ASK = 8
MAX_QUESTION = 100
MAX_TOOLS = 8

log = logging.getLogger(__name__)


class CardError(ValueError):
    pass


def parse_card(data: object) -> dict:
    """A validated card {"about": str, "ask": [str], and "tools" where it has them} from parsed
    JSON, or CardError."""
    if not isinstance(data, dict):
        raise CardError("a card is a JSON object")
    unknown = set(data) - {"about", "ask", "tools"}
    if unknown:
        raise CardError(f"unknown card fields {sorted(unknown)} (known: about, ask, tools)")
    about = data.get("about", "")
    ask = data.get("ask", [])
    if not isinstance(about, str) or len(about) > MAX_ABOUT:
        raise CardError(f"'about' must be a string of at most {MAX_ABOUT} characters")
    if not isinstance(ask, list) or len(ask) > MAX_ASK or not all(
            isinstance(q, str) and 0 < len(q) <= MAX_QUESTION for q in ask):
        raise CardError(f"'ask' must be a list of at most {MAX_ASK} questions of 1-{MAX_QUESTION} characters")
    card = {"about": about.strip(), "ask": [q.strip() for q in ask]}
    if "tools" in data:
        card["tools"] = parse_tools(data["tools"])
    return card


def parse_tools(tools: object) -> list[dict]:
    """The card's function tools, each {"type": "function", "name", "description", "parameters"}
    as `session.update` takes it (a JSON-schema object for the parameters), or CardError."""
    if not isinstance(tools, list) or len(tools) > MAX_TOOLS:
        raise CardError(f"'tools' must be a list of at most {MAX_TOOLS} function tools")
    out = []
    for t in tools:
        ok = (isinstance(t, dict) and set(t) <= {"type", "name", "description", "parameters"}
              and t.get("type") == "function" and isinstance(t.get("name"), str) and TOOL_NAME.match(t["name"])
              and isinstance(t.get("description", ""), str) and isinstance(t.get("parameters"), dict)
              and t["parameters"].get("type") == "object")
        if not ok:
            raise CardError("each of 'tools' must be {\"type\": \"function\", \"name\": NAME, \"description\": str, "
                            "\"parameters\": {\"type\": \"object\", ...}} with NAME of letters, digits, _, . or -")
        try:  # the parameters a session may declare (`session.update` checks them the same way)
            check_schema(t["parameters"])
        except SchemaError as e:
            raise CardError(f"'tools': {t['name']}.{e.path}: {e}") from None
        out.append({"type": "function", "name": t["name"], "description": t.get("description", ""),
                    "parameters": t["parameters"]})
    if len({t["name"] for t in out}) != len(out):
        raise CardError("'tools' names a function twice")
    return out


def read_card(model_dir: str | os.PathLike | None) -> dict | None:
    """The card of a model directory; None when it has none or it is malformed (logged)."""
    if not model_dir:
        return None
    path = os.path.join(model_dir, CARD)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            return parse_card(json.load(fh))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, CardError) as e:
        log.warning("ignoring %s: %s", path, e)
        return None

"""JSON parsing that a hostile client cannot turn into a server crash.

`json.loads` alone lets one websocket message raise RecursionError (thousands
of nested brackets) or ValueError (an integer of more than 4300 digits), or
hand the server values it cannot use or send back: NaN and infinities (`NaN`,
`Infinity`, `1e999`), and strings holding a lone UTF-16 surrogate (`"\\ud800"`),
which cannot be encoded as UTF-8 when an event that echoes them is sent.
`loads_bounded` turns each of these into a ProtocolError naming the problem
(and, for a bad value, its field), or returns a value that is at most
`max_depth` containers deep, with finite numbers and valid Unicode only.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import numpy as np

from streaming.protocol.errors import ProtocolError

MAX_DEPTH = 32  # real events nest at most 5 containers (session.update); tool schemas a few more

_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')  # a JSON string literal, escapes included
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def nesting_depth(text: str) -> int:
    """The deepest bracket nesting of `text` outside string literals, found
    without recursion (strings removed, then a running sum of +1/-1). For every
    prefix of `text` that is valid JSON it equals the parser's depth, which is
    all that matters: the parser stops at the first syntax error."""
    # UTF-8 continuation bytes are never ASCII, so bracket bytes are brackets
    c = np.frombuffer(_STRING.sub("", text).encode("utf-8", "replace"), dtype=np.uint8)
    steps = ((c == ord("[")) | (c == ord("{"))).astype(np.int8) - ((c == ord("]")) | (c == ord("}")))
    return max(0, int(np.cumsum(steps, dtype=np.int32).max())) if len(steps) else 0


class _NonFinite:
    """Stands in for NaN / Infinity / an overflowing float while parsing, so that
    the field holding it can be named afterwards."""

    def __init__(self, literal: str) -> None:
        self.literal = literal


def first_bad_value(value: Any, path: str = "") -> tuple[str, str] | None:
    """(path, problem) of the first non-finite number or unencodable string, or None."""
    if isinstance(value, _NonFinite):
        return path, f"must be a finite number, got {value.literal}"
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path, "holds a lone UTF-16 surrogate (not valid Unicode)"
        return None
    if isinstance(value, dict):
        for k, v in value.items():
            sub = f"{path}.{k}" if path else str(k)
            bad = first_bad_value(k, path or "(key)") or first_bad_value(v, sub)
            if bad:
                return bad
    elif isinstance(value, list):
        for i, v in enumerate(value):
            bad = first_bad_value(v, f"{path}[{i}]")
            if bad:
                return bad
    return None


def loads_bounded(text: str, max_depth: int = MAX_DEPTH) -> Any:
    """json.loads for untrusted text; every failure is a ProtocolError."""
    # counting the openers is cheap; only when there are enough of them can it be too deep
    depth = nesting_depth(text) if text.count("[") + text.count("{") > max_depth else 0
    if depth > max_depth:
        raise ProtocolError("nesting_too_deep", f"message nests {depth} levels of arrays/objects; "
                            f"at most {max_depth} are allowed")
    flagged: list[str] = []

    def non_finite(s: str) -> _NonFinite:
        flagged.append(s)
        return _NonFinite(s)

    def parse_float(s: str) -> Any:
        v = float(s)
        return v if math.isfinite(v) else non_finite(s)

    try:
        obj = json.loads(text, parse_float=parse_float, parse_constant=non_finite)
    except json.JSONDecodeError as e:
        raise ProtocolError("invalid_json", f"message is not valid JSON: {e.msg} at position {e.pos}") from None
    except RecursionError:  # the depth scan makes this unreachable; it must never end a session
        raise ProtocolError("nesting_too_deep", "message nests too deeply") from None
    except ValueError as e:  # e.g. an integer literal of more than 4300 digits
        raise ProtocolError("invalid_json", f"message is not valid JSON: {e}") from None
    # the walk runs only when the parse saw a non-finite number or the text a surrogate escape
    if flagged or _SURROGATE_ESCAPE.search(text):
        bad = first_bad_value(obj)
        if bad:
            path, problem = bad
            event_id = obj.get("event_id") if isinstance(obj, dict) else None
            raise ProtocolError("invalid_value", f"{path or 'the message'} {problem}", param=path or None,
                                event_id=event_id if isinstance(event_id, str) and path != "event_id" else None)
    return obj

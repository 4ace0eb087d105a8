"""A small declarative schema checker for client events.

A schema is a tree of specs (`Obj`, `List`, `Str`, `Int`, `Num`, `Bool`,
`Null`, `Enum`, `Either`, `Tagged`, `Anything`); `spec.check(value, path)` raises a
ProtocolError naming the field (`param`, e.g. "session.audio.input") and what
was wrong. Codes: `missing_field` (a required field is absent),
`invalid_type` (wrong JSON type), `invalid_value` (right type, but out of
range, not among the allowed values, or too long), and the code a `Tagged` spec
gives a kind the API defines but this server does not support (e.g.
`unsupported_item_type`, naming the kind).

Objects accept fields they do not list (OpenAI clients send fields this server
ignores, like `tracing`); those are never read, so they cannot hurt.
The schemas themselves are in schemas.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from streaming.protocol.errors import ProtocolError

JSON_TYPE = {str: "a string", int: "an integer", float: "a number", bool: "a boolean", type(None): "null",
             dict: "an object", list: "an array"}


def json_type(value: Any) -> str:
    return JSON_TYPE.get(type(value), type(value).__name__)


def _num(x: float) -> str:
    return str(int(x)) if math.isfinite(x) and x == int(x) else f"{x:g}"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class Spec:
    what = "a value"  # for messages: "<param> must be <what>"

    def check(self, value: Any, path: str) -> None:
        raise NotImplementedError

    def type_error(self, value: Any, path: str) -> ProtocolError:
        return ProtocolError("invalid_type", f"{path} must be {self.what}, got {json_type(value)}", param=path)

    def value_error(self, path: str, message: str) -> ProtocolError:
        return ProtocolError("invalid_value", f"{path} {message}", param=path)


class Anything(Spec):
    """Any JSON value (a field the server ignores, or checks itself)."""
    what = "any value"

    def check(self, value: Any, path: str) -> None:
        return None


class Null(Spec):
    what = "null"

    def check(self, value: Any, path: str) -> None:
        if value is not None:
            raise self.type_error(value, path)


class Bool(Spec):
    what = "true or false"

    def check(self, value: Any, path: str) -> None:
        if not isinstance(value, bool):
            raise self.type_error(value, path)


@dataclass
class Str(Spec):
    max_len: int | None = 4096  # None: bounded by the message size only (base64 payloads)

    what = "a string"

    def check(self, value: Any, path: str) -> None:
        if not isinstance(value, str):
            raise self.type_error(value, path)
        if self.max_len is not None and len(value) > self.max_len:
            raise self.value_error(path, f"is {len(value)} characters long; at most {self.max_len} are allowed")


@dataclass
class Num(Spec):
    """A finite number in [lo, hi] (JSON integers and decimals alike; never a boolean)."""
    lo: float = -math.inf
    hi: float = math.inf
    integer: bool = False  # JSON integers only

    @property
    def what(self) -> str:  # type: ignore[override]
        return "an integer" if self.integer else "a number"

    def check(self, value: Any, path: str) -> None:
        ok = (int,) if self.integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, ok):
            raise self.type_error(value, path)
        # ints of any size compare exactly; NaN and infinities fail here too
        if not (isinstance(value, int) or math.isfinite(value)) or not (self.lo <= value <= self.hi):
            shown = repr(value) if len(repr(value)) <= 40 else f"a number of {len(str(value))} digits"
            raise self.value_error(path, f"must be {self.what} in [{_num(self.lo)}, {_num(self.hi)}], got {shown}")


def Int(lo: float = -math.inf, hi: float = math.inf) -> Num:
    return Num(lo, hi, integer=True)


class Enum(Spec):
    def __init__(self, *values: Any) -> None:
        self.values = values

    @property
    def what(self) -> str:  # type: ignore[override]
        return repr(self.values[0]) if len(self.values) == 1 else "one of " + ", ".join(map(repr, self.values))

    def check(self, value: Any, path: str) -> None:
        # only values of an allowed type are compared (a list or an object is never hashed)
        if not any(type(value) is type(v) for v in self.values):
            raise self.type_error(value, path)
        if value not in self.values:
            shown = repr(value) if isinstance(value, str) and len(value) <= 40 else json_type(value)
            raise self.value_error(path, f"must be {self.what}, got {shown}")


@dataclass
class List(Spec):
    item: Spec = field(default_factory=Anything)
    min_items: int = 0
    max_items: int = 64

    what = "an array"

    def check(self, value: Any, path: str) -> None:
        if not isinstance(value, list):
            raise self.type_error(value, path)
        if not self.min_items <= len(value) <= self.max_items:
            raise self.value_error(path, f"must hold {self.min_items} to {self.max_items} items, got {len(value)}")
        for i, v in enumerate(value):
            self.item.check(v, f"{path}[{i}]")


@dataclass
class Obj(Spec):
    fields: dict[str, Spec] = field(default_factory=dict)
    required: tuple[str, ...] = ()

    what = "an object"

    def check(self, value: Any, path: str) -> None:
        if not isinstance(value, dict):
            raise self.type_error(value, path)
        for key in self.required:
            if key not in value:
                raise ProtocolError("missing_field", f"{_join(path, key)} is required", param=_join(path, key))
        for key, spec in self.fields.items():
            if key in value:
                spec.check(value[key], _join(path, key))


class Either(Spec):
    """The first alternative whose JSON type fits decides (so its error is the one reported)."""

    def __init__(self, *options: Spec) -> None:
        self.options = options

    @property
    def what(self) -> str:  # type: ignore[override]
        return " or ".join(o.what for o in self.options)

    def check(self, value: Any, path: str) -> None:
        for o in self.options:
            try:
                return o.check(value, path)
            except ProtocolError as e:
                if e.code != "invalid_type" or e.param != path:  # the type fits: this option's complaint holds
                    raise
        raise self.type_error(value, path)


def Optional(spec: Spec) -> Either:
    """`spec`, or null."""
    return Either(spec, Null())


class Tagged(Spec):
    """An object whose `key` field picks its schema (`default` when absent). Kinds in
    `refused` are ones the API defines but this server does not support: they get
    the error code `refused_code`, and the message names the kind and says why."""

    what = "an object"

    def __init__(self, key: str, cases: dict[str, Spec], refused: dict[str, str] | None = None,
                 default: str | None = None, refused_code: str = "invalid_value") -> None:
        self.key, self.cases, self.refused, self.default = key, cases, refused or {}, default
        self.refused_code = refused_code

    def check(self, value: Any, path: str) -> None:
        if not isinstance(value, dict):
            raise self.type_error(value, path)
        param = _join(path, self.key)
        kind = value.get(self.key, self.default)
        if kind is None:
            raise ProtocolError("missing_field", f"{param} is required", param=param)
        if not isinstance(kind, str):
            raise ProtocolError("invalid_type", f"{param} must be a string, got {json_type(kind)}", param=param)
        if kind in self.refused:
            raise ProtocolError(self.refused_code, f"{param} {kind!r} is not supported by this server: "
                                f"{self.refused[kind]}", param=param)
        spec = self.cases.get(kind)
        if spec is None:
            known = ", ".join(map(repr, [*self.cases, *self.refused]))
            shown = repr(kind) if len(kind) <= 40 else "a long string"
            raise ProtocolError("invalid_value", f"{param} must be one of {known}, got {shown}", param=param)
        spec.check(value, path)

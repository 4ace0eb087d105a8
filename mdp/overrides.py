"""`--set` for recipes: text overrides of a `mdp.recipes.Recipe` (sections of frozen dataclasses).

    section.field=value         --set optim.lr=1e-3, --set parallel.dp=2
    field=value                 a top-level field (--set steps=10), a leaf name found in one
                                section only (--set dp=2), or a flat name of earlier recipes
                                (--set stage_steps=..., --set encoder_steps=...; `FORMER`)
    section.dict_field.key=v    one entry of a dict (--set curriculum.stage_steps.speech=300)

Values follow the field's type: bool (1/0, true/false, yes/no, on/off), int, float, str;
`none` (or an empty value for a text) sets an Optional to None; a tuple is comma-separated
(`modalities=image,audio`, `betas=0.9,0.95`); a dict is `key:value,...` in order
(`stage_steps=speech:300,vision:300`, empty: {}), and a dict entry set to `none` is removed.
"""

from __future__ import annotations

import dataclasses
import types
import typing

# flat names of earlier recipes whose leaf moved under another name (the rest resolve by leaf)
FORMER = {
    "lr": "optim.lr",
    "pack": "curriculum.pack",
    "curriculum": "curriculum.kind",
    "data_workers": "data.workers",
    "encoder_steps": "pretrain.steps",
    "encoder_batch": "pretrain.batch",
    "encoder_lr": "pretrain.lr",
    "encoder_augment": "pretrain.augment",
    "eval_pack": "heldout.pack",
    "eval_every": "heldout.every",
    "eval_samples": "heldout.samples",
    "time_budget_s": "budget.time_s",
    "plan_budget_s": "budget.plan_s",
    "fit_budget": "budget.fit",
}

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def _is_section(tp) -> bool:
    return dataclasses.is_dataclass(tp)


def leaf_paths(recipe_cls) -> list[str]:
    """Every settable path: top-level fields and `section.field`."""
    out = []
    for name, tp in _hints(recipe_cls).items():
        if _is_section(tp):
            out += [f"{name}.{f}" for f in _hints(tp)]
        else:
            out.append(name)
    return out


def resolve(recipe_cls, key: str) -> tuple[str, str | None]:
    """`key` -> (path of a leaf, dict key or None); ValueError naming the known fields."""
    paths = leaf_paths(recipe_cls)
    head, _, rest = key.partition(".")
    if not rest and key in FORMER:
        return FORMER[key], None
    top = _hints(recipe_cls)
    if head in top and _is_section(top[head]):
        name, _, sub = rest.partition(".")
        path = f"{head}.{name}"
        if path not in paths:
            raise ValueError(f"unknown recipe field {key!r}; known in {head}: {sorted(_hints(top[head]))}")
    elif head in top:
        path, sub = head, rest
    elif head in FORMER:
        path, sub = FORMER[head], rest
    else:
        found = [p for p in paths if p.rsplit(".", 1)[-1] == head]
        if len(found) > 1:
            raise ValueError(f"recipe field {head!r} is ambiguous: name one of {found}")
        if not found:
            raise ValueError(f"unknown recipe field {key!r}; known: {paths} (and the earlier names {sorted(FORMER)})")
        path, sub = found[0], rest
    if sub and typing.get_origin(_leaf_type(recipe_cls, path)) is not dict:
        raise ValueError(f"recipe field {path} is not a dict: {key!r} cannot name an entry of it")
    return path, sub or None


def _leaf_type(recipe_cls, path: str):
    tp = recipe_cls
    for part in path.split("."):
        tp = _hints(tp)[part]
    return tp


def _optional(tp) -> tuple[object, bool]:
    """(the type without None, whether None is allowed)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0], len(args) < len(typing.get_args(tp))
    return tp, False


def _scalar(tp, raw: str, path: str):
    what = getattr(tp, "__name__", str(tp))
    if tp is bool:
        if raw.lower() not in _TRUE + _FALSE:
            raise ValueError(f"recipe field {path} is a bool, got {raw!r} (use one of {list(_TRUE + _FALSE)})")
        return raw.lower() in _TRUE
    if tp in (int, float):
        try:
            return tp(raw)
        except ValueError:
            raise ValueError(f"recipe field {path} is {'an' if tp is int else 'a'} {what}, got {raw!r}") from None
    return raw


def parse_value(tp, raw: str, path: str):
    """Text -> a value of type `tp` (the field's annotation)."""
    base, nullable = _optional(tp)
    if nullable and (raw.lower() == "none" or (raw == "" and base is str)):
        return None
    origin, args = typing.get_origin(base), typing.get_args(base)
    if origin is tuple:
        parts = [p.strip() for p in raw.split(",") if p.strip()]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_scalar(args[0], p, path) for p in parts)
        if len(parts) != len(args):
            raise ValueError(f"recipe field {path} takes {len(args)} comma-separated values, got {raw!r}")
        return tuple(_scalar(a, p, path) for a, p in zip(args, parts))
    if origin is dict:
        out = {}
        for part in [p for p in raw.split(",") if p.strip()]:
            k, sep, v = part.partition(":")
            if not sep or not k.strip():
                raise ValueError(f"recipe field {path} is KEY:VALUE,... got {part!r} in {raw!r}")
            out[k.strip()] = _scalar(args[1], v.strip(), f"{path}.{k.strip()}")
        return out
    return _scalar(base, raw, path)


def replace_path(recipe, path: str, value):
    """A copy of `recipe` with the leaf at `path` (`field` or `section.field`) set to `value`."""
    head, _, name = path.partition(".")
    if not name:
        return dataclasses.replace(recipe, **{head: value})
    section = dataclasses.replace(getattr(recipe, head), **{name: value})
    return dataclasses.replace(recipe, **{head: section})


def get_path(recipe, path: str):
    for part in path.split("."):
        recipe = getattr(recipe, part)
    return recipe


def apply_overrides(recipe, pairs: list[str]):
    """Apply `key=value` strings in order; a ValueError names the key and the known fields."""
    cls = type(recipe)
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"--set expects field=value, got {pair!r}")
        key, raw = pair.split("=", 1)
        path, entry = resolve(cls, key.strip())
        tp = _leaf_type(cls, path)
        if entry is None:
            value = parse_value(tp, raw, path)
        else:  # one entry of a dict: the others stay
            value = dict(get_path(recipe, path))
            if raw.lower() == "none":
                value.pop(entry, None)
            else:
                value[entry] = _scalar(typing.get_args(tp)[1], raw, f"{path}.{entry}")
        recipe = replace_path(recipe, path, value)
    return recipe

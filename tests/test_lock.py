"""The environment is the lock: every package the project needs (its dependency
closure, test extras included) is installed at exactly the version that
requirements.lock names, so a fresh machine runs what CI last passed with."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

LOCK = Path(__file__).resolve().parents[1] / "requirements.lock"
PROJECT = "omni-stream"


def read_lock(path: Path = LOCK) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9._-]+)==([^\s;]+)", line)
        assert m, f"{path.name}: not an exact pin: {line!r}"
        pins[canonicalize_name(m.group(1))] = m.group(2)
    return pins


def closure(root: str, extras: tuple[str, ...] = ("test",)) -> dict[str, str]:
    """{name: installed version} of `root`'s requirements, transitively, with the
    markers evaluated for this interpreter (as pip does)."""
    seen: dict[str, str] = {}
    todo = [(root, extras)]
    while todo:
        name, wanted = todo.pop()
        dist = metadata.distribution(name)
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker and not any(req.marker.evaluate({"extra": e}) for e in (*wanted, "")):
                continue
            key = canonicalize_name(req.name)
            if key in seen:
                continue
            try:
                seen[key] = metadata.version(req.name)
            except metadata.PackageNotFoundError:
                raise AssertionError(f"{name} needs {req}, which is not installed") from None
            todo.append((req.name, tuple(req.extras)))
    return seen


def test_lock_is_exact_pins_only():
    pins = read_lock()
    assert "torch" in pins and "transformers" in pins and len(pins) > 50


def test_installed_closure_is_exactly_the_lock():
    pins = read_lock()
    installed = closure(PROJECT)
    unlocked = sorted(set(installed) - set(pins))
    assert not unlocked, f"installed but not in requirements.lock (run bash scripts/lock.sh): {unlocked}"
    differ = {k: (installed[k], pins[k]) for k in installed if installed[k] != pins[k]}
    assert not differ, f"installed version != requirements.lock (installed, locked): {differ}"


def test_lock_check_can_fail(tmp_path):
    bad = tmp_path / "lock.txt"
    bad.write_text("torch>=2\n")
    try:
        read_lock(bad)
    except AssertionError as e:
        assert "not an exact pin" in str(e)
    else:
        raise AssertionError("a range was accepted as a pin")
    pins = read_lock()
    pins.pop("transformers")
    assert "transformers" in set(closure(PROJECT)) - set(pins)

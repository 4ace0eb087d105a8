"""Argument checks shared by the `omni` subcommands.

Each check turns a mistake on the command line into argparse's one-line
refusal (`omni chat: error: argument --out: ...`, exit status 2) before the
command starts any heavy work (loading a model, generating a whole reply).

Most are argparse `type=` callables:

    p.add_argument("--max-new-tokens", type=int_at_least(1))
    p.add_argument("--out", type=output_file)
    p.add_argument("--device", type=device())

Checks that need two arguments at once (a port on a host) run at the start of a
subcommand's `main` and raise `argparse.ArgumentTypeError`; omni/cli.py reports
that exception the same way as a refused argument.

Standard library only (torch is imported only to look for a GPU when a device
other than the CPU is asked for), so `omni CMD --help` stays fast.
"""

from __future__ import annotations

import argparse
import errno
import math
import os
import socket
from pathlib import Path
from typing import Callable

ArgumentTypeError = argparse.ArgumentTypeError


# ---- numbers ---------------------------------------------------------------
def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _float(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(x):
        raise ArgumentTypeError(f"expected a finite number, got {text!r}")
    return x


def int_at_least(lo: int) -> Callable[[str], int]:
    """An integer >= lo (int_at_least(1): a positive count)."""
    def parse(text: str) -> int:
        x = _int(text)
        if x < lo:
            raise ArgumentTypeError(f"must be an integer >= {lo}, got {x}")
        return x

    parse.__name__ = f"integer >= {lo}"
    return parse


def int_between(lo: int, hi: int) -> Callable[[str], int]:
    """An integer in [lo, hi]."""
    def parse(text: str) -> int:
        x = _int(text)
        if not lo <= x <= hi:
            raise ArgumentTypeError(f"must be an integer from {lo} to {hi}, got {x}")
        return x

    parse.__name__ = f"integer in [{lo}, {hi}]"
    return parse


def float_at_least(lo: float, *, strict: bool = False) -> Callable[[str], float]:
    """A finite number >= lo (> lo with strict=True)."""
    def parse(text: str) -> float:
        x = _float(text)
        if x < lo or (strict and x == lo):
            raise ArgumentTypeError(f"must be a number {'>' if strict else '>='} {lo:g}, got {x:g}")
        return x

    parse.__name__ = f"number {'>' if strict else '>='} {lo:g}"
    return parse


def float_between(lo: float, hi: float, *, lo_open: bool = False) -> Callable[[str], float]:
    """A number in [lo, hi] ((lo, hi] with lo_open=True)."""
    def parse(text: str) -> float:
        x = _float(text)
        if x > hi or x < lo or (lo_open and x == lo):
            raise ArgumentTypeError(f"must be a number in {'(' if lo_open else '['}{lo:g}, {hi:g}], got {x:g}")
        return x

    parse.__name__ = f"number in [{lo:g}, {hi:g}]"
    return parse


non_negative_int = int_at_least(0)
positive_int = int_at_least(1)
non_negative_float = float_at_least(0.0)
positive_float = float_at_least(0.0, strict=True)


def port(text: str) -> int:
    """A TCP port number, 0-65535 (0: let the system pick a free one)."""
    x = _int(text)
    if not 0 <= x <= 65535:
        raise ArgumentTypeError(f"must be a port number from 0 to 65535 (0 picks a free one), got {x}")
    return x


# ---- files -----------------------------------------------------------------
def existing_file(text: str) -> str:
    """A file that exists (its content is the command's to judge)."""
    p = Path(text).expanduser()
    if not p.exists():
        raise ArgumentTypeError(f"no such file: {text}")
    if p.is_dir():
        raise ArgumentTypeError(f"{text} is a folder, not a file")
    if not os.access(p, os.R_OK):
        raise ArgumentTypeError(f"{text} is not readable")
    return text


def existing_dir(text: str) -> str:
    """A folder that exists."""
    p = Path(text).expanduser()
    if not p.exists():
        raise ArgumentTypeError(f"directory {text} does not exist")
    if not p.is_dir():
        raise ArgumentTypeError(f"{text} is a file, not a directory")
    return text


def existing_path(text: str) -> str:
    """A file or folder that exists."""
    if not Path(text).expanduser().exists():
        raise ArgumentTypeError(f"no such file or folder: {text}")
    return text


def model_dir(text: str) -> str:
    """An omni model directory (OmniModel.save_pretrained or `omni convert`): a folder with config.json."""
    p = Path(text).expanduser()
    if not p.exists():
        raise ArgumentTypeError(f"model directory {text} does not exist")
    if not p.is_dir():
        raise ArgumentTypeError(f"{text} is a file; a model is a directory (config.json, model.safetensors, "
                                "tokenizer/, codec/)")
    if not (p / "config.json").is_file():
        raise ArgumentTypeError(f"{text} holds no config.json, so it is not a model directory (one is written "
                                "by save_pretrained or `omni convert`)")
    return text


def _writable_folder(folder: Path, what: str) -> None:
    if not folder.exists():
        raise ArgumentTypeError(f"cannot write {what}: folder {folder} does not exist")
    if not folder.is_dir():
        raise ArgumentTypeError(f"cannot write {what}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ArgumentTypeError(f"cannot write {what}: folder {folder} is not writable")


def output_file(text: str) -> str:
    """A file the command will write: its folder must exist and be writable."""
    p = Path(text).expanduser()
    if not text or p.is_dir():
        raise ArgumentTypeError(f"{text!r} is a folder; give a file name")
    _writable_folder(p.parent, text)
    if p.exists() and not os.access(p, os.W_OK):
        raise ArgumentTypeError(f"{text} exists and is not writable")
    return text


def output_dir(text: str) -> str:
    """A folder the command will create (with its parents) or write into."""
    p = Path(text).expanduser().absolute()
    if p.exists() and not p.is_dir():
        raise ArgumentTypeError(f"{text} is a file, not a folder")
    existing = p
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ArgumentTypeError(f"cannot create {text}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ArgumentTypeError(f"cannot write {text}: folder {existing} is not writable")
    return text


# ---- choices ---------------------------------------------------------------
def flavor_choices(kind: str) -> list[str]:
    """Names of the registered flavors of `kind` (for `choices=`)."""
    from omni.config import flavor_names

    return flavor_names(kind)


def device(allow_auto: bool = False) -> Callable[[str], str]:
    """cpu, cuda, cuda:N (or auto): refused when this machine has no such device."""
    expected = "cpu, cuda or cuda:N" + (", or auto" if allow_auto else "")

    def parse(text: str) -> str:
        name = text.strip()
        if name == "cpu" or (allow_auto and name == "auto"):
            return name
        import torch

        try:
            dev = torch.device(name)
        except (RuntimeError, ValueError):
            raise ArgumentTypeError(f"unknown device {text!r}; expected {expected}") from None
        if dev.type == "cuda":
            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
            if count == 0:
                raise ArgumentTypeError(f"{name}: this machine has no CUDA GPU that torch can use; use --device cpu")
            if dev.index is not None and dev.index >= count:
                raise ArgumentTypeError(f"{name}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}")
        elif dev.type == "mps":
            if not torch.backends.mps.is_available():
                raise ArgumentTypeError(f"{name}: Apple MPS is not available on this machine; use --device cpu")
        else:
            raise ArgumentTypeError(f"unsupported device {text!r}; expected {expected}")
        return name

    parse.__name__ = "device"
    return parse


def resolved_device(name: str) -> str:
    """`auto` -> cuda when a GPU is there, else cpu; other names unchanged."""
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def log_level(text: str) -> str:
    """A logging level name: DEBUG, INFO, WARNING, ERROR or CRITICAL (any case)."""
    name = text.strip().upper()
    if name not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ArgumentTypeError(f"unknown log level {text!r}; expected DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return name


# ---- network ---------------------------------------------------------------
def listen_problem(host: str, port_number: int) -> tuple[str, str] | None:
    """Why a server could not listen on host:port right now, as ("host" or "port",
    reason), or None when it can.

    Binds (and at once releases) every address `host` resolves to, as asyncio's
    server does (SO_REUSEADDR, IPv6 sockets IPv6-only), so a port held by
    another program is found before any model is loaded. Port 0 always works.
    """
    try:
        infos = socket.getaddrinfo(host or None, port_number, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        return "host", f"cannot resolve {host!r} ({e.strerror})"
    if port_number == 0:
        return None
    for family, kind, proto, _, addr in dict.fromkeys(infos):
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                s.bind(addr)
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    return "port", f"port {port_number} is already in use on {host}"
                if e.errno == errno.EACCES:
                    return "port", f"no permission to listen on port {port_number} (ports below 1024 need root)"
                if e.errno == errno.EADDRNOTAVAIL:
                    return "host", f"{host} is not an address of this machine"
                return "port", f"cannot listen on {host}:{port_number} ({e.strerror})"
    return None


def check_listen(host: str, port_number: int, port_option: str = "--port", host_option: str = "--host") -> None:
    """Raise ArgumentTypeError, naming the option to change, when host:port cannot be listened on."""
    problem = listen_problem(host, port_number)
    if problem is None:
        return
    which, reason = problem
    if which == "host":
        raise ArgumentTypeError(f"argument {host_option}: {reason}")
    if "already in use" in reason:
        reason += f"; pick another with {port_option} N ({port_option} 0 picks a free one)"
    raise ArgumentTypeError(f"argument {port_option}: {reason}")

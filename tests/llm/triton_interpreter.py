"""Running a Triton kernel check in Triton's CPU interpreter (a subprocess: the interpreter
is chosen when triton is first imported)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def run_in_interpreter(code: str, timeout: float = 300) -> None:
    """Run `code` with TRITON_INTERPRET=1; it must exit 0 and print "ok"."""
    triton = pytest.importorskip("triton")
    if tuple(int(v) for v in triton.__version__.split(".")[:2]) < (3, 8):
        pytest.skip(f"triton {triton.__version__} interpreter cannot run these kernels (needs >= 3.8)")
    env = dict(os.environ, TRITON_INTERPRET="1")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-3000:]

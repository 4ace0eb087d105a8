"""A server closing while its transcriber worker is still starting exits at once."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def test_close_does_not_wait_for_a_starting_worker() -> None:
    code = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(HERE)!r})
        from streaming.transcribe_stage import TranscribeStage
        stage = TranscribeStage("slow", "slow_transcriber:build", {{"seconds": 60.0}})
        time.sleep(1.0)  # the worker is spawned and building
        procs = list(stage.pool._processes.values())
        assert procs and all(p.is_alive() for p in procs), procs
        stage.close()
        print("closed", flush=True)
    """)
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=55)
    took = time.monotonic() - t0
    assert res.returncode == 0 and "closed" in res.stdout, res.stderr[-2000:]
    # without ending the worker, the interpreter's exit joins it: 60 s of building
    assert took < 30, f"exit took {took:.1f} s"

"""`omni serve` + `omni client` as a user runs them: two processes, the debug
model, a spoken question and a short video streamed in real time (--fast here)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import wave
from pathlib import Path

import numpy as np
import pytest
from streaming_helpers import speak

ROOT = Path(__file__).resolve().parents[2]


def _video(path: Path, seconds: float = 2.0, fps: int = 10) -> None:
    import av

    with av.open(str(path), "w") as out:
        st = out.add_stream("mpeg4", rate=fps)
        st.width, st.height, st.pix_fmt = 64, 48, "yuv420p"
        for i in range(int(seconds * fps)):
            img = np.zeros((48, 64, 3), np.uint8)
            img[:, (i * 3) % 64:(i * 3) % 64 + 8] = (255, 0, 0)  # a red bar moving right
            for pkt in st.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(pkt)
        for pkt in st.encode():
            out.mux(pkt)


@pytest.mark.slow
def test_serve_and_client_commands(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    server = subprocess.Popen([sys.executable, "-m", "omni.cli", "serve", "--port", "0", "--max-steps", "12",
                               "--max-sessions", "2", "--capacity", "2048", "--input-stage", "process"],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url, lines = None, []
        deadline = time.time() + 120
        while url is None and time.time() < deadline:
            line = server.stdout.readline()
            if not line and server.poll() is not None:
                break
            lines.append(line)
            m = re.search(r"listening on (ws://\S+)", line)
            url = m.group(1) if m else None
        assert url, "server did not start:\n" + "".join(lines)
        assert any("the shipped default model" in ln for ln in lines)  # no --model: the trained default
        q = tmp_path / "q.wav"
        speak("What is moving in the video?", q)
        video = tmp_path / "clip.mp4"
        _video(video)
        out = tmp_path / "reply.wav"
        res = subprocess.run([sys.executable, "-m", "omni.cli", "client", "--wav", str(q), "--video", str(video),
                              "--url", url, "--out", str(out), "--fast", "--silence", "1.0", "--timeout", "90"],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=150)
    finally:
        server.terminate()
        server.wait(20)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "latency breakdown (ms):" in res.stdout and "first_audio_after_confirm_ms" in res.stdout
    assert re.search(r"streaming \d\.\d s of speech \+ \d+ frames", res.stdout)
    with wave.open(str(out)) as w:
        assert w.getframerate() == 24000 and 0 < w.getnframes() / 24000 <= 12 * 0.06 + 0.3


def test_client_sets_the_speculation_point_only_when_asked(tmp_path):
    """`omni client --speculative-silence-ms MS` sends it in the session's turn_detection;
    without it the server's default for the turn detection holds (nothing is sent)."""
    import argparse

    from streaming.cli_client import add_arguments, turn_detection

    q = tmp_path / "q.wav"
    q.write_bytes(b"")
    p = argparse.ArgumentParser()
    add_arguments(p)
    assert turn_detection(p.parse_args(["--wav", str(q)])) == {"type": "server_vad"}
    args = p.parse_args(["--wav", str(q), "--turn-detection", "semantic_vad", "--speculative-silence-ms", "200"])
    assert turn_detection(args) == {"type": "semantic_vad", "speculative_silence_ms": 200}


def test_client_refuses_a_speculation_point_the_server_would_refuse(tmp_path, capsys):
    import argparse

    from streaming.cli_client import add_arguments

    q = tmp_path / "q.wav"
    q.write_bytes(b"")
    p = argparse.ArgumentParser()
    add_arguments(p)
    with pytest.raises(SystemExit):
        p.parse_args(["--wav", str(q), "--speculative-silence-ms", "5"])
    assert "from 32 to 10000" in capsys.readouterr().err

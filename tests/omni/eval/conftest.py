"""Fixtures of the evaluation tests: media made on the spot (espeak-ng, av, PIL)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest


def _speak(text: str, path: Path) -> Path:
    """espeak-ng -> 16 kHz mono WAV (sox), as the issue's fixtures ask."""
    raw = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "160", "-w", str(raw), text], check=True)
    subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(path)], check=True)
    raw.unlink()
    return path


def _make_video(path: Path, seconds: float = 2.0, fps: int = 8, size=(64, 96), with_audio: bool = True) -> Path:
    import av

    h, w = size
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        as_ = out.add_stream("aac", rate=16000) if with_audio else None
        for i in range(int(seconds * fps)):
            img = np.zeros((h, w, 3), dtype=np.uint8)
            img[:, : (i * 7) % w] = (200, 30, 30)
            for pkt in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(pkt)
        for pkt in vs.encode():
            out.mux(pkt)
        if as_ is not None:
            t = np.arange(int(16000 * seconds)) / 16000
            pcm = (0.2 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)
            for k in range(0, len(pcm), 1024):
                fr = av.AudioFrame.from_ndarray(pcm[None, k : k + 1024], format="fltp", layout="mono")
                fr.sample_rate = 16000
                for pkt in as_.encode(fr):
                    out.mux(pkt)
            for pkt in as_.encode():
                out.mux(pkt)
    return path


@pytest.fixture(scope="session")
def speak():
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is required for the evaluation fixtures (apt-get install espeak-ng sox)")
    return _speak


@pytest.fixture(scope="session")
def make_video():
    return _make_video

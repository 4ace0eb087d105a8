"""What the browser tests share: Debian's Chromium, its headless flags, a free port."""

from __future__ import annotations

import shutil
import socket

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def replay_audio(page, tmp_path):
    """The page's last reply, from its replay player: (float32 samples, sample rate)."""
    import urllib.request
    import wave

    import numpy as np

    page.wait_for_selector("#reply a[data-testid='download-link']", timeout=60000, state="attached")
    href = page.get_attribute("#reply a[data-testid='download-link']", "href")
    path = tmp_path / "reply.wav"
    path.write_bytes(urllib.request.urlopen(href, timeout=10).read())
    with wave.open(str(path)) as w:
        rate = w.getframerate()
        x = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768.0
    return x, rate

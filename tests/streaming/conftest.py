"""Fixtures of the streaming tests (helpers live in streaming_helpers.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# the project's packages must win over test folders of the same name (tests/speech is a package)
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import speech  # noqa: E402,F401  (bind the real package now, before other test folders join sys.path)

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from streaming_helpers import speak  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def voice(tmp_path_factory: pytest.TempPathFactory):
    """voice(text) -> float32 16 kHz speech, cached per text."""
    root = tmp_path_factory.mktemp("voice")
    cache: dict[str, np.ndarray] = {}

    def make(text: str) -> np.ndarray:
        if text not in cache:
            cache[text] = speak(text, root / f"q{len(cache)}.wav")
        return cache[text]

    return make

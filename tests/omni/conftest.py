"""Shared fixtures of the omni-model tests (tiny, CPU, offline)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tok():
    from omni.tokenizer import load_tokenizer

    return load_tokenizer()

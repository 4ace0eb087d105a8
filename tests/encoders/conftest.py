"""Encoder tests run many tiny ops: one intra-op thread avoids oversubscribing a
shared 2-core CPU (10x faster there), and nothing here needs the network."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

"""Shared fixtures of the omni-model tests (tiny, CPU, offline)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models on a shared 2-core machine: intra-op threads only contend
    (measured 60x slower with 2 threads under load), so run single-threaded."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tok():
    from omni.tokenizer import load_tokenizer

    return load_tokenizer()


@pytest.fixture(scope="session")
def debug_model():
    """A random `debug` OmniModel (fp32, CPU), shared by the model tests."""
    import torch

    from omni.config import get_omni_config
    from omni.model import OmniModel

    torch.manual_seed(0)
    return OmniModel(get_omni_config("debug")).eval()

"""Suite-wide settings: offline, deterministic, and one intra-op thread.

One thread is both faster and steadier for the tiny models of the tests on a
small shared CPU: thread hand-offs cost more than the matmuls they split.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import torch  # noqa: E402

torch.set_num_threads(1)

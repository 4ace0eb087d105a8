"""Backbone tests run tiny models: one intra-op thread is faster than two on a
shared 2-core machine (no spin-waiting between OpenMP workers)."""

import os

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)

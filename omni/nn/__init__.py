"""Shared single-device building blocks (torch only)."""

from omni.nn.mlp import SwiGLU
from omni.nn.norms import RMSNorm
from omni.nn.streaming import StreamingModule, StreamingState

__all__ = ["RMSNorm", "SwiGLU", "StreamingModule", "StreamingState"]

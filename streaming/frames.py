"""Video frame sampling for the streaming pipeline (stage 1, with the VAD).

Frames arrive as JPEG with a media time (`input_image_buffer.append`). While
the user speaks, each 1 s packet takes frames at the dense rate (2 FPS); while
the assistant answers, frames are kept at the sparse rate (0.5 FPS) and
prepended to the next user turn (sent as one sparse chunk, `speaking=False`,
just before its first packet), as LongCat-Flash-Omni does. JPEGs are decoded
only when a frame is actually selected.
"""

from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass

import numpy as np

from streaming.protocol import ProtocolError


@dataclass
class Frame:
    time: float  # seconds of session media time
    jpeg: bytes

    def rgb(self, max_side: int) -> np.ndarray:
        from PIL import Image

        img = Image.open(io.BytesIO(self.jpeg)).convert("RGB")
        scale = max_side / max(img.size)
        if scale < 1:
            img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))))
        return np.asarray(img, dtype=np.uint8)


def parse_frame(b64: object, time_s: float, max_bytes: int) -> Frame:
    """Validate an extension frame: base64 JPEG (checked by its magic bytes)."""
    if not isinstance(b64, str):
        raise ProtocolError("invalid_image", "image must be a base64 string", param="image")
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ProtocolError("invalid_image", f"image is not valid base64: {e}", param="image") from None
    if not raw.startswith(b"\xff\xd8"):
        raise ProtocolError("invalid_image", "image must be a JPEG (no FF D8 start marker)", param="image")
    if len(raw) > max_bytes:
        raise ProtocolError("invalid_image", f"image of {len(raw)} bytes exceeds {max_bytes}", param="image")
    return Frame(time_s, raw)


class FrameSampler:
    """Holds recent frames and picks those of each packet."""

    def __init__(self, dense_fps: float = 2.0, sparse_fps: float = 0.5, max_held: int = 8,
                 max_side: int = 448) -> None:
        self.dense_fps, self.sparse_fps = dense_fps, sparse_fps
        self.max_held, self.max_side = max_held, max_side
        self.recent: list[Frame] = []  # not yet consumed, time-ordered
        self.held: list[Frame] = []  # sparse frames kept during an answer
        self.last_sparse = -1e9

    def add(self, frame: Frame, answering: bool) -> None:
        if answering:
            if frame.time - self.last_sparse >= 1.0 / self.sparse_fps - 1e-6:
                self.held = (self.held + [frame])[-self.max_held:]
                self.last_sparse = frame.time
            return
        self.recent.append(frame)
        self.recent.sort(key=lambda f: f.time)
        self.recent = self.recent[-64:]

    def take_held(self) -> tuple[float, list[np.ndarray]]:
        """The sparse frames kept during the last answer (time of the first, RGB frames)."""
        held, self.held = self.held, []
        return (held[0].time if held else 0.0), [f.rgb(self.max_side) for f in held]

    def take(self, t0: float, t1: float) -> list[np.ndarray]:
        """Dense frames of the packet covering media time [t0, t1): one per
        1/dense_fps slot, the one nearest to the slot start."""
        picked: list[Frame] = []
        step = 1.0 / self.dense_fps
        slot = t0
        while slot < t1 - 1e-6:
            cands = [f for f in self.recent if slot - step / 2 <= f.time < slot + step]
            if cands:
                picked.append(min(cands, key=lambda f: abs(f.time - slot)))
            slot += step
        self.recent = [f for f in self.recent if f.time >= t1]
        return [f.rgb(self.max_side) for f in picked]

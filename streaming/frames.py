"""Video frame sampling for the streaming pipeline (stage 1, with the VAD).

Frames arrive as JPEG with a media time (`input_image_buffer.append`). While
the user speaks, each packet takes the frames of the dense (2 FPS) slots that
start inside it, counted from the turn's start, with their times; while
the assistant answers, frames are kept at the sparse rate (0.5 FPS) and
prepended to the next user turn (sent as one sparse chunk, `speaking=False`,
just before its first packet), as LongCat-Flash-Omni does. JPEGs are decoded
only when a frame is actually selected.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
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
    """Holds recent frames and picks those of each packet.

    Dense slots are absolute: every 1/dense_fps seconds from the turn's origin
    (`start_turn`). A slot takes the earliest frame at or after its start and
    before the next slot, so the frames picked (and their times) do not depend
    on where packets are split. The packet that closes a turn (`closing`) is cut
    where the server speculates or ends the turn, often before the frame of its
    last, still open slot has come: that slot then holds the camera's latest frame
    (at most `hold_s` old), as a still repeats in training, where every started
    second of a question has its frames (a second without any was answered worse).
    While answering, a frame is kept when it comes at least 1/sparse_fps after the
    last one kept (independent of packets too).
    """

    def __init__(self, dense_fps: float = 2.0, sparse_fps: float = 0.5, max_held: int = 8,
                 max_side: int = 448, hold_s: float = 1.0) -> None:
        self.dense_fps, self.sparse_fps = dense_fps, sparse_fps
        self.max_held, self.max_side, self.hold_s = max_held, max_side, hold_s
        self.recent: list[Frame] = []  # not yet consumed, time-ordered
        self.latest: Frame | None = None  # the latest frame of a user turn, consumed or not
        self.held: list[Frame] = []  # sparse frames kept during an answer
        self.origin = 0.0  # media time of the current turn's first slot
        self.last_sparse = -1e9

    def start_turn(self, origin: float) -> None:
        """Dense slots of the user turn that starts at media time `origin`."""
        self.origin = float(origin)

    def add(self, frame: Frame, answering: bool) -> None:
        if answering:
            # sparse: a frame at least 1/sparse_fps after the last one kept (packets play no part)
            if frame.time - self.last_sparse >= 1.0 / self.sparse_fps - 1e-6:
                self.held = (self.held + [frame])[-self.max_held:]
                self.last_sparse = frame.time
            return
        self.recent.append(frame)
        if self.latest is None or frame.time >= self.latest.time:
            self.latest = frame
        self.recent.sort(key=lambda f: f.time)
        self.recent = self.recent[-64:]

    def take_held_timed(self) -> tuple[list[float], list[np.ndarray]]:
        """The sparse frames kept during the last answer: (times, RGB frames)."""
        held, self.held = self.held, []
        return [f.time for f in held], [f.rgb(self.max_side) for f in held]

    def take_held(self) -> tuple[float, list[np.ndarray]]:
        """The sparse frames kept during the last answer (time of the first, RGB frames)."""
        times, rgbs = self.take_held_timed()
        return (times[0] if times else 0.0), rgbs

    def take_timed(self, t0: float, t1: float, closing: bool = False) -> tuple[list[float], list[np.ndarray]]:
        """Dense frames of the packet covering media time [t0, t1): for each slot
        starting inside it, the earliest frame in [slot, next slot); with `closing`
        (the turn's last packet), a still open slot without one holds the latest
        frame before it, stamped with the slot's start. Returns (times, RGB frames)."""
        step = 1.0 / self.dense_fps
        k = math.ceil((t0 - self.origin) / step - 1e-6)
        picked: list[Frame] = []
        while self.origin + k * step < t1 - 1e-6:
            s = self.origin + k * step
            cands = [f for f in self.recent if s - 1e-6 <= f.time < s + step - 1e-6]
            if cands:
                picked.append(min(cands, key=lambda f: f.time))
            elif closing and t1 < s + step - 1e-6 and self.latest is not None \
                    and 0 <= s - self.latest.time <= self.hold_s:
                picked.append(Frame(s, self.latest.jpeg))
            k += 1
        # frames before the next slot can never be picked any more
        nxt = self.origin + k * step - 1e-6
        self.recent = [f for f in self.recent if f.time >= nxt]
        return [f.time for f in picked], [f.rgb(self.max_side) for f in picked]

    def take(self, t0: float, t1: float, closing: bool = False) -> list[np.ndarray]:
        """The RGB frames of `take_timed`."""
        return self.take_timed(t0, t1, closing)[1]

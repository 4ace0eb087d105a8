"""Rendering scenes to pixels (numpy + PIL) and writing them as PNG / H.264 MP4 (av).

Frames are drawn at 2x the target size and box-filtered down, which anti-aliases
the edges without any dependency beyond PIL. Rendering is a pure function of the
scene record, the time and the size, so the GPU-side pack and the files on disk
show the same world.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .world import COLORS, Scene, SceneObject

FILE_SIZE = 224  # side of PNG / MP4 frames (a multiple of 14 and of 112)
VIDEO_FPS = 10  # frame rate of the MP4 files
STILL_VIDEO_SECONDS = 6.0  # length of the still clip written for image scenes (camera feed)
_SUPERSAMPLE = 2


def _polygon(obj: SceneObject, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    a0 = math.radians(obj.angle)
    if obj.shape == "square":
        pts = [(r, math.pi / 4 + k * math.pi / 2) for k in range(4)]
    elif obj.shape == "triangle":
        r *= 1.1
        pts = [(r, -math.pi / 2 + k * 2 * math.pi / 3) for k in range(3)]
        cy += r * 0.2  # center the triangle's visual mass on the slot
    elif obj.shape == "star":
        r *= 1.15
        pts = [(r if k % 2 == 0 else r * 0.45, -math.pi / 2 + k * math.pi / 5) for k in range(10)]
    else:
        raise ValueError(f"unknown shape {obj.shape!r}")
    return [(cx + rr * math.cos(a + a0), cy + rr * math.sin(a + a0)) for rr, a in pts]


def render_frame(scene: Scene, t: float = 0.0, size: int = FILE_SIZE) -> np.ndarray:
    """RGB uint8 [size, size, 3] of `scene` at time t (seconds)."""
    big = size * _SUPERSAMPLE
    img = Image.new("RGB", (big, big), tuple(scene.background))
    draw = ImageDraw.Draw(img)
    for obj in scene.objects:
        x, y = obj.center_at(t, scene.duration)
        cx, cy, r = x * big, y * big, obj.radius * big
        color = COLORS[obj.color]
        if obj.shape == "circle":
            rc = r * 0.9
            draw.ellipse((cx - rc, cy - rc, cx + rc, cy + rc), fill=color)
        else:
            draw.polygon(_polygon(obj, cx, cy, r), fill=color)
    return np.asarray(img.resize((size, size), Image.BOX), dtype=np.uint8)


def frame_times(duration: float, fps: float) -> list[float]:
    """Sample times of a clip: 0, 1/fps, ... strictly before `duration`."""
    n = max(1, int(math.floor(duration * fps + 1e-6)))
    return [i / fps for i in range(n)]


def render_clip(scene: Scene, fps: float, size: int) -> np.ndarray:
    """uint8 [T, size, size, 3]; a still image gives T = 1."""
    if scene.kind != "video":
        return render_frame(scene, 0.0, size)[None]
    return np.stack([render_frame(scene, t, size) for t in frame_times(scene.duration, fps)])


def write_png(frame: np.ndarray, path: str | Path) -> None:
    tmp = f"{path}.tmp"
    Image.fromarray(frame).save(tmp, format="PNG", optimize=False)
    os.replace(tmp, path)


def write_mp4(frames: np.ndarray, path: str | Path, fps: int = VIDEO_FPS) -> None:
    """H.264 (yuv420p) MP4 of uint8 RGB frames [T, H, W, 3]; H and W must be even."""
    import av  # deferred: the pack reader must import without av on GPU machines

    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be [T, H, W, 3] uint8, got shape {frames.shape}")
    h, w = frames.shape[1:3]
    if h % 2 or w % 2:
        raise ValueError(f"H.264 needs even frame sides, got {w}x{h} for {path}")
    tmp = f"{path}.tmp"  # renamed when complete: an interrupted build never leaves half a file
    with av.open(tmp, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        # One thread and fixed options: the same frames always give the same bytes.
        stream.options = {"crf": "18", "preset": "superfast", "threads": "1"}
        stream.thread_count = 1
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    os.replace(tmp, path)


def read_mp4(path: str | Path) -> np.ndarray:
    """Decode every frame of a video file to uint8 RGB [T, H, W, 3]."""
    import av

    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    if not frames:
        raise ValueError(f"{path} has no video frames")
    return np.stack(frames)


def write_scene_media(scene: Scene, media_dir: Path, still_video: bool = True) -> dict[str, str | None]:
    """Write a scene's files; returns paths relative to the data root ("media/...").

    still_video: for image scenes, also write the still held as a clip
    (`stream_video`), what a camera streams to `omni serve`.
    """
    media_dir.mkdir(parents=True, exist_ok=True)
    out: dict[str, str | None] = {"image": None, "video": None, "stream_video": None}
    if scene.kind == "video":
        name = f"{scene.scene_id}.mp4"
        write_mp4(render_clip(scene, VIDEO_FPS, FILE_SIZE), media_dir / name)
        out["video"] = out["stream_video"] = f"media/{name}"
    else:
        frame = render_frame(scene, 0.0, FILE_SIZE)
        write_png(frame, media_dir / f"{scene.scene_id}.png")
        out["image"] = f"media/{scene.scene_id}.png"
        if not still_video:
            return out
        # What a camera pointed at the still scene would stream (for `omni client`).
        n = int(STILL_VIDEO_SECONDS * VIDEO_FPS)
        write_mp4(np.repeat(frame[None], n, axis=0), media_dir / f"{scene.scene_id}.still.mp4")
        out["stream_video"] = f"media/{scene.scene_id}.still.mp4"
    return out

"""Image and video preprocessing for LongCat-ViT: native-resolution resize,
normalization, patchify, token counts, video frame sampling and timestamps.

Resize rule: both sides are rounded to the nearest multiple of
``patch_size * resize_factor`` (14 * 8 = 112); when the patch count falls outside
[min_tokens, max_tokens] the image is rescaled with its aspect ratio kept
(Qwen2-VL-style ``smart_resize``). A still image becomes two identical frames so
the Conv3d (time patch 2) sees t = 2. A video becomes frame PAIRS, each pair one
unit of (h/14) * (w/14) / 2 tokens after the projector, all pairs of a video at
one size chosen so the video fits its token budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Union

import numpy as np
import torch
from PIL import Image

from omni.config import VisionConfig

ImageLike = Union[Image.Image, np.ndarray, torch.Tensor]


@dataclass
class VisualUnit:
    """One image or one frame pair, ready for the ViT."""

    patches: torch.Tensor  # [h * w, patch_dim] float32, rows (c, t, y, x), raster order
    grid: tuple[int, int]  # (h, w) in patches

    @property
    def num_tokens(self) -> int:
        """Tokens after the projector's 1x2 merge."""
        return self.grid[0] * self.grid[1] // 2


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Nearest multiples of `factor`, rescaled (aspect kept) into [min_pixels, max_pixels]."""
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"aspect ratio of {height}x{width} exceeds 200")
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    return h, w


def image_size(height: int, width: int, cfg: VisionConfig) -> tuple[int, int]:
    """Pixel size (h, w) an image of height x width is resized to."""
    p2 = cfg.patch_size**2
    return smart_resize(height, width, cfg.resize_multiple, cfg.min_tokens * p2, cfg.max_tokens * p2)


def image_num_tokens(height: int, width: int, cfg: VisionConfig) -> int:
    """LLM tokens for one still image of height x width pixels."""
    h, w = image_size(height, width, cfg)
    return (h // cfg.patch_size) * (w // cfg.patch_size) // 2


def video_frame_size(height: int, width: int, num_frames: int, cfg: VisionConfig) -> tuple[int, int]:
    """Pixel size of every frame of a video of `num_frames` sampled frames: each
    pair gets an equal share of the video token budget (2 patches per token)."""
    pairs = max(1, math.ceil(num_frames / 2))
    p2 = cfg.patch_size**2
    per_pair = max(cfg.min_video_pair_tokens, min(cfg.max_tokens, 2 * cfg.max_video_tokens // pairs))
    lo = min(cfg.min_tokens, per_pair, cfg.min_video_pair_tokens)
    return smart_resize(height, width, cfg.resize_multiple, lo * p2, per_pair * p2)


def video_num_tokens(num_frames: int, height: int, width: int, cfg: VisionConfig) -> list[int]:
    """LLM tokens per frame pair of a video (after the interpolation cap)."""
    from encoders.vision_projector import capped_token_grids

    h, w = video_frame_size(height, width, num_frames, cfg)
    grid = (h // cfg.patch_size, w // cfg.patch_size // 2)
    pairs = max(1, math.ceil(num_frames / 2))
    return [a * b for a, b in capped_token_grids([grid] * pairs, cfg.max_video_tokens)]


def to_rgb_array(image: ImageLike) -> np.ndarray:
    """PIL / HxWx3 / HxWx4 uint8 array -> HxWx3 uint8 (alpha composited on white)."""
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    if isinstance(image, Image.Image):
        if image.mode in ("RGBA", "LA", "P"):
            image = image.convert("RGBA")
            bg = Image.new("RGBA", image.size, (255, 255, 255, 255))
            image = Image.alpha_composite(bg, image)
        return np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"image array must be HxW, HxWx3 or HxWx4, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise ValueError(f"image array must be uint8, got {arr.dtype}")
    if arr.shape[2] == 4:
        a = arr[:, :, 3:4].astype(np.float32) / 255.0
        arr = (arr[:, :, :3] * a + 255.0 * (1 - a)).round().astype(np.uint8)
    return arr


def _resize_normalize(rgb: np.ndarray, size: tuple[int, int], cfg: VisionConfig) -> torch.Tensor:
    h, w = size
    if rgb.shape[:2] != (h, w):
        rgb = np.asarray(Image.fromarray(rgb).resize((w, h), Image.BICUBIC))
    x = torch.from_numpy(np.array(rgb, dtype=np.uint8)).float().div_(255.0).permute(2, 0, 1)
    mean = torch.tensor(cfg.image_mean).view(3, 1, 1)
    std = torch.tensor(cfg.image_std).view(3, 1, 1)
    return (x - mean) / std  # [3, h, w]


def patchify(frames: torch.Tensor, cfg: VisionConfig) -> VisualUnit:
    """frames [t=2, 3, H, W] normalized -> patch rows in (c, t, y, x) order."""
    t, c, hh, ww = frames.shape
    p = cfg.patch_size
    if t != cfg.temporal_patch_size or hh % p or ww % p:
        raise ValueError(f"frames must be [{cfg.temporal_patch_size}, C, H, W] with H, W multiples of {p}")
    gh, gw = hh // p, ww // p
    x = frames.view(t, c, gh, p, gw, p).permute(2, 4, 1, 0, 3, 5)  # [gh, gw, c, t, p, p]
    return VisualUnit(x.reshape(gh * gw, c * t * p * p).contiguous(), (gh, gw))


def preprocess_image(image: ImageLike, cfg: VisionConfig) -> VisualUnit:
    """One still image -> one unit (the frame tiled twice along time)."""
    rgb = to_rgb_array(image)
    x = _resize_normalize(rgb, image_size(rgb.shape[0], rgb.shape[1], cfg), cfg)
    return patchify(x[None].expand(cfg.temporal_patch_size, -1, -1, -1), cfg)


def preprocess_video(
    frames: list[ImageLike], cfg: VisionConfig, size: tuple[int, int] | None = None
) -> list[VisualUnit]:
    """Sampled video frames -> one unit per consecutive pair (an odd last frame is
    repeated). All frames are resized to one size: `size` (pixels, multiples of
    14 with an even patch-grid width) if given, else `video_frame_size` for this
    many frames. A live stream that sends a few frames per packet should pass the
    size it chose for the whole session (e.g. video_frame_size(h, w, expected_frames, cfg))."""
    if not frames:
        raise ValueError("video has no frames")
    rgbs = [to_rgb_array(f) for f in frames]
    if len(rgbs) % 2:
        rgbs.append(rgbs[-1])
    if size is not None:
        p = cfg.patch_size
        if size[0] % p or size[1] % (2 * p) or min(size) <= 0:
            raise ValueError(f"video frame size {size} must be positive multiples of {p} (width of {2 * p})")
    else:
        size = video_frame_size(rgbs[0].shape[0], rgbs[0].shape[1], len(rgbs), cfg)
    xs = [_resize_normalize(r, size, cfg) for r in rgbs]
    return [patchify(torch.stack(xs[i : i + 2]), cfg) for i in range(0, len(xs), 2)]


def video_sample_times(
    duration: float,
    cfg: VisionConfig | None = None,
    fps: float | None = None,
    min_frames: int | None = None,
    max_frames: int | None = None,
) -> np.ndarray:
    """Times (s) at which to sample frames: `fps` (default cfg.video_fps = 2) frames
    per second, at least `min_frames` (16) for short clips, at most `max_frames`
    (256, spread uniformly) for long ones; always an even count (frame pairs)."""
    cfg = cfg or VisionConfig()
    fps = cfg.video_fps if fps is None else fps
    lo = cfg.min_video_frames if min_frames is None else min_frames
    hi = cfg.max_video_frames if max_frames is None else max_frames
    if not duration > 0:
        raise ValueError(f"video duration must be positive, got {duration}")
    if fps <= 0 or lo < 1 or hi < lo:
        raise ValueError(f"bad sampling settings fps={fps} min_frames={lo} max_frames={hi}")
    n = min(max(math.ceil(duration * fps - 1e-9), lo), hi)
    n += n % 2
    if n > hi and n > 2:  # an odd cap: stay under it
        n -= 2
    step = duration / n
    return np.arange(n, dtype=np.float64) * step


def format_timestamp(t: float) -> str:
    """The text timestamp of a frame pair: 'second{T}' with one decimal, half-up."""
    d = Decimal(repr(float(t))).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
    return f"second{{{d}}}"


def pair_timestamps(times: np.ndarray | list[float]) -> list[str]:
    """One 'second{t}' label per frame pair (the time of its first frame)."""
    return [format_timestamp(float(t)) for t in list(times)[::2]]

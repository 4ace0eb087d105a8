"""Native-resolution resize, token counts, video sampling, timestamps, token cap."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from encoders.image_processing import (
    format_timestamp,
    image_num_tokens,
    image_size,
    pair_timestamps,
    preprocess_image,
    preprocess_video,
    smart_resize,
    to_rgb_array,
    video_frame_size,
    video_num_tokens,
    video_sample_times,
)
from encoders.vision import VisionEncoder
from omni.config import get_flavor

LONGCAT = get_flavor("vision", "longcat")


@pytest.mark.parametrize(
    "hw, expect_hw",
    [
        ((448, 448), (448, 448)),  # already a multiple of 112: untouched
        ((480, 640), (448, 672)),  # 4:3 -> nearest multiples: 4 x 112, 6 x 112
        ((100, 100), (336, 336)),  # 64 patches < 576: scaled up by sqrt(576*196/1e4) = 3.36
        ((1080, 1920), (784, 1344)),  # 10880 patches > 5832: beta 1.347 -> floor to 7, 12 x 112
        ((2000, 200), (2016, 224)),  # 1:10 keeps its shape: 18 x 112, 2 x 112
    ],
)
def test_image_size_known_values(hw, expect_hw):
    assert image_size(*hw, LONGCAT) == expect_hw


@pytest.mark.parametrize("hw", [(1, 1), (37, 999), (720, 1280), (1280, 720), (3000, 4000), (5000, 300), (224, 224)])
def test_sizes_are_multiples_and_in_range(hw):
    h, w = image_size(*hw, LONGCAT)
    assert h % 112 == 0 and w % 112 == 0
    patches = (h // 14) * (w // 14)
    assert LONGCAT.min_tokens <= patches <= LONGCAT.max_tokens
    assert image_num_tokens(*hw, LONGCAT) == patches // 2
    if min(hw) >= 112:  # aspect ratio kept within one 112-step of rounding
        assert abs(np.log((h / w) / (hw[0] / hw[1]))) < np.log(1 + 112 / min(h, w)) + 0.35


def test_token_helper_matches_encoder_output():
    cfg = get_flavor("vision", "debug")
    enc = VisionEncoder(cfg).eval()
    sizes = [(90, 300), (224, 224), (500, 170)]
    imgs = [np.zeros((h, w, 3), np.uint8) for h, w in sizes]
    outs = enc.encode(imgs)
    assert [o.shape[0] for o in outs] == [image_num_tokens(h, w, cfg) for h, w in sizes]
    assert all(o.shape[1] == cfg.out_dim for o in outs)


def test_smart_resize_rejects_bad_sizes():
    with pytest.raises(ValueError, match="positive"):
        smart_resize(0, 10, 112, 1, 10**9)
    with pytest.raises(ValueError, match="aspect ratio"):
        smart_resize(1, 1000, 112, 1, 10**9)


def test_alpha_is_composited_on_white_and_frames_tile():
    rgba = np.zeros((20, 20, 4), np.uint8)  # fully transparent black
    assert (to_rgb_array(rgba) == 255).all()
    assert (to_rgb_array(Image.fromarray(rgba, "RGBA")) == 255).all()
    unit = preprocess_image(np.full((112, 112, 3), 7, np.uint8), get_flavor("vision", "debug"))
    p = unit.patches.view(unit.patches.shape[0], 3, 2, -1)
    assert torch.equal(p[:, :, 0], p[:, :, 1])  # still image = two identical frames


def test_video_sampling_rates():
    cfg = LONGCAT
    t = video_sample_times(10.0, cfg)  # 2 FPS
    assert len(t) == 20 and np.allclose(np.diff(t), 0.5) and t[0] == 0.0
    t = video_sample_times(3.0, cfg)  # short: at least 16 frames
    assert len(t) == 16 and t[-1] < 3.0
    t = video_sample_times(1000.0, cfg)  # long: capped, spread uniformly over the clip
    assert len(t) == 256 and np.allclose(np.diff(t), 1000 / 256) and t[-1] > 990
    t = video_sample_times(7.3, cfg, fps=4.0)
    assert len(t) == 30 and len(t) % 2 == 0  # 29.2 -> 30 (even: frame pairs)
    with pytest.raises(ValueError, match="duration"):
        video_sample_times(0.0, cfg)


def test_timestamps_per_pair():
    assert pair_timestamps([0.0, 0.5, 1.0, 1.5, 2.0, 2.5]) == ["second{0.0}", "second{1.0}", "second{2.0}"]
    assert format_timestamp(0.25) == "second{0.3}"  # half-up, not banker's rounding
    assert format_timestamp(2.25) == "second{2.3}"
    assert format_timestamp(12.0) == "second{12.0}"


@pytest.mark.parametrize("frames", [2, 16, 40, 128, 256])
@pytest.mark.parametrize("hw", [(480, 640), (1080, 1920), (720, 720), (1920, 1080)])
def test_video_token_budget(frames, hw):
    counts = video_num_tokens(frames, *hw, LONGCAT)
    assert len(counts) == (frames + 1) // 2
    assert sum(counts) <= LONGCAT.max_video_tokens
    h, w = video_frame_size(*hw, frames, LONGCAT)
    assert h % 112 == 0 and w % 112 == 0
    if frames <= 16:  # a short clip keeps a useful resolution
        assert min(counts) >= 256


def test_video_units_and_cap_through_the_encoder():
    cfg = get_flavor("vision", "debug")
    enc = VisionEncoder(cfg).eval()
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (150, 260, 3), dtype=np.uint8) for _ in range(7)]  # odd: last repeated
    units = preprocess_video(frames, cfg)
    assert len(units) == 4 and len({u.grid for u in units}) == 1
    outs = enc.encode(units)
    assert [o.shape[0] for o in outs] == video_num_tokens(7, 150, 260, cfg)
    capped = enc.encode(units, max_tokens=40)
    assert sum(o.shape[0] for o in capped) <= 40 and len(capped) == 4
    # a pair of two different frames differs from a still image of its first frame
    still = enc.encode([frames[0]])[0]
    assert still.shape == outs[0].shape and not torch.allclose(still, outs[0])


def test_video_with_an_explicit_session_size():
    cfg = get_flavor("vision", "debug")
    frames = [np.zeros((480, 640, 3), np.uint8)] * 2
    (unit,) = preprocess_video(frames, cfg, size=(112, 224))
    assert unit.grid == (8, 16) and unit.num_tokens == 64
    with pytest.raises(ValueError, match="video frame size"):
        preprocess_video(frames, cfg, size=(112, 210))

"""LongCat-ViT numerics: packing, 2D RoPE, patch embedding, projector merge, token cap."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from encoders.attention import PackInfo, packed_attention
from encoders.image_processing import patchify, preprocess_image
from encoders.vision import VisionEncoder
from encoders.vision_projector import cap_tokens, capped_token_grids
from encoders.vit import VisionRotaryEmbedding2D, apply_rope
from omni.config import get_flavor

SIZES = [(120, 200), (300, 110), (112, 112), (100, 130), (230, 460)]  # two share one grid


@pytest.fixture(scope="module")
def cfg():
    return get_flavor("vision", "debug")


@pytest.fixture(scope="module")
def enc(cfg):
    torch.manual_seed(0)
    m = VisionEncoder(cfg).eval()
    # LayerScale 0.1 at init keeps layers near identity; scale it up so the
    # attention actually moves features and the comparisons below have teeth.
    with torch.no_grad():
        for layer in m.vit.encoder.layers:
            layer.ls1.fill_(1.0)
            layer.ls2.fill_(1.0)
    return m


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in SIZES]


def test_packed_batch_equals_one_by_one(enc, images):
    packed = enc.encode(images)
    for img, out in zip(images, packed):
        alone = enc.encode([img])[0]
        assert out.shape == alone.shape
        torch.testing.assert_close(out, alone, atol=1e-5, rtol=1e-5)


def test_padded_baseline_equals_packed(enc, images):
    for a, b in zip(enc.encode(images), enc.encode(images, padded=True)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_no_attention_across_images(enc, images):
    base = enc.encode(images)
    changed = list(images)
    changed[1] = 255 - images[1]
    out = enc.encode(changed)
    assert not torch.allclose(out[1], base[1])  # the changed image itself moves
    for i in (0, 2, 3, 4):
        torch.testing.assert_close(out[i], base[i], atol=1e-5, rtol=1e-5)


def test_packed_attention_is_block_diagonal():
    torch.manual_seed(1)
    lens = [5, 9, 5, 3]
    q, k, v = (torch.randn(sum(lens), 2, 8) for _ in range(3))
    out = packed_attention(q, k, v, PackInfo.from_lengths(lens, "cpu"), "sdpa")
    start = 0
    for n in lens:
        s = slice(start, start + n)
        ref = torch.softmax(torch.einsum("qhd,khd->hqk", q[s], k[s]) / math.sqrt(8), -1)
        torch.testing.assert_close(out[s], torch.einsum("hqk,khd->qhd", ref, v[s]), atol=1e-5, rtol=1e-5)
        start += n
    merged = packed_attention(q, k, v, PackInfo.from_lengths([sum(lens)], "cpu"), "sdpa")
    assert not torch.allclose(merged, out, atol=1e-3)  # the check above can fail


def test_rope2d_matches_explicit_rotation():
    head_dim, theta = 16, 10000.0
    rope = VisionRotaryEmbedding2D(head_dim // 2, theta)
    grids = [(3, 4), (2, 2)]
    cos, sin = rope(grids, torch.device("cpu"))
    x = torch.randn(cos.shape[0], 1, head_dim, dtype=torch.float64)
    got = apply_rope(x.float(), cos, sin)[:, 0].double()
    # reference: channel i (< head_dim/2) pairs with i + head_dim/2; the first
    # quarter rotates by row * f, the second by col * f, f = theta^(-2m/(head_dim/2))
    quarter = head_dim // 4
    inv = [theta ** (-2 * m / (head_dim // 2)) for m in range(quarter)]
    pos = [(r, c) for h, w in grids for r in range(h) for c in range(w)]
    ref = torch.empty_like(x[:, 0])
    for t, (r, c) in enumerate(pos):
        for i in range(head_dim // 2):
            ang = (r if i < quarter else c) * inv[i % quarter]
            a, b = x[t, 0, i], x[t, 0, i + head_dim // 2]
            ref[t, i] = a * math.cos(ang) - b * math.sin(ang)
            ref[t, i + head_dim // 2] = b * math.cos(ang) + a * math.sin(ang)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


def test_patch_embedding_equals_conv3d_on_frames(enc, cfg, images):
    unit = preprocess_image(images[0], cfg)
    h, w = unit.grid
    p = cfg.patch_size
    # rebuild the [1, C, T, H, W] clip from the patches' documented (c, t, y, x) layout
    clip = unit.patches.view(h, w, 3, 2, p, p).permute(2, 3, 0, 4, 1, 5).reshape(1, 3, 2, h * p, w * p)
    ref = enc.vit.embeddings.patch_embedding(clip)[0].flatten(1).t()  # raster order
    torch.testing.assert_close(enc.vit.embeddings(unit.patches), ref, atol=1e-4, rtol=1e-4)
    # and patchify is the inverse of that rebuild
    again = patchify(clip[0].permute(1, 0, 2, 3), cfg)
    assert torch.equal(again.patches, unit.patches)
    assert torch.equal(clip[:, :, 0], clip[:, :, 1])  # a still image is two identical frames


def test_projector_merges_adjacent_columns(enc, cfg):
    torch.manual_seed(2)
    h, w, d = 2, 4, cfg.hidden_size
    x = torch.randn(h * w, d)
    grid = x.view(h, w, d)
    ref_in = torch.cat([grid[:, 0::2], grid[:, 1::2]], dim=-1).reshape(h * w // 2, 2 * d)
    ref = enc.projector.proj(enc.projector.p0(ref_in))
    torch.testing.assert_close(enc.projector(x, [(h, w)]), ref)
    with pytest.raises(ValueError, match="even grid width"):
        enc.projector(torch.randn(3, d), [(1, 3)])


def test_token_cap_by_interpolation():
    grids = [(8, 6), (4, 4), (10, 3)]
    embeds = [torch.full((h * w, 5), float(i)) for i, (h, w) in enumerate(grids)]
    total = sum(h * w for h, w in grids)
    same, g = cap_tokens(embeds, grids, total)
    assert g == grids and all(a is b for a, b in zip(same, embeds))
    for cap in (total - 1, total // 2, 20, 3):
        out, new = cap_tokens(embeds, grids, cap)
        assert sum(h * w for h, w in new) <= cap
        assert [o.shape[0] for o in out] == [h * w for h, w in new]
        for i, o in enumerate(out):  # a constant map stays constant under bilinear resize
            torch.testing.assert_close(o, torch.full_like(o, float(i)))
    # aspect ratio is kept (within a floor step)
    (h, w), = capped_token_grids([(40, 20)], 200)
    assert h * w <= 200 and abs(h / w - 2.0) < 0.15
    # a ramp is resampled, not cropped
    ramp = torch.arange(8.0).repeat(8, 1).reshape(64, 1)
    (o,), ((nh, nw),) = cap_tokens([ramp], [(8, 8)], 16)
    row = o.view(nh, nw)[0]
    assert row[0] < 1.5 and row[-1] > 5.5 and torch.all(row[1:] > row[:-1])
    with pytest.raises(ValueError, match="below one token per unit"):
        capped_token_grids(grids, 2)


def test_bf16_runs_and_stays_close(enc, images):
    ref = enc.encode(images[:2])
    low = VisionEncoder(enc.cfg).eval()
    low.load_state_dict(enc.state_dict())
    low = low.to(torch.bfloat16)
    out = low.encode(images[:2])
    for a, b in zip(ref, out):
        assert b.dtype == torch.bfloat16
        rel = (a - b.float()).norm() / a.norm()
        assert rel < 0.05, rel


def test_bad_input_errors(enc, cfg):
    with pytest.raises(ValueError, match="uint8"):
        enc.encode([np.zeros((50, 50, 3), dtype=np.float32)])
    with pytest.raises(ValueError, match="no images"):
        enc.encode([])
    with pytest.raises(ValueError, match="patches must be"):
        enc.vit(torch.zeros(4, 10), [(2, 2)])
    with pytest.raises(ValueError, match="grids cover"):
        enc.vit(torch.zeros(4, cfg.patch_dim), [(2, 4)])


def test_packed_attention_under_autocast_with_mixed_dtypes(enc, images):
    """Under autocast RoPE/QK-norm leave q, k in float32 and v in bf16; equal-length
    sequences (the grouped path) used to fail writing bf16 results into a float32
    buffer. The whole encoder under autocast must run and stay close to float32."""
    torch.manual_seed(0)
    q, k = torch.randn(12, 2, 8), torch.randn(12, 2, 8)
    v = torch.randn(12, 2, 8)
    pack = PackInfo.from_lengths([4, 4, 4], "cpu")
    ref = packed_attention(q, k, v, pack)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = packed_attention(q, k, v.bfloat16(), pack)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, atol=3e-2, rtol=3e-2)
    same = [images[0], images[0]]  # two equal-length sequences: the grouped path
    want = torch.cat(enc.encode(same)).float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = torch.cat(enc.encode(same)).float()
    assert (got - want).norm() / want.norm() < 0.05

"""LongCat-ViT positions: the vectorized (row, col) / RoPE tables against the per-unit
loop they replaced, and the optional learned absolute position embedding
(`VisionConfig.abs_pos_grid`): off is the official model, on makes a moved object's
tokens differ, at any grid size, for stills and frame pairs, trainable."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from encoders.attention import PackInfo
from encoders.checkpoint import load_into
from encoders.image_processing import preprocess_image, preprocess_video
from encoders.vision import VisionEncoder
from encoders.vit import GridPositions, LongCatViT, VisionRotaryEmbedding2D
from omni.config import OmniConfig, VisionConfig, from_dict, get_flavor, get_omni_config, to_dict

MIXED = [(3, 4), (8, 8), (1, 5), (3, 4), (16, 2), (2, 16), (1, 1), (8, 8)]


def _loop_rope(inv_freq: torch.Tensor, grids) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-unit loop the vectorized table replaced, kept as the reference."""
    rows, cols = [], []
    for h, w in grids:
        rows.append(torch.arange(h).repeat_interleave(w))
        cols.append(torch.arange(w).repeat(h))
    r = torch.cat(rows).float()[:, None] * inv_freq
    c = torch.cat(cols).float()[:, None] * inv_freq
    freqs = torch.cat([r, c], dim=-1)
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos(), emb.sin()


def _reference_forward(vit: LongCatViT, patches: torch.Tensor, grids) -> torch.Tensor:
    """LongCat-ViT as it was before the option: patch embedding, looped RoPE table, layers."""
    pack = PackInfo.from_lengths([h * w for h, w in grids], patches.device)
    x = vit.embeddings(patches)
    cos, sin = _loop_rope(vit.encoder.rotary_pos_emb.inv_freq, grids)
    for layer in vit.encoder.layers:
        x = layer(x, cos, sin, pack)
    return x


def _boost(enc: VisionEncoder) -> VisionEncoder:
    """LayerScale 1.0 so the layers move features (0.1 at init keeps them near identity)."""
    with torch.no_grad():
        for layer in enc.vit.encoder.layers:
            layer.ls1.fill_(1.0)
            layer.ls2.fill_(1.0)
    return enc.eval()


def _off(cfg: VisionConfig) -> VisionConfig:
    return dataclasses.replace(cfg, abs_pos_grid=0)


@pytest.fixture(scope="module")
def mini():
    return get_flavor("vision", "mini")


@pytest.fixture(scope="module")
def small_on():
    """debug-sized ViT with the option on (a 6 x 6 table: every grid below is resampled)."""
    return dataclasses.replace(get_flavor("vision", "debug"), abs_pos_grid=6, abs_pos_init_std=0.5)


# --- vectorized positions ---------------------------------------------------


def test_grid_positions_and_rope_equal_the_per_unit_loop():
    pos = GridPositions.of(MIXED, "cpu")
    rows = torch.cat([torch.arange(h).repeat_interleave(w) for h, w in MIXED])
    cols = torch.cat([torch.arange(w).repeat(h) for h, w in MIXED])
    assert torch.equal(pos.rows, rows) and torch.equal(pos.cols, cols)
    assert torch.equal(pos.heights, torch.cat([torch.full((h * w,), h) for h, w in MIXED]))
    assert torch.equal(pos.widths, torch.cat([torch.full((h * w,), w) for h, w in MIXED]))
    for head_dim, theta in ((16, 10000.0), (64, 10000.0), (80, 500.0)):
        rope = VisionRotaryEmbedding2D(head_dim // 2, theta)
        cos, sin = rope(MIXED, torch.device("cpu"))
        ref_cos, ref_sin = _loop_rope(rope.inv_freq, MIXED)
        assert cos.shape == ref_cos.shape == (sum(h * w for h, w in MIXED), head_dim)
        torch.testing.assert_close(cos, ref_cos, atol=1e-6, rtol=0)
        torch.testing.assert_close(sin, ref_sin, atol=1e-6, rtol=0)
    # numpy ints and a single unit work too
    one = GridPositions.of([(np.int64(2), np.int64(3))], "cpu")
    assert one.rows.tolist() == [0, 0, 0, 1, 1, 1] and one.cols.tolist() == [0, 1, 2, 0, 1, 2]


# --- option off: the official architecture ------------------------------------


def test_official_flavors_have_it_off():
    assert all(get_flavor("vision", name).abs_pos_grid == 0 for name in ("debug", "a1b", "longcat"))
    assert all(get_omni_config(name).vision.abs_pos_grid == 0 for name in ("debug", "a1b", "longcat-flash-omni"))


def test_option_off_is_the_old_model(mini):
    cfg = _off(mini)
    torch.manual_seed(3)
    enc = _boost(VisionEncoder(cfg))
    assert enc.vit.embeddings.position_embedding is None
    assert not any("position_embedding" in k for k in enc.state_dict())
    torch.manual_seed(4)
    patches = torch.randn(sum(h * w for h, w in MIXED), cfg.patch_dim)
    with torch.no_grad():
        out = enc.vit(patches, MIXED)
        ref = _reference_forward(enc.vit, patches, MIXED)
        padded = enc.vit.forward_padded(patches, MIXED)
    assert torch.equal(out, ref)
    torch.testing.assert_close(padded, ref, atol=1e-5, rtol=1e-5)


# --- option on ----------------------------------------------------------------


def _square_scene(x: float, y: float, shape: str = "square"):
    from omni.synth.world import Scene, SceneObject

    return Scene("probe", "train", "image", 0.0, (31, 28, 35), (SceneObject(shape, "red", "left", x, y, 0.1, 0.0),))


def _tokens(enc: VisionEncoder, scene) -> torch.Tensor:
    from omni.synth.render import render_frame

    unit = preprocess_image(render_frame(scene, 0.0, 112), enc.cfg)
    assert unit.grid == (8, 8)
    with torch.no_grad():
        return enc.vit(unit.patches, [unit.grid]).view(8, 8, -1)


def test_moved_object_changes_the_tokens_at_init(mini):
    """A square moved by one merged token (2 patch columns, 28 px): its tokens, compared
    where the square is, were the same to 0.04 % with RoPE alone; with the table on
    (its default init) they differ by percents, a sizeable share of a circle-for-square swap."""
    torch.manual_seed(0)
    off = VisionEncoder(_off(mini)).eval()
    torch.manual_seed(0)
    on = VisionEncoder(mini).eval()
    missing, unexpected = on.load_state_dict(off.state_dict(), strict=False)
    assert missing == ["vit.embeddings.position_embedding.weight"] and not unexpected
    rel = lambda a, b: float((a - b).norm() / a.norm())  # noqa: E731
    res = {}
    for name, enc in (("off", off), ("on", on)):
        a = _tokens(enc, _square_scene(0.375, 0.5))
        moved = _tokens(enc, _square_scene(0.625, 0.5))
        swapped = _tokens(enc, _square_scene(0.375, 0.5, "circle"))
        res[name] = (rel(a[:, :-2], moved[:, 2:]), rel(a[:, :-2], swapped[:, :-2]))
    assert res["off"][0] < 2e-3, res  # the measured blindness
    assert res["on"][0] > 20 * res["off"][0] and res["on"][0] > 0.01, res
    assert res["on"][0] > 0.1 * res["on"][1], res


def test_table_is_bilinear_resampling_of_the_grid(small_on):
    torch.manual_seed(0)
    vit = LongCatViT(small_on)
    pe = vit.embeddings.position_embedding
    s, d = small_on.abs_pos_grid, small_on.hidden_size
    grids = [(6, 6), (12, 12), (3, 4), (2, 20), (1, 1), (7, 5), (6, 6)]
    got = pe(GridPositions.of(grids, "cpu")).split([h * w for h, w in grids])
    table = pe.weight.detach().t().reshape(1, d, s, s)
    for (h, w), g in zip(grids, got):
        ref = F.interpolate(table, size=(h, w), mode="bilinear", align_corners=False)[0].reshape(d, h * w).t()
        torch.testing.assert_close(g, ref, atol=1e-6, rtol=1e-6)
    assert torch.equal(got[0], pe.weight.detach())  # at its own size the table is used as is


def test_grid_sizes_packing_and_padding_with_the_option_on(small_on):
    torch.manual_seed(1)
    enc = _boost(VisionEncoder(small_on))
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(120, 200), (300, 110), (112, 112), (230, 460)]]
    grids = [preprocess_image(im, small_on).grid for im in images]
    assert len(set(grids)) == 4 and max(max(g) for g in grids) > small_on.abs_pos_grid
    packed = enc.encode(images)
    for im, out, g in zip(images, packed, grids):
        alone = enc.encode([im])[0]
        assert out.shape == alone.shape == (g[0] * g[1] // 2, small_on.out_dim)
        torch.testing.assert_close(out, alone, atol=1e-5, rtol=1e-5)
    for a, b in zip(packed, enc.encode(images, padded=True)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    # bf16 weights: the table is cast with them
    low = VisionEncoder(small_on).eval()
    low.load_state_dict(enc.state_dict())
    out = low.to(torch.bfloat16).encode(images[:2])
    for a, b in zip(packed, out):
        assert b.dtype == torch.bfloat16 and (a - b.float()).norm() / a.norm() < 0.05


def test_video_frame_pairs_with_the_option_on(mini):
    """A video is one unit per frame pair (patched in time, t = 2): every pair gets the
    same table, so a pair of two equal frames encodes exactly like that still image."""
    from omni.synth.render import render_frame

    torch.manual_seed(2)
    enc = _boost(VisionEncoder(mini))
    frames = [render_frame(_square_scene(0.25 + 0.1 * k, 0.5), 0.0, 112) for k in range(5)]
    units = preprocess_video(frames, mini)  # 5 frames -> 3 pairs, the last frame repeated
    assert len(units) == 3 and all(u.grid == (8, 8) for u in units)
    embs = enc.encode(units)
    assert [e.shape[0] for e in embs] == [32, 32, 32]
    still = enc.encode([frames[-1]])[0]
    torch.testing.assert_close(embs[-1], still, atol=1e-5, rtol=1e-5)
    assert (embs[0] - embs[1]).norm() / embs[0].norm() > 0.01  # the moving square shows
    # other frame sizes resample the table
    big = preprocess_video([np.zeros((224, 336, 3), np.uint8)] * 2, mini, size=(224, 336))
    assert enc.encode(big)[0].shape == (16 * 24 // 2, mini.out_dim)


def test_gradients_reach_the_table(mini, small_on):
    torch.manual_seed(5)
    vit = LongCatViT(mini)
    grids = [(8, 8), (8, 8), (16, 8)]
    patches = torch.randn(sum(h * w for h, w in grids), mini.patch_dim)
    vit(patches, grids).pow(2).mean().backward()
    g = vit.embeddings.position_embedding.weight.grad
    assert g is not None and g.shape == (64, mini.hidden_size)
    assert bool((g.abs().sum(-1) > 0).all())  # every entry is used at 8 x 8
    # resampled (a grid smaller than the table): gradients still flow, through the taps
    vit2 = LongCatViT(small_on)
    vit2(torch.randn(12, small_on.patch_dim), [(3, 4)]).sum().backward()
    assert vit2.embeddings.position_embedding.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("on", [True, False])
def test_dense_batch_of_one_grid_equals_the_packed_forward(mini, on):
    """`forward_dense` (the device training path's call: U units of one grid as a
    [U, P] batch, positions made on the device) gives `forward`'s rows and gradients,
    with the table on and off, at the mini grid and at a non-square one."""
    cfg = mini if on else _off(mini)
    torch.manual_seed(6)
    vit = _boost(VisionEncoder(cfg)).vit
    for grid, u in (((8, 8), 5), ((3, 4), 3)):
        pos = GridPositions.of([grid], "cpu")
        one = GridPositions.of_grid(*grid, "cpu")
        assert all(torch.equal(getattr(pos, f), getattr(one, f)) for f in ("rows", "cols", "heights", "widths"))
        patches = torch.randn(u * grid[0] * grid[1], cfg.patch_dim)
        a, b = patches.clone().requires_grad_(), patches.clone().requires_grad_()
        want, got = vit(a, [grid] * u), vit.forward_dense(b, grid)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        want.square().sum().backward()
        got.square().sum().backward()
        torch.testing.assert_close(b.grad, a.grad, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError):
        vit.forward_dense(torch.randn(65, cfg.patch_dim), (8, 8))


# --- config and checkpoints ---------------------------------------------------------


def test_config_round_trip_and_old_json(mini):
    assert mini.abs_pos_grid == 8 and get_omni_config("mini").vision.abs_pos_grid == 8
    assert from_dict(VisionConfig, json.loads(json.dumps(to_dict(mini)))) == mini
    omni = get_omni_config("mini")
    assert from_dict(OmniConfig, json.loads(json.dumps(to_dict(omni)))) == omni
    # a config written before the option existed has no key: it loads as off (what its weights are)
    old = to_dict(omni)
    del old["vision"]["abs_pos_grid"], old["vision"]["abs_pos_init_std"]
    assert from_dict(OmniConfig, old).vision.abs_pos_grid == 0
    with pytest.raises(ValueError, match="abs_pos_grid must be >= 0"):
        LongCatViT(dataclasses.replace(mini, abs_pos_grid=-1))


def test_checkpoint_keys_and_loading(tmp_path, mini):
    on = VisionEncoder(mini)
    shapes = {k: tuple(v.shape) for k, v in on.vit.state_dict().items()}
    off_keys = set(VisionEncoder(_off(mini)).vit.state_dict())
    assert set(shapes) - off_keys == {"embeddings.position_embedding.weight"}
    assert shapes["embeddings.position_embedding.weight"] == (64, mini.hidden_size)
    # weights saved without the table do not load into a model with it: the error names the key
    old = VisionEncoder(_off(mini)).vit.state_dict()
    with pytest.raises(RuntimeError, match=r"Missing key.*embeddings\.position_embedding\.weight"):
        on.vit.load_state_dict(old)
    torch.save(old, tmp_path / "vision_model.pt")
    with pytest.raises(ValueError, match=r"(?s)vision_model\.pt.*embeddings\.position_embedding\.weight"):
        load_into(on.vit, tmp_path / "vision_model.pt")
    # ...and load as trained with the option off; a non-strict load reports the key as missing
    VisionEncoder(_off(mini)).vit.load_state_dict(old)
    missing, _ = on.vit.load_state_dict(old, strict=False)
    assert missing == ["embeddings.position_embedding.weight"]
    # a saved model with the table round-trips
    again = VisionEncoder(mini)
    again.load_state_dict(on.state_dict())
    assert torch.equal(again.vit.embeddings.position_embedding.weight, on.vit.embeddings.position_embedding.weight)


def test_training_checkpoint_without_the_table_does_not_resume_silently(tmp_path, mini):
    """mdp's resume loads optimizer state partially; the model's keys must all be there,
    or a run saved before the option would go on with a fresh random table."""
    import torch.distributed as dist

    from mdp import checkpoint

    def parts(cfg):
        torch.manual_seed(0)
        enc = VisionEncoder(cfg)
        opt = torch.optim.AdamW(enc.parameters(), lr=1e-3)
        return enc, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)

    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        old, opt, sched = parts(_off(mini))
        old.vit(torch.randn(64, mini.patch_dim), [(8, 8)]).sum().backward()
        opt.step()
        checkpoint.save(str(tmp_path), 3, old, opt, sched, {"step": 3})
        lost = r"step-3 has no value for 1 model key\(s\): vit\.embeddings\.position_embedding\.weight"
        with pytest.raises(ValueError, match=lost):
            checkpoint.load(str(tmp_path), 3, *parts(mini), {"step": -1})
        same, opt2, sched2 = parts(_off(mini))
        extra = {"step": -1}  # the keys to restore, as mdp/curriculum/run.py passes them
        checkpoint.load(str(tmp_path), 3, same, opt2, sched2, extra)
        assert extra == {"step": 3} and torch.equal(same.vit.encoder.layers[0].attn.qkv.weight,
                                                     old.vit.encoder.layers[0].attn.qkv.weight)
    finally:
        dist.destroy_process_group()

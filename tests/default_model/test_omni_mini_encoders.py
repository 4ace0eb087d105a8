"""Encoder pre-training of the default model: slot targets from scene records, and a
few steps of each objective lower its loss on the test pack."""

from __future__ import annotations

import contextlib
import math

import numpy as np
import pytest
import torch

from mdp.curriculum.pretrain import (SLOT_CLASSES, encoder_augment, encoder_steps, pretrain_audio, pretrain_vision,
                                    slot_targets)
from omni.config import get_omni_config


def test_slot_targets_and_step_spec():
    from omni.synth.world import Scene, SceneObject

    objs = (SceneObject("star", "blue", "left", 0.18, 0.5, 0.1, 0.0), SceneObject("circle", "red", "top", 0.5, 0.18, 0.1, 0.0))
    y = slot_targets(Scene("s", "train", "image", 0.0, (20, 20, 20), objs))
    # POSITIONS = center, left, right, top, bottom; class = 1 + color * 4 + shape
    assert y == [0, 1 + 2 * 4 + 3, 0, 1, 0] and max(y) < SLOT_CLASSES
    assert encoder_steps({"vision": 5, "audio": 0}) == {"vision": 5, "audio": 0} and encoder_steps({}) == {}
    with pytest.raises(ValueError, match="pretrain.steps"):
        encoder_steps({"hearing": 5})
    assert encoder_augment(("vision", "audio")) == {"vision", "audio"} and encoder_augment(()) == set()
    with pytest.raises(ValueError, match="pretrain.augment"):
        encoder_augment(("vision", "true"))


def test_pretraining_lowers_each_loss(mini_pack):
    from encoders.audio import StreamingAudioEncoder
    from encoders.vision import VisionEncoder
    from mdp.curriculum.data import pack_cmvn
    from omni.synth.pack import Pack
    from omni.tokenizer import load_tokenizer

    torch.manual_seed(0)
    pack, cfg, none = Pack(mini_pack), get_omni_config("mini"), contextlib.nullcontext
    vis, _ = pretrain_vision(VisionEncoder(cfg.vision), pack, 40, 16, 2e-3, 0, none)
    assert sum(vis[-5:]) / 5 < 0.6 * vis[0], vis
    audio = StreamingAudioEncoder(cfg.audio)
    mean, istd = pack_cmvn(pack, audio.frontend, num_clips=32)
    audio.frontend.cmvn.mean.copy_(mean)
    audio.frontend.cmvn.istd.copy_(istd)
    aud = pretrain_audio(audio, pack, load_tokenizer(), 40, 8, 2e-3, 0, none, pool=64)
    assert sum(aud[-5:]) / 5 < 0.6 * aud[0], aud
    # the augmented paths run end to end (their effect is measured by bench/encoder_pretrain.py)
    vis_aug, _ = pretrain_vision(VisionEncoder(cfg.vision), pack, 2, 4, 2e-3, 0, none, augment=True)
    aud_aug = pretrain_audio(audio, pack, load_tokenizer(), 2, 4, 2e-3, 0, none, pool=8, augment=True)
    assert all(map(math.isfinite, vis_aug + aud_aug))
    with pytest.raises(ValueError, match="ctc_vocab_size"):
        import dataclasses

        small = StreamingAudioEncoder(dataclasses.replace(cfg.audio, ctc_vocab_size=64))
        pretrain_audio(small, pack, load_tokenizer(), 1, 2, 1e-3, 0, none, pool=4)


def test_bench_encoder_pretrain_runs(tmp_path, mini_pack):
    import json
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = tmp_path / "enc.json"
    res = subprocess.run(
        [sys.executable, os.path.join(root, "bench", "encoder_pretrain.py"), "--train-pack", str(mini_pack),
         "--heldout-pack", str(mini_pack), "--vision-steps", "3", "--vision-batch", "4", "--audio-steps", "3",
         "--audio-batch", "2", "--audio-pool", "8", "--heldout-questions", "3", "--threads", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=300, env=dict(os.environ, PYTHONPATH=root),
    )
    assert res.returncode == 0, res.stderr[-2000:]
    rep = json.loads(out.read_text())
    assert len(rep["vision"]["losses"]) == 3 and 0 <= rep["vision"]["slot_accuracy"] <= 1
    assert [(a["cmvn"].split()[0], a["augment"]) for a in rep["audio"]] == [("pack", True), ("pack", False), ("identity", False)]
    assert all(a["heldout_questions"] == 3 and a["heldout_token_error_rate"] >= 0 for a in rep["audio"])
    assert "held-out token error" in res.stdout


def _bench_module():
    import importlib.util
    import os

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "bench",
                        "encoder_pretrain.py")
    spec = importlib.util.spec_from_file_location("encoder_pretrain_bench", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_audio_arms_parse_and_refuse_unknown_keys():
    bench = _bench_module()
    arm = bench.parse_arm("both, longer: augment=1; speaker=0.15; steps=3600")
    assert arm == {"arm": "both, longer", "cmvn": "pack", "augment": 1, "speaker": 0.15, "steps": 3600, "bank": 1,
                   "sentences": 1, "rewordings": 1}
    assert bench.parse_arm("words: sentences=0")["sentences"] == 0
    assert bench.parse_arm("templates: rewordings=0")["rewordings"] == 0
    assert bench.parse_arm("raw: cmvn=identity; bank=0")["cmvn"] == "identity"
    for bad in ("no name", ": augment=1", "x: warp=0.1", "x: cmvn=global", "x: steps"):
        with pytest.raises(ValueError):
            bench.parse_arm(bad if ":" in bad else bad + ": cmvn=nope")


def test_bench_speaker_warp_arm_trains_and_scores_its_pool(tmp_path, mini_pack):
    """An arm with the speaker warp and its own step count runs end to end and reports
    both the held-out and the train-pool token error."""
    import argparse

    from omni.synth.pack import Pack
    from omni.tokenizer import load_tokenizer

    bench = _bench_module()
    cfg = get_omni_config("mini")
    cfg.audio.ctc_vocab_size = 512
    args = argparse.Namespace(seed=0, device="cpu", audio_steps=2, audio_batch=2, lr=1e-3, audio_pool=6,
                              bank_pool=0, heldout_questions=2, split_questions=2,
                              train_pack=str(mini_pack), heldout_pack=str(mini_pack))
    pack = Pack(str(mini_pack))
    sets = bench.scoring_sets(args, pack, pack)
    assert [len(v) for v in sets.values()] == [2, 2, 2, 2]
    # the re-spoken sets say the same texts in other voices: other audio
    assert [t for _, t in sets["heldout_texts_train_voices"]] == [t for _, t in sets["heldout"]]
    assert not np.array_equal(sets["heldout_texts_train_voices"][0][0], sets["heldout"][0][0])
    rep = bench.audio_run(args, pack, cfg, load_tokenizer(), bench.parse_arm("w: speaker=0.15; steps=3"), None, sets)
    assert rep["steps"] == 3 and len(rep["losses"]) == 3 and rep["speaker"] == 0.15
    for name in sets:
        assert 0 <= rep[f"{name}_token_error_rate"]


def test_perturb_speed_gain_noise_bounds_and_determinism():
    import torch

    from mdp.curriculum.pretrain import perturb

    t = torch.arange(16000) / 16000
    wav = (0.3 * torch.sin(2 * torch.pi * 220 * t)).float()
    a = perturb([wav, wav[:8000]], torch.Generator().manual_seed(5))
    b = perturb([wav, wav[:8000]], torch.Generator().manual_seed(5))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    for out, src in zip(a, (wav, wav[:8000])):
        assert len(src) / 1.15 - 1 <= len(out) <= len(src) / 0.85 + 1
        m = min(len(out), len(src)) // 2
        assert not torch.allclose(out[:m], src[:m])
        rms = out.pow(2).mean().sqrt() / src.pow(2).mean().sqrt()
        assert 10 ** (-6.5 / 20) < rms < 10 ** (6.5 / 20)  # the gain range, noise at >= 10 dB SNR
    # the noise: a silent question stays silent (noise scales with the signal)
    assert perturb([torch.zeros(4000)], torch.Generator().manual_seed(0))[0].abs().max() == 0


def test_mask_frames_masks_only_valid_frames_and_leaves_the_input():
    import torch

    from mdp.curriculum.pretrain import mask_frames

    feats = torch.ones(3, 20, 6)
    lens = torch.tensor([20, 10, 3])
    out = mask_frames(feats, lens, torch.Generator().manual_seed(1), masks=2, width=2)
    assert torch.equal(feats, torch.ones(3, 20, 6))
    zero = (out == 0).all(-1)
    assert (out[~zero] == 1).all()  # whole frames masked, nothing else touched
    assert int(zero.sum(1).max()) <= 4
    assert not zero[1, 10:].any() and not zero[2, 3:].any()
    assert zero.any()


def test_still_patches_round_trip_and_jitter_keeps_the_layout():
    import numpy as np
    import torch

    from encoders.image_processing import preprocess_image
    from mdp.curriculum.pretrain import jitter_stills, patch_stills, unpatch_stills
    from omni.config import get_omni_config

    cfg = get_omni_config("mini").vision
    imgs = [(np.random.default_rng(k).random((112, 112, 3)) * 255).astype(np.uint8) for k in range(3)]
    units = [preprocess_image(im, cfg) for im in imgs]
    patches = torch.stack([u.patches for u in units])
    grid = tuple(units[0].grid)
    stills = unpatch_stills(patches, grid, cfg)
    assert stills.shape == (3, 3, 112, 112)
    assert torch.equal(patch_stills(stills, cfg), patches)  # exactly what preprocess_image makes

    # a plain square on a flat background: jitter moves it by <= 3 px and keeps it whole
    flat = torch.zeros(2, 3, 28, 28)
    flat[:, :, 10:16, 10:16] = 1.0
    a = jitter_stills(flat, torch.Generator().manual_seed(3), noise=0.0)
    b = jitter_stills(flat, torch.Generator().manual_seed(3), noise=0.0)
    assert torch.equal(a, b)
    for img in a:
        lit = img[0] > img[0].min() + 0.5 * (img[0].max() - img[0].min())
        ys, xs = torch.nonzero(lit, as_tuple=True)
        assert len(ys) == 36 and 7 <= int(ys.min()) <= 13 and 7 <= int(xs.min()) <= 13

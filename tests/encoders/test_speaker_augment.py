"""Speaker augmentation of log-mel features: what each part does, and that only a
training front end applies it, repeatably from its generator."""

from __future__ import annotations

import math

import torch

from encoders.speaker_augment import SpeakerAugment


def _gen(seed: int = 0) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def _bump(rows: int, frames: int = 5, bins: int = 80, at: float = 40.0) -> torch.Tensor:
    k = torch.arange(bins, dtype=torch.float32)
    return torch.exp(-0.5 * ((k - at) / 1.5) ** 2).expand(rows, frames, bins).clone()


def test_off_is_the_identity():
    x = torch.randn(3, 7, 80)
    aug = SpeakerAugment(warp=0, tilt_db=0, masks=0, generator=_gen())
    assert torch.equal(aug.mask(aug.spectral(x)), x)


def test_warp_moves_formants_within_its_range_and_differs_per_row():
    aug = SpeakerAugment(warp=0.15, tilt_db=0, masks=0, generator=_gen(1))
    y = aug.spectral(_bump(32))
    peaks = y[:, 0].argmax(-1).float()
    ratio = peaks / 40.0
    assert bool(((ratio >= 1 / 1.15 - 0.03) & (ratio <= 1.15 + 0.03)).all()), peaks
    assert len(set(peaks.tolist())) >= 5  # each row another vocal tract
    assert torch.equal(y[:, 0], y[:, -1])  # one warp per row, every frame alike


def test_tilt_is_a_bounded_linear_ramp():
    x = torch.randn(8, 4, 80)
    aug = SpeakerAugment(warp=0, tilt_db=6.0, masks=0, generator=_gen(2))
    d = aug.spectral(x) - x
    assert torch.allclose(d[:, 0], d[:, 3], atol=1e-6)
    steps = d[:, 0, 1:] - d[:, 0, :-1]
    assert torch.allclose(steps, steps[:, :1].expand_as(steps), atol=1e-5)  # linear in the bin
    span = (d[:, 0, -1] - d[:, 0, 0]).abs()
    assert float(span.max()) <= 6.0 * math.log(10) / 10 + 1e-5 and float(span.max()) > 0.1


def test_masks_zero_whole_bands_of_every_frame():
    x = torch.randn(16, 6, 80) + 5.0  # nothing is zero by chance
    aug = SpeakerAugment(warp=0, tilt_db=0, masks=2, mask_bins=10, generator=_gen(3))
    y = aug.mask(x)
    zero = y == 0
    assert torch.equal(zero[:, 0], zero[:, -1])
    per_row = zero[:, 0].sum(-1)
    assert int(per_row.max()) <= 20 and int(per_row.sum()) > 0
    assert torch.equal(y[~zero], x[~zero])


def test_frontend_applies_it_in_training_only_and_repeatably():
    from encoders.frontend import AudioFrontend
    from omni.config import get_flavor

    fe = AudioFrontend(get_flavor("audio", "mini"))
    wav = torch.randn(2, 16000) * 0.1
    clean = fe.features(wav)
    fe.augment = SpeakerAugment(generator=_gen(4))
    fe.eval()
    assert torch.equal(fe.features(wav), clean)  # serving and evaluation never hear it
    fe.train()
    a = fe.features(wav)
    fe.augment.generator.manual_seed(4)
    b = fe.features(wav)
    assert torch.equal(a, b) and not torch.allclose(a, clean)


def test_recipe_attaches_it_to_the_training_audio_front_end():
    from mdp.curriculum.run import _attach_speaker_augment
    from mdp.recipes import get_recipe

    class T:
        device = torch.device("cpu")

        def __init__(self):
            from mdp.model import OmniTrainModel
            from mdp.trainer import build_config

            self.model = OmniTrainModel(build_config(get_recipe("omni-mini-smoke")))

    off, on = T(), T()
    _attach_speaker_augment(get_recipe("omni-mini-smoke"), off)
    _attach_speaker_augment(get_recipe("omni-mini-smoke").override(["speaker_augment=0.1"]), on)
    assert off.model.encoders["audio"].frontend.augment is None
    assert on.model.encoders["audio"].frontend.augment.warp == 0.1

"""A short codec training run lowers the loss; checkpoints resume; the CLI answers --help."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from speech.losses import MelLoss
from speech.train import Trainer, TrainOptions


def _voiced_clips(n: int = 6, seconds: float = 1.0, sr: int = 16000) -> list[np.ndarray]:
    """Harmonic tones with gliding pitch and a syllable-like envelope: speech-ish, made here."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sr)) / sr
    clips = []
    for _ in range(n):
        f0 = rng.uniform(90, 220) * (1 + 0.2 * np.sin(2 * math.pi * rng.uniform(0.5, 2) * t))
        phase = 2 * math.pi * np.cumsum(f0) / sr
        x = sum(np.sin(k * phase) / k for k in range(1, 12))
        env = 0.5 + 0.5 * np.sin(2 * math.pi * 4 * t) ** 2
        clips.append((0.15 * x * env).astype(np.float32))
    return clips


@torch.no_grad()
def _eval_loss(trainer: Trainer, batch: torch.Tensor) -> float:
    trainer.model.eval()
    y = trainer.model(batch)[0][..., : batch.shape[-1]]
    trainer.model.train()
    return float(MelLoss()(y, batch))


@pytest.mark.slow
def test_short_training_lowers_loss_and_resumes(tmp_path) -> None:
    torch.manual_seed(0)
    clips = _voiced_clips()
    opts = TrainOptions(out_dir=str(tmp_path / "run"), flavor="debug", steps=24, batch_size=2, segment_seconds=0.36,
                        lr=2e-3, warmup_steps=4, adv_start=0.75, log_every=4, progress=False)
    trainer = Trainer(opts, clips)
    fixed = trainer.corpus.batch(4, trainer.num_samples, torch.Generator().manual_seed(123))
    before = _eval_loss(trainer, fixed)
    history = trainer.run()
    after = _eval_loss(trainer, fixed)
    assert after < 0.85 * before, (before, after)
    assert any("disc" in row for row in history)  # the adversarial phase ran
    for name in ("ckpt.pt", "log.csv", "log.json", "loss.png", os.path.join("codec", "model.safetensors")):
        assert os.path.isfile(tmp_path / "run" / name), name
    # resume continues from step 24 to 28 with the saved history
    opts.steps, opts.resume = 28, True
    resumed = Trainer(opts, clips)
    assert resumed.step == 24
    rows = resumed.run()
    assert rows[-1]["step"] == 28 and len(json.loads((tmp_path / "run" / "log.json").read_text())) == len(rows)


def test_cli_help_and_bad_data(tmp_path) -> None:
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    out = subprocess.run([sys.executable, "-m", "omni.cli", "train-codec", "--help"], capture_output=True, text=True, env=env)
    assert out.returncode == 0 and "--generate-minutes" in out.stdout and "--resume" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "omni.cli", "train-codec", "--data", str(tmp_path / "none")],
                         capture_output=True, text=True, env=env)
    assert bad.returncode != 0 and "no such file or folder" in bad.stderr

"""The omni-mini recipe end to end on CPU: staged training lowers the loss, stops
and resumes, exports an OmniModel directory that loads and answers via `omni chat`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

pytestmark = pytest.mark.slow


def test_omni_mini_smoke_trains_resumes_exports(tmp_path, mini_pack):
    import torch.distributed as dist

    from mdp.curriculum.run import run_curriculum
    from mdp.recipes import get_recipe
    from mdp.train import init_distributed

    out = tmp_path / "run"
    r = get_recipe("omni-mini-smoke").override(
        [f"pack={mini_pack}", f"out_dir={out}", "stage_steps=speech:3,vision:2,dialogue:5", "stage_samples=8",
         "save_every=2", "lr=3e-3", "min_lr=3e-3", f"eval_pack={mini_pack}", "eval_every=2", "eval_samples=4"]
    )
    init_distributed()
    try:
        assert run_curriculum(r, stop_after=2) is None  # stops inside the first stage
        assert not (out / "speech" / "done.json").exists()
        model_dir = run_curriculum(r)  # resumes from the speech checkpoint at step 1
    finally:
        dist.destroy_process_group()
    speech = json.loads((out / "speech" / "loss.json").read_text())
    assert [row["step"] for row in speech] == [0, 1, 2]
    # per-term losses and the reply's teacher-forced text accuracy are logged with the loss
    assert all(0.0 <= row["text_acc"] <= 1.0 and row["text_loss"] > 0 for row in speech)
    for stage in ("speech", "vision", "dialogue"):
        assert (out / stage / "done.json").exists() and (out / stage / "loss.png").exists()
    assert (out / "loss.png").exists()
    # held-out probes: every 2 steps inside a stage and at each stage's end, counted in
    # samples seen over all stages (batch 4), none repeated by the resumed call
    probes = json.loads((out / "heldout.json").read_text())
    assert [(p["stage"], p["step"], p["samples_seen"]) for p in probes] == [
        ("speech", 2, 12), ("vision", 1, 20), ("dialogue", 1, 28), ("dialogue", 3, 36), ("dialogue", 4, 40)]
    assert all(p["n"] == 4 and 0.0 <= p["accuracy"] <= 1.0 and p["device"].endswith("CPU") for p in probes)
    assert (out / "heldout.png").exists()
    # 8 samples per stage seen again and again: the loss must fall well below its start
    dialogue = [row["loss"] for row in json.loads((out / "dialogue" / "loss.json").read_text())]
    assert min(dialogue[-2:]) < 0.6 * speech[0]["loss"], (speech, dialogue)

    from omni.model import OmniModel

    m = OmniModel.from_pretrained(model_dir)
    assert m.config.llm.hidden_size == 256 and os.path.getsize(os.path.join(model_dir, "model.safetensors")) < 50e6
    # the audio features were normalized with the pack's statistics from the start, and
    # the exported model carries them: over pack questions (fresh microphones) they are
    # about zero-mean, unit-variance per bin, where raw log-mel bins sit far from zero
    import numpy as np

    from omni.synth.pack import Pack

    pack, rng = Pack(mini_pack), np.random.default_rng(11)
    with torch.no_grad():
        clips = [torch.from_numpy(pack.question_audio(i % len(pack), rng))[None] for i in range(128)]
        fe = m.audio_encoder.frontend
        f = torch.cat([fe.cmvn(fe.fbank(c))[0] for c in clips])
        raw = torch.cat([fe.fbank(c)[0] for c in clips])
    # (128 draws against the 256 of the estimate: sampling spread allowed; 24 draws of a
    # 23-question pack gave a mean std from 0.41 to 1.0 with the seed, the noise draws dominating)
    assert float(f.mean(0).abs().max()) < 0.6 and 0.6 < float(f.std(0).mean()) < 1.6, (f.mean(0), f.std(0))
    assert float(raw.mean()) > 5.0  # what an identity CMVN would pass on
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    res = subprocess.run(
        [sys.executable, "-m", "omni.cli", "chat", "--model", str(model_dir), "--text", "say red",
         "--max-new-tokens", "24", "--out", str(tmp_path / "reply.wav")],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "reply.wav").exists()


def test_deadline_right_after_a_periodic_checkpoint(tmp_path, mini_pack, monkeypatch):
    """The time budget ends just after a periodic save: the run stops without saving
    that step twice (which once failed: the checkpoint directory already existed),
    and the same command resumes from it."""
    import time as real_time
    import types

    import torch.distributed as dist

    from mdp import loop
    from mdp.curriculum import run as omni_mini
    from mdp.curriculum.run import run_curriculum
    from mdp.recipes import get_recipe
    from mdp.train import init_distributed

    ticks = iter(range(1000))  # one tick per clock read: the start, then one check per step
    clock = types.SimpleNamespace(monotonic=lambda: float(next(ticks)), perf_counter=real_time.perf_counter)
    out = tmp_path / "run"
    r = get_recipe("omni-mini-smoke").override(
        [f"pack={mini_pack}", f"out_dir={out}", "stage_steps=speech:4,vision:1,dialogue:1", "stage_samples=8",
         "save_every=2", "time_budget_s=2.5"]
    )
    init_distributed()
    try:
        monkeypatch.setattr(omni_mini, "time", clock)
        monkeypatch.setattr(loop, "time", clock)  # the deadline is set and checked there
        # deadline 2.5: steps 0 and 1 run (checks at 1 and 2), the save after step 1, out of time at step 2
        assert run_curriculum(r) is None
        assert sorted(os.listdir(out / "speech" / "checkpoints")) == ["step-1"]
        monkeypatch.setattr(omni_mini, "time", real_time)
        monkeypatch.setattr(loop, "time", real_time)
        model_dir = run_curriculum(r.override(["time_budget_s=0"]))
    finally:
        dist.destroy_process_group()
    speech = json.loads((out / "speech" / "loss.json").read_text())
    assert [row["step"] for row in speech] == [0, 1, 2, 3]
    assert model_dir is not None and os.path.isfile(os.path.join(model_dir, "model.safetensors"))

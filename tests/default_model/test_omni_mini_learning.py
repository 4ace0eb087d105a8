"""What the omni-mini recipe learns from: every still-only sample is answerable from
its still, a question's answer carries a real share of the loss weight, and one
optimizer state and LR schedule run through all stages, resumable mid-stage."""

from __future__ import annotations

import json
import math

import pytest
import torch

STAGE_LEN = {"speech": 176, "vision": 176, "dialogue": 384}


def _dataset(pack, stage: str, manifest: str, rows: int, seed: int = 0):
    from encoders.audio import num_encoder_frames
    from mdp.curriculum.data import PackDataset, answer_code_table
    from mdp.curriculum.stages import write_stage_manifest
    from omni.config import get_omni_config
    from omni.tokenizer import load_tokenizer

    cfg, tok = get_omni_config("mini"), load_tokenizer()
    write_stage_manifest(pack, stage, manifest, rows, seed)
    ds = PackDataset(manifest, pack, cfg, tok, STAGE_LEN[stage], lambda n: num_encoder_frames(n, cfg.audio),
                     lambda n: 0, answer_code_table(pack))
    ds.augment = False
    return ds, cfg, tok


def test_still_layouts_never_ask_video_questions(tmp_path, mini_pack):
    from mdp.curriculum.stages import STAGES, STILL_LAYOUTS, VIDEO_FAMILIES, write_stage_manifest
    from omni.synth.pack import Pack

    pack = Pack(mini_pack)
    motion = {int(i) for f in VIDEO_FAMILIES for i in pack.indices(f)}
    assert motion, "the test pack has no motion question: widen it"
    streamed = 0
    for stage in STAGES:
        path = tmp_path / f"{stage}.jsonl"
        write_stage_manifest(pack, stage, str(path), 600, seed=4)
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            if rec["layout"] in STILL_LAYOUTS:
                query = pack.meta["sample_queries"][rec["i"]]
                assert pack.family(rec["i"]) not in VIDEO_FAMILIES, rec
                assert query["type"] not in ("what_moving", "which_way"), rec
            elif rec["layout"] == "stream" and rec["i"] in motion:  # shown the video's frame pairs
                assert pack.meta["scene_kinds"][rec["scene"]] == "video", rec
                streamed += 1
    assert streamed > 0  # motion questions are still trained, where the frames are shown


def test_answer_marks_and_their_share_of_the_loss_weight(tmp_path, mini_pack):
    from mdp.data import CAT_NONE, stack
    from mdp.loss import answer_share
    from mdp.curriculum.data import ANSWER_LAYOUTS
    from mdp.recipes import Recipe
    from omni.synth.pack import Pack

    pack = Pack(mini_pack)
    ds, cfg, tok = _dataset(pack, "dialogue", str(tmp_path / "d.jsonl"), 48)
    samples = [ds.sample(i) for i in range(48)]
    pad = cfg.llm.pad_token_id
    for rec, s in zip(ds.records, samples):
        marked = s.answer.nonzero().flatten()
        if rec["layout"] not in ANSWER_LAYOUTS:
            assert len(marked) == 0, rec
            continue
        # the answer's words and its end: reply labels, never a text pad
        want = tok.encode(pack.meta["answer_texts"][rec["answer"]]) + [tok.special.eos]
        assert s.text_labels[marked].tolist() == want, rec
        assert (s.text_cat[marked] > CAT_NONE).all() and (s.text_labels[marked] != pad).all()
    batch = stack(samples)
    w = Recipe().loss.answer_weight
    before, after = answer_share(batch, pad, 1.0, 1.0), answer_share(batch, pad, 1.0, w)
    # (this tiny pack's mix has more answers than the real one, where the share is ~0.2 at weight 1)
    assert 0.0 < before < after and after >= 0.30, (before, after)
    assert after == pytest.approx(w * before / (w * before + 1 - before))  # only the answer's labels grew


def test_answer_weight_multiplies_only_the_marked_labels():
    from mdp.loss import WEIGHTS, stage1_loss

    g = torch.Generator().manual_seed(0)
    B, T, V, Va, pad = 2, 6, 11, 7, 3
    tl, al = torch.randn(B, T, V, generator=g), torch.randn(B, T, 4, Va, generator=g)
    lab = torch.full((B, T, 8), -100, dtype=torch.long)
    lab[..., 0] = torch.tensor([[4, 5, 3, 3, 6, -100], [7, 8, 9, -100, -100, -100]])
    lab[..., 1] = (lab[..., 0] >= 0).long()  # text replies
    lab[..., 6] = 0
    lab[..., 7] = torch.tensor([[1, 1, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0]])
    counts = torch.tensor([8.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    ce = torch.nn.functional.cross_entropy(tl.flatten(0, 1), lab[..., 0].flatten(), ignore_index=-100,
                                           reduction="none").view(B, T)
    w = torch.where(lab[..., 7] > 0, 5.0, 1.0)
    want = WEIGHTS["text"] * (ce * w * (lab[..., 1] == 1)).sum() / 8
    got = stage1_loss(tl, al, lab, counts, text_pad_id=pad, answer_weight=5.0)
    assert torch.allclose(got, want.to(got.dtype))
    # 7 label columns (no answer mask) and weight 1: the plain loss
    assert torch.allclose(stage1_loss(tl, al, lab[..., :7], counts, text_pad_id=pad, answer_weight=5.0),
                          stage1_loss(tl, al, lab, counts, text_pad_id=pad))


def _lr_expected(r, g: int, total: int) -> float:
    """The recipe's schedule at global step g (warm-up, then cosine over `total`)."""
    if g < r.optim.warmup_steps:
        return r.optim.lr * (g + 1) / r.optim.warmup_steps
    t = min(1.0, (g - r.optim.warmup_steps) / max(1, total - r.optim.warmup_steps))
    return r.optim.min_lr + 0.5 * (r.optim.lr - r.optim.min_lr) * (1 + math.cos(math.pi * t))


@pytest.mark.slow
@pytest.mark.parametrize("train_path", ["loader", "device"])
def test_one_optimizer_over_the_stages_resumes_exactly(tmp_path, mini_pack, train_path):
    """One AdamW state and one schedule from stage to stage; a run stopped inside the
    speech, vision and dialogue stages and resumed logs the uninterrupted run's losses."""
    import torch.distributed as dist

    from mdp.curriculum.run import run_curriculum
    from mdp.recipes import get_recipe
    from mdp.train import init_distributed

    steps = {"speech": 2, "vision": 3, "dialogue": 4}

    def recipe(out, *extra):
        return get_recipe("omni-mini-smoke").override(
            [f"pack={mini_pack}", f"out_dir={out}", "stage_steps=" + ",".join(f"{k}:{v}" for k, v in steps.items()),
             "stage_samples=8", "lr=3e-3", "min_lr=1e-4", "warmup_steps=2", "encoder_steps=",
             f"train_path={train_path}", "bucket_window=1", *extra])

    def logs(out):
        return {s: json.loads((out / s / "loss.json").read_text()) for s in steps}

    if dist.is_initialized():
        dist.destroy_process_group()
    init_distributed()
    try:
        # checkpoints (the slow part) only where a run resumes: every step of the stopped runs,
        # each stage's end (always saved) of the uninterrupted ones
        whole = tmp_path / "whole"
        assert run_curriculum(recipe(whole, "save_every=100")) is not None
        parts = tmp_path / "parts"
        for stop in (1, 2, 3):  # stops after speech step 0, vision step 1, dialogue step 2 (a cap per stage)
            assert run_curriculum(recipe(parts, "save_every=1"), stop_after=stop) is None
        assert run_curriculum(recipe(parts, "save_every=1")) is not None
        per_stage = tmp_path / "per_stage"
        assert run_curriculum(recipe(per_stage, "optimizer_per_stage=true", "save_every=100")) is not None
        # the AdamW moments ran through every stage: the last checkpoint counts all the steps
        from mdp import checkpoint
        from mdp.curriculum.run import MiniTrainer, _stage_recipe

        for out, want in ((whole, sum(steps.values())), (per_stage, steps["dialogue"])):
            tr = MiniTrainer(_stage_recipe(recipe(out), "dialogue", steps["dialogue"]), torch.device("cpu"))
            ckpt = out / "dialogue" / "checkpoints"
            checkpoint.load(str(ckpt), checkpoint.latest_step(str(ckpt)), tr.model, tr.optimizer, tr.scheduler, {})
            assert int(tr.optimizer.state[tr.model.llm.lm_head.weight]["step"]) == want
    finally:
        dist.destroy_process_group()
    a, b, c = logs(whole), logs(parts), logs(per_stage)
    r = recipe(whole)
    lag = 1 if train_path == "loader" else 0  # the loader path logs the lr after the scheduler's step
    total, g = sum(steps.values()), 0
    for s in steps:
        assert [x["step"] for x in a[s]] == [x["step"] for x in b[s]] == list(range(steps[s]))
        assert [x["loss"] for x in b[s]] == [x["loss"] for x in a[s]], s
        for x in a[s]:  # one warm-up, one cosine over all stages
            assert x["lr"] == pytest.approx(_lr_expected(r, g + lag, total), rel=1e-6), (s, x)
            g += 1
        # optimizer_per_stage: every stage warms up again over its own steps
        assert c[s][0]["lr"] == pytest.approx(_lr_expected(r, lag, steps[s]), rel=1e-6)
    assert [x["loss"] for x in c["vision"]] != [x["loss"] for x in a["vision"]]

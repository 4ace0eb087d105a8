"""Single-process checks: parallel-dims validation, meshes on a fake 64-rank group,
recipes, manifests, the loss normalization and the pipeline split."""

from __future__ import annotations

import json

import pytest
import torch
import torch.distributed as dist

from mdp.data import CAT_AUDIO_TEXT, CAT_TEXT, IGNORE, Dataset, Layout, ManifestError, read_manifest, stack
from mdp.dims import Meshes, ParallelConfigError, ParallelDims
from mdp.loss import TERMS, WEIGHTS, label_counts, pack_labels, stage1_loss, stat_record
from mdp.pipeline import stage_layers
from mdp.recipes import get_recipe


@pytest.mark.parametrize(
    "kw, msg",
    [
        (dict(world_size=6, pp=4), "not divisible by inner_dp"),
        (dict(world_size=8, dp=2, pp=2), "!= world_size"),
        (dict(world_size=8, ep=3), "ep=3 must divide dp=8"),
        (dict(world_size=4, cp=2), "context parallelism is not implemented"),
        (dict(world_size=8, enc_shard=3), "enc_shard=3"),
        (dict(world_size=4, pp=2, pp_microbatches=1), "1F1B"),
        (dict(world_size=4, pp=0), "pp=0"),
    ],
)
def test_invalid_dims_have_clear_errors(kw, msg) -> None:
    with pytest.raises(ParallelConfigError, match=msg):
        ParallelDims(**kw).resolved()


def test_dims_derived_values() -> None:
    d = ParallelDims(16, pp=2, ep=4).resolved()
    assert (d.dp, d.inner_dp, d.dp_rest, d.enc_shard, d.enc_replicate, d.pp_microbatches) == (8, 2, 2, 2, 8, 2)


def test_meshes_on_a_fake_64_rank_group() -> None:
    from torch.testing._internal.distributed.fake_pg import FakeStore

    dist.init_process_group("fake", store=FakeStore(), rank=5, world_size=64)
    try:
        m = Meshes(ParallelDims(64, pp=4, ep=4, enc_shard=8), "cpu")
        assert m.llm.mesh_dim_names == ("dp_rest", "ep", "pp", "cp")
        assert m.llm.shape == (4, 4, 4, 1) and m.encoders.shape == (8, 8)
        assert m.dp.size() == 16 and m.inner_dp.size() == 4
        # rank 5 = dp index 1, pp stage 1: its inner-DP group is the contiguous ranks 4..7
        assert (m.dp_rank, m.pp_rank, m.inner_rank) == (1, 1, 1)
        assert m.inner_dp.mesh.flatten().tolist() == [4, 5, 6, 7]
        with pytest.raises(ParallelConfigError, match="process group has 64 ranks"):
            Meshes(ParallelDims(32), "cpu")
    finally:
        dist.destroy_process_group()


def test_recipe_overrides() -> None:
    r = get_recipe("debug").override(["steps=7", "ep_overlap=false", "lr=1e-3", "manifest=x.jsonl"])
    assert (r.steps, r.parallel.ep_overlap, r.optim.lr, r.data.manifest) == (7, False, 1e-3, "x.jsonl")
    with pytest.raises(ValueError, match="unknown recipe field 'stepz'"):
        r.override(["stepz=1"])
    with pytest.raises(ValueError, match="is a bool"):
        r.override(["ep_overlap=maybe"])
    with pytest.raises(KeyError, match="unknown recipe"):
        get_recipe("nope")


def test_manifest_errors_name_line_and_field(tmp_path) -> None:
    p = tmp_path / "m.jsonl"
    p.write_text(json.dumps({"segments": [{"text": [1, 2]}]}) + "\n" + json.dumps({"segments": [{"smell": "x"}]}) + "\n")
    with pytest.raises(ManifestError, match=r"m.jsonl:2: segments\[0\] has unknown kind 'smell'"):
        read_manifest(str(p))
    p.write_text(json.dumps({"segments": [{"speech": {"codes": [[1, 2, 3]]}}]}) + "\n")
    with pytest.raises(ManifestError, match=r"m.jsonl:1: segments\[0\].speech.codes"):
        read_manifest(str(p))
    with pytest.raises(ManifestError, match="does not exist"):
        read_manifest(str(tmp_path / "none.jsonl"))


def test_labels_and_loss_normalization(tmp_path) -> None:
    p = tmp_path / "m.jsonl"
    rows = [
        {"segments": [{"text": [20, 21, 22]}, {"speech": {"text": [30], "codes": [[40, 41, 42, 43], [44, 45, 46, 47]]}}]},
        {"segments": [{"text": [23, 24]}]},
    ]
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    ds = Dataset(str(p), Layout(5, 6, pad_id=3), seq_len=8, num_tokens=lambda k, d: 0, cost=lambda k, d: 0.0)
    s0 = ds.sample(0)
    # targets: next ids; the speech frame at position 3 is predicted from position 2
    assert s0.text_labels[:4].tolist() == [21, 22, 30, 3]
    assert s0.audio_labels[2].tolist() == [40, 41, 42, 43] and bool(s0.first_audio[2])
    batch = stack([s0, ds.sample(1)])
    counts = label_counts(batch)
    assert counts.tolist() == [3.0, 8.0, 2.0, 1.0]  # text targets, audio labels, audio-text, first-audio
    # the loss is a sum over shards when each shard is normalized by the global counts
    g = torch.Generator().manual_seed(0)
    tl, al = torch.randn(2, 8, 512, generator=g), torch.randn(2, 8, 4, 96, generator=g)
    lab = pack_labels(batch)
    whole = stage1_loss(tl, al, lab, counts)
    parts = stage1_loss(tl[:1], al[:1], lab[:1], counts) + stage1_loss(tl[1:], al[1:], lab[1:], counts)
    torch.testing.assert_close(whole, parts, rtol=1e-6, atol=0)
    # the logged terms: weighted, they are the loss; per shard they sum to the whole
    stats, shard = [], []
    loss = stage1_loss(tl, al, lab, counts, stats)
    w = torch.tensor([WEIGHTS[t] for t in TERMS], dtype=torch.float64)
    torch.testing.assert_close((stats[0][:4] * w).sum(), loss.double(), rtol=1e-6, atol=0)
    stage1_loss(tl[:1], al[:1], lab[:1], counts, shard)
    stage1_loss(tl[1:], al[1:], lab[1:], counts, shard)
    torch.testing.assert_close(shard[0] + shard[1], stats[0], rtol=1e-6, atol=1e-12)
    # text accuracy: logits that put the label first on exactly one of the 5 text targets
    is_text = (lab[..., 1] == CAT_TEXT) | (lab[..., 1] == CAT_AUDIO_TEXT)
    pos = is_text.nonzero().tolist()
    assert len(pos) == 5
    sharp = torch.zeros(2, 8, 512)
    b, t = pos[2]
    sharp[b, t, lab[b, t, 0]] = 10.0
    sharp[..., 500] += 1.0  # everywhere else the argmax is a token no label uses
    acc = []
    stage1_loss(sharp, al, lab, counts, acc)
    assert stat_record(acc[0])["text_acc"] == pytest.approx(1 / 5)
    # text pads (the filler after a spoken reply's words) are not counted
    pad = int(lab[pos[0][0], pos[0][1], 0])
    n_pad = sum(int(lab[bb, tt, 0]) == pad for bb, tt in pos)
    acc = []
    stage1_loss(sharp, al, lab, counts, acc, text_pad_id=pad)
    right = 1 if int(lab[b, t, 0]) != pad else 0
    assert acc[0][5].item() == 5 - n_pad and stat_record(acc[0])["text_acc"] == pytest.approx(right / (5 - n_pad))
    # word_weight scales the words' cross-entropy in the loss (not the pads', not the logged terms)
    heavy_stats = []
    heavy = stage1_loss(tl, al, lab, counts, heavy_stats, text_pad_id=pad, word_weight=3.0)
    torch.testing.assert_close(heavy_stats[0][:4], stats[0][:4])
    text_ce = torch.nn.functional.cross_entropy(tl.flatten(0, 1), lab[..., 0].flatten(), ignore_index=IGNORE,
                                                reduction="none").view(2, 8)
    words = is_text & (lab[..., 0] != pad)
    extra = 0.0
    for term, category in (("text", CAT_TEXT), ("audio_text", CAT_AUDIO_TEXT)):
        sel = words & (lab[..., 1] == category)
        k = TERMS.index(term)
        extra += WEIGHTS[term] * 2.0 * float(text_ce[sel].sum()) / max(float(counts[k]), 1.0)
    torch.testing.assert_close(heavy.double(), loss.double() + extra, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="text_pad_id"):
        stage1_loss(tl, al, lab, counts, word_weight=2.0)


def test_stage_layers() -> None:
    assert stage_layers(5, 2) == [[0, 1, 2], [3, 4]]
    with pytest.raises(ValueError, match="at least 4 decoder layers"):
        stage_layers(3, 4)


def test_trained_state_dict_loads_into_the_serving_model() -> None:
    from mdp.model import OmniTrainModel
    from omni.config import get_omni_config
    from omni.model import OmniModel

    cfg = get_omni_config("debug")
    torch.manual_seed(0)
    train_sd = OmniTrainModel(cfg).state_dict()
    serve = OmniModel(cfg)
    assert set(train_sd) == set(serve.state_dict())
    serve.load_state_dict(train_sd, strict=True)
    assert torch.equal(serve.audio_head.embedding[0].weight, train_sd["audio_head.embedding.0.weight"])


def test_the_module_that_trains_is_the_module_that_serves() -> None:
    """One model: the training model is an OmniModel built the same way (same weights
    from the same seed), and it drops only the encoders its data never needs."""
    from mdp.model import OmniTrainModel
    from omni.config import get_omni_config
    from omni.model import OmniModel

    cfg = get_omni_config("debug")
    torch.manual_seed(0)
    train = OmniTrainModel(cfg)
    torch.manual_seed(0)
    serve = OmniModel(cfg)
    assert isinstance(train, OmniModel)
    serve_sd = serve.state_dict()
    assert all(torch.equal(v, serve_sd[k]) for k, v in train.state_dict().items())
    text_only = OmniTrainModel(cfg, modalities=("audio",))
    assert not hasattr(text_only, "vision") and hasattr(text_only, "audio_encoder")
    assert set(text_only.encoders) == {"audio"}
    assert all(not k.startswith("vision.") for k in text_only.state_dict())


def test_train_command_arguments() -> None:
    import argparse

    from mdp import cli, train

    p = argparse.ArgumentParser()
    cli.add_arguments(p)
    args = p.parse_args(["--nproc-per-node", "2", "--recipe", "debug", "--set", "pp=2", "--steps", "9", "--out-dir", "o"])
    r = train.recipe_from_args(args)
    assert (args.nproc_per_node, r.parallel.pp, r.steps, r.output.out_dir) == (2, 2, 9, "o")
    assert r.checkpoint_dir == "o/checkpoints"
    assert cli._forward_args(args)[:4] == ["--recipe", "debug", "--set", "pp=2"]
    with pytest.raises(ValueError, match="unknown recipe field"):
        train.recipe_from_args(p.parse_args(["--set", "nope=1"]))


def test_train_log_resumes_and_buffers(tmp_path) -> None:
    from mdp.log import BufferedTrainLog, TrainLog, logged_step

    class _Steps:
        def step(self, step: int) -> dict:
            return {"step": step, "loss": 1.0 / (step + 1), "lr": 0.1, "ignored": "x"}

    log = TrainLog(str(tmp_path), 0)
    for s in range(4):
        rec = logged_step(_Steps(), s, log, None)
        assert rec["seconds"] >= 0
    assert [r["step"] for r in json.loads((tmp_path / "loss.json").read_text())] == [0, 1, 2, 3]
    assert "ignored" not in log.rows[0] and "seconds" in log.rows[0]
    # a resume at step 2 keeps the entries before the checkpoint only
    assert [r["step"] for r in TrainLog(str(tmp_path), 2).rows] == [0, 1]
    buf = BufferedTrainLog(str(tmp_path / "b"), 0, every=3)
    for s in range(4):
        buf.write({"step": s, "loss": 1.0})
    assert len(json.loads((tmp_path / "b" / "loss.json").read_text())) == 3  # written at the third record
    buf.flush()
    assert len(json.loads((tmp_path / "b" / "loss.json").read_text())) == 4
    assert (tmp_path / "b" / "loss.csv").read_text().splitlines()[0].startswith("step,loss")


def test_the_loss_log_survives_a_kill_during_its_write(tmp_path, monkeypatch):
    """A run killed while rewriting loss.json (the kill -9 a resume must survive) leaves the
    previous log whole: the write goes aside and is renamed over it."""
    from mdp.log import TrainLog

    log = TrainLog(str(tmp_path), 0)
    log.write({"step": 0, "loss": 2.0})
    log.write({"step": 1, "loss": 1.5})

    def killed(obj, fh, **kw):  # the process dies after a partial write
        fh.write("[{\"step\": 0,")
        raise KeyboardInterrupt

    monkeypatch.setattr(json, "dump", killed)
    with pytest.raises(KeyboardInterrupt):
        log.write({"step": 2, "loss": 1.0})
    monkeypatch.undo()
    assert [r["step"] for r in TrainLog(str(tmp_path), 2).rows] == [0, 1]  # the resume reads the last whole log

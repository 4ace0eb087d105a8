"""The device batch path of the default model (`train_path=device`) against the
loader path (`PackDataset` + `MiniTrainer`), on the tests' tiny pack.

Compared with the microphone augmentation off in both (the clean clip; the stream's
start time and buffered frame are taken from the loader's draws):

* token rows: ids, codec rows, text labels and categories, audio labels and
  first-audio flags are equal, exactly, over the device batch's length; the loader's
  positions past it are all padding;
* media: every placeholder position reads the same source: the same patch rows of
  the same still / frame pair, or the same audio samples of the same frame;
* model: with the same weights, the LLM's input rows and the stage-1 loss agree
  to float32 tolerance (the encoders batch differently: packed vs dense ViT
  attention, audio buffers of another width).

Then: a device step reads nothing back to the host (`HostReads(strict=True)` makes
the Tensor methods that would raise when project code calls them), and the staged
recipe trains, resumes and exports with `train_path=device`.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

STAGE_LEN = {"speech": 176, "vision": 176, "dialogue": 384}


def _world(path):
    from mdp.curriculum.data import answer_code_table
    from mdp.curriculum.tables import PackTables
    from omni.config import get_omni_config
    from omni.synth.pack import Pack
    from omni.tokenizer import load_tokenizer

    pack = Pack(path)
    cfg, tok = get_omni_config("mini"), load_tokenizer()
    codes = answer_code_table(pack)
    return pack, cfg, tok, codes, PackTables(pack, cfg, tok, codes, torch.device("cpu"))


@pytest.fixture(scope="module")
def world(mini_pack):
    return _world(mini_pack)


def _frames_ready_loop(cfg):
    from encoders.audio import num_encoder_frames, samples_needed

    def ready(n: int) -> int:
        total, j = num_encoder_frames(n, cfg.audio), 0
        while j < total and samples_needed(j, cfg.audio) <= n:
            j += 1
        return j

    return ready


def _both(world, stage: str, tmp_path, rows: int = 40, seq_len: int | None = None, tools_declared: float = 0.0,
          typed_speech_weight: float | None = None, typed_video_weight: float | None = None):
    """Loader samples and the device plan of the same records, augmentation off."""
    from encoders.audio import num_encoder_frames
    from mdp.curriculum.data import PackDataset
    from mdp.curriculum.plan import StepPlanner, draw, finalize
    from mdp.curriculum.stages import write_stage_manifest

    pack, cfg, tok, codes, tables = world
    seq_len = seq_len or STAGE_LEN[stage]
    manifest = str(tmp_path / f"{stage}.jsonl")
    write_stage_manifest(pack, stage, manifest, rows, 3, tools_declared=tools_declared,
                         typed_speech_weight=typed_speech_weight, typed_video_weight=typed_video_weight)
    ds = PackDataset(manifest, pack, cfg, tok, seq_len, lambda n: num_encoder_frames(n, cfg.audio),
                     _frames_ready_loop(cfg), codes)
    ds.augment = False
    idx = np.arange(rows)
    samples = [ds.sample(int(i)) for i in idx]
    planner = StepPlanner(tables, ds.records, 0, rows, seq_len, window=1, augment=False, jitter=False)
    d = draw(np.random.default_rng(0), rows, len(tables.clip_len), augment=False, jitter=False)
    d["t0"] = np.array([int(round(s.stream[0] * 10)) for s in samples])
    d["sparse"] = np.array([s.stream[1] for s in samples])
    plan = finalize(tables, planner.rows(idx, None, d), seq_len)
    return ds, samples, plan


def test_closed_form_frame_counts_equal_the_encoders(world):
    from encoders.audio import num_encoder_frames
    from mdp.curriculum.plan import encoder_frames, frames_ready

    cfg = world[1]
    n = np.arange(0, 60000, 7)
    assert np.array_equal(encoder_frames(n, cfg.audio), [num_encoder_frames(int(v), cfg.audio) for v in n])
    loop = _frames_ready_loop(cfg)
    assert np.array_equal(frames_ready(n, cfg.audio), [loop(int(v)) for v in n])


@pytest.mark.parametrize("stage", ["speech", "vision", "dialogue"])
def test_device_batches_equal_loader_batches(world, stage, tmp_path):
    ds, samples, plan = _both(world, stage, tmp_path)
    layouts = _check_equal(world, samples, plan, STAGE_LEN[stage])
    if stage == "dialogue":
        assert {"stream", "image", "audio"} <= {ds.records[i]["layout"] for i in range(len(samples))}
        assert any(s.stream[1] for s in samples), "no buffered still in the rows: widen the test"
    assert layouts


@pytest.mark.parametrize("stage", ["vision", "dialogue"])
def test_typed_greetings_after_the_speech_stage_build_alike_on_both_paths(world, stage, tmp_path):
    """`typed_speech_weight`: greetings and repeats typed alone (`omni chat --text`) and beside a
    still of some scene (`--image --text`), answered as without it, on both paths."""
    from mdp.curriculum.data import SPEECH_FAMILIES

    pack = world[0]
    typed_of = lambda ds: [r for r in ds.records if r["layout"] in ("text", "image")
                           and pack.family(r["i"]) in SPEECH_FAMILIES]
    ds, samples, plan = _both(world, stage, tmp_path, rows=80, typed_speech_weight=1.0)
    typed = typed_of(ds)
    alone = [r for r in typed if r["layout"] == "text"]
    beside = [r for r in typed if r["layout"] == "image"]
    assert len(alone) >= 4 and len(beside) >= 4 and {r["voice"] for r in typed} == {True, False}
    assert all(0 <= r["scene"] < pack.num_scenes for r in beside)  # a picture the question is not about
    assert all(r["answer"] == int(pack.sample_answer[r["i"]]) for r in typed)  # the greeting's own answer
    assert _check_equal(world, samples, plan, STAGE_LEN[stage])
    ds, _, _ = _both(world, stage, tmp_path, rows=80)  # the shipped recipe: none after the speech stage
    assert not typed_of(ds)


def test_questions_typed_beside_a_video_build_alike_on_both_paths(world, tmp_path):
    """`typed_video_weight`: visual questions typed after the scene's frame pairs (motion ones
    beside their whole video), no audio, on both paths."""
    pack = world[0]
    ds, samples, plan = _both(world, "dialogue", tmp_path, rows=60, typed_video_weight=1.0)
    typed = [n for n, r in enumerate(ds.records) if r["layout"] == "video"]
    assert len(typed) >= 8 and {ds.records[n]["voice"] for n in typed} == {True, False}
    assert any(len(pack.scene_frames(ds.records[n]["scene"])) > 2 for n in typed), "widen the test: no video scene"
    for n in typed:  # one frame pair a chunk, all of the scene's frames; no audio placeholder
        pairs = -(-len(pack.scene_frames(ds.records[n]["scene"])) // 2)
        assert len(samples[n].items) == pairs and all(it.kind == "image" for it in samples[n].items)
    assert _check_equal(world, samples, plan, STAGE_LEN["dialogue"])
    ds, _, _ = _both(world, "dialogue", tmp_path, rows=60)  # the shipped recipe: none
    assert not [r for r in ds.records if r["layout"] == "video"]


def test_device_batches_equal_loader_batches_with_a_speech_delay(mini_pack, tmp_path):
    """With `text_audio_delay` the two paths still build the same batches: the delay's pad
    rows, and the first-audio label on each reply's first frame."""
    import dataclasses

    from mdp.curriculum.tables import PackTables

    pack, cfg, tok, codes, _ = _world(mini_pack)
    cfg = dataclasses.replace(cfg, text_audio_delay=2)
    world = (pack, cfg, tok, codes, PackTables(pack, cfg, tok, codes, torch.device("cpu")))
    ds, samples, plan = _both(world, "dialogue", tmp_path)
    assert _check_equal(world, samples, plan, STAGE_LEN["dialogue"])
    spoken = [s for s in samples if (s.audio_labels[:, 0] != -100).any()]
    assert spoken, "widen the test: no spoken reply"
    for s in spoken:  # two pad rows, then the first frame
        first = int(torch.nonzero(s.audio_labels[:, 0] != -100)[0])
        assert (s.audio_labels[first : first + 2] == 3).all() and s.first_audio[first + 2]


def test_device_tool_conversations_equal_loader_ones(tool_world, tmp_path):
    """The tool layout (a system turn, the request with or without the camera, two replies),
    and questions asked with the tool declared (the system turn, then an ordinary reply)."""
    world = _world(tool_world[0] / "train.pack.npz")
    ds, samples, plan = _both(world, "dialogue", tmp_path, rows=120, seq_len=1024, tools_declared=0.5)
    tool = [i for i in range(len(samples)) if ds.records[i]["layout"] == "tool"]
    assert {ds.records[i]["scene"] >= 0 for i in tool} == {True, False}, "widen the test: both kinds of request"
    assert {bool(ds.records[i].get("typed")) for i in tool} == {True, False}, "widen the test: typed requests"
    declared = {ds.records[i]["layout"] for i in range(len(samples)) if ds.records[i].get("system")}
    assert {"stream", "image", "audio"} <= declared, "widen the test: questions asked with the tool declared"
    _check_equal(world, samples, plan, 1024)


def _check_equal(world, samples, plan, seq_len: int) -> bool:
    """The device rows equal the loader samples (tokens, labels, and what fills every placeholder)."""
    from mdp.data import CAT_NONE, IGNORE, stack
    from mdp.curriculum.build import build_audio, build_patches, expand_segments, to_device

    tables = world[4]
    old = stack(samples)
    p = to_device(tables, plan, torch.device("cpu"))
    new = expand_segments(tables, p["seg"], plan.T)
    T = plan.T
    assert T <= seq_len and T % 16 == 0
    for key in ("ids", "codec", "text_labels", "text_cat", "audio_labels", "first_audio", "answer"):
        assert torch.equal(new[key], old[key][:, :T]), key
    assert old["answer"].any() and not old["answer"][:, T:].any()  # answer marks (`answer_weight`) to compare
    # past the device batch's length the loader rows hold padding only
    assert (old["ids"][:, T:] == tables.sp.pad).all() and (old["text_cat"][:, T:] == CAT_NONE).all()
    assert (old["audio_labels"][:, T:] == IGNORE).all() and not old["first_audio"][:, T:].any()
    # media: what fills each placeholder position
    patches = build_patches(tables, p["units"]) if len(plan.unit_frames) else None
    pcm = build_audio(tables, p, augment=False, gen=None) if len(plan.audio_rows) else None
    ut, per = tables.unit_tokens, tables.grid[0] * tables.grid[1]
    arow = {int(b): a for a, b in enumerate(plan.audio_rows)}
    checked = 0
    for b, s in enumerate(samples):
        starts = np.cumsum([0] + [it.num_tokens for it in s.items])
        feat = new["feat"][b]
        ph = ((s.ids == tables.sp.image_pad) | (s.ids == tables.sp.audio_pad)).nonzero().flatten().tolist()
        assert ph == (feat > 0).nonzero().flatten().tolist()
        for pos, row in zip(ph, s.order):
            k = int(np.searchsorted(starts, row, side="right") - 1)
            item, j = s.items[k], row - starts[k]
            f = int(feat[pos]) - 1
            if item.kind == "image":
                u, jj = divmod(f, ut)
                assert jj == j
                assert torch.equal(patches[u * per + 2 * j : u * per + 2 * j + 2], item.data["patches"][2 * j : 2 * j + 2])
            else:
                f -= len(plan.unit_frames) * ut
                a, jj = divmod(f, plan.F)
                assert jj == j and a == arow[b]
                want = item.data["pcm"]
                assert torch.equal(pcm[a, : len(want)], want) and not pcm[a, len(want):].any()
            checked += 1
    assert checked > 0
    return True


@pytest.fixture(scope="module")
def trainer(world, tmp_path_factory):
    """A device-path trainer of the mini model on CPU in fp32 (one-process group)."""
    import torch.distributed as dist

    from mdp.data import default_layout
    from mdp.curriculum.run import _stage_recipe
    from mdp.curriculum.device import DeviceMiniTrainer
    from mdp.recipes import get_recipe
    from mdp.train import init_distributed

    init_distributed()
    work = tmp_path_factory.mktemp("device_trainer")
    r = _stage_recipe(get_recipe("omni-mini-smoke"), "dialogue", 8)
    r = r.replace(global_batch=6, output={"out_dir": str(work)}, numerics={"bf16": "off"},
                  optim={"lr": 3e-3, "min_lr": 3e-3, "warmup_steps": 1})
    tr = DeviceMiniTrainer(r, torch.device("cpu"))
    tr.layout = default_layout(tr.cfg.llm.pad_token_id, tr.cfg.audio_pad_id)
    yield tr
    if dist.is_initialized():
        dist.destroy_process_group()


def test_device_loss_equals_loader_loss(world, trainer, tmp_path):
    """Same weights, same records: the LLM input rows and the loss agree."""
    from mdp.loss import label_counts, pack_labels
    from mdp.curriculum.run import pack_step
    from mdp.curriculum.build import expand_segments, to_device

    tr = trainer
    ds, samples, plan = _both(world, "dialogue", tmp_path, rows=10)
    tr.tables, tr.augment = world[4], False
    with torch.no_grad():
        tr._batches = iter([pack_step(samples)])
        batch, items, kinds, ntok = tr._load(0)
        bplan, mine = tr.balance.distribute(items, [it.cost for it in items])
        gathered, _ = tr._encode(bplan, mine, kinds, ntok)
        ph = (batch["ids"] == tr.layout.image_pad_id) | (batch["ids"] == tr.layout.audio_pad_id)
        x_old = tr.model.embed_placeholders(batch["ids"], batch["codec"], gathered, ph)
        h = tr.model.run_layers(x_old, final_norm=True)
        # the answer and word weights apply on both paths alike
        assert tr.r.loss.answer_weight != 1.0 and batch["answer"].any()
        loss_old = tr.model.loss_from_hidden(h, pack_labels(batch), label_counts(batch), None, tr.r.loss.word_weight,
                                             tr.r.loss.answer_weight)

        p = to_device(tr.tables, plan, tr.device)
        new = expand_segments(tr.tables, p["seg"], plan.T)
        feats = tr.encoders(plan, p)
        x_new = tr.embed_inputs(new, feats)
        loss_new = tr.forward_loss(new, feats)
    assert torch.allclose(x_new, x_old[:, : plan.T], atol=2e-5, rtol=1e-5)
    assert torch.allclose(loss_new, loss_old, rtol=1e-5), (float(loss_new), float(loss_old))


def test_the_audio_heads_on_the_spoken_positions_only_give_the_same_loss_and_gradients(world, trainer, tmp_path):
    """`StepPlan.audio_labels` counts the positions with audio labels on the host; the audio
    heads run on those alone (`audio_rows`): the loss and every gradient are the full one's."""
    from mdp.curriculum.build import expand_segments, to_device
    from mdp.curriculum.device import audio_rows
    from mdp.data import IGNORE
    from mdp.loss import label_counts, pack_labels

    tr = trainer
    _, _, plan = _both(world, "dialogue", tmp_path, rows=16)
    batch = expand_segments(world[4], to_device(world[4], plan, torch.device("cpu"))["seg"], plan.T)
    spoken = batch["audio_labels"][..., 0] != IGNORE
    assert plan.audio_labels == int(spoken.sum()) > 0 and int(spoken.sum()) < spoken.numel() // 2
    n = plan.audio_labels
    rows = audio_rows(batch, n, multiple=64)  # padded with position 0 (a row's first: no audio label)
    assert len(rows) % 64 == 0 and len(rows) > n and not spoken[0, 0]
    assert torch.equal(rows[:n], spoken.flatten().nonzero().squeeze(1)) and not rows[n:].any()
    assert torch.equal(audio_rows(batch, n, multiple=1), rows[:n])
    labels, counts = pack_labels(batch), label_counts(batch)
    h = torch.randn(*batch["ids"].shape, tr.cfg.llm.hidden_size, requires_grad=True)
    results = []
    for r in (None, rows, rows[:n]):
        tr.model.zero_grad(set_to_none=True)
        h.grad = None
        stats: list = []
        loss = tr.model.loss_from_hidden(h, labels, counts, stats, 2.0, 4.0, r)
        loss.backward()
        heads = [p.grad.clone() for p in tr.model.audio_head.parameters()]
        results.append((loss.detach(), stats[0], h.grad.clone(), heads))
    l0, s0, g0, a0 = results[0]
    for l1, s1, g1, a1 in results[1:]:
        assert torch.allclose(l0, l1, rtol=1e-6) and torch.allclose(s0, s1, rtol=1e-6)
        assert torch.allclose(g0, g1, atol=1e-7, rtol=1e-5)
        assert all(torch.allclose(x, y, atol=1e-7, rtol=1e-5) for x, y in zip(a0, a1))


def test_recomputed_layers_give_the_same_loss_gradients_and_expert_loads(world, trainer, tmp_path):
    """`parallel.recompute_positions`: a step over the limit keeps only the layers' inputs and runs
    them again in the backward; the loss, every gradient and the MoE load counts are the same
    (a layer run again routes again: its routing is counted once), and less is kept."""
    import dataclasses

    tr = trainer
    _, _, plan = _both(world, "dialogue", tmp_path, rows=8)
    tr.tables, tr.augment = world[4], False
    moes = tr.model.moe_layers()
    assert moes and not tr.recomputes(8, plan.T)  # the recipe's default: never
    results = []
    for limit in (0, 8 * plan.T - 1, 8 * plan.T):  # off, just over the limit (on), at the limit (off)
        tr.r = dataclasses.replace(tr.r, parallel=dataclasses.replace(tr.r.parallel, recompute_positions=limit))
        assert tr.recomputes(8, plan.T) == (limit == 8 * plan.T - 1)
        tr.model.zero_grad(set_to_none=True)
        for moe in moes:
            moe.load_acc.zero_()
            moe.real_per_token_acc.zero_()
        kept = []

        def keep(t):
            kept.append(t.untyped_storage().nbytes())
            return t

        p, batch = tr.data(plan)
        with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
            feats = tr.encoders(plan, p)
            loss, stats = tr.llm(batch, feats)
        grads = {n: q.grad.clone() for n, q in tr.model.named_parameters() if q.grad is not None}
        loads = [torch.cat([m.load_acc, m.real_per_token_acc]).clone() for m in moes]
        results.append((loss, stats, grads, loads, sum(kept)))
        assert not any(getattr(m, "load_paused", False) for m in moes)
    tr.r = dataclasses.replace(tr.r, parallel=dataclasses.replace(tr.r.parallel, recompute_positions=0))
    l0, s0, g0, m0, k0 = results[0]
    for l1, s1, g1, m1, _ in results[1:]:
        assert torch.allclose(l0, l1, rtol=1e-6) and torch.allclose(s0, s1, rtol=1e-6)
        assert g0.keys() == g1.keys() and len(g0) > 20
        for name in g0:
            assert torch.allclose(g0[name], g1[name], atol=1e-6, rtol=1e-4), name
        assert all(torch.equal(a, b) for a, b in zip(m0, m1)) and float(m0[0][:-2].sum()) > 0
    assert results[1][4] < 0.5 * k0 and results[2][4] == k0


def test_guard_catches_host_reads():
    from mdp.curriculum.device import HostReadError, HostReads

    x = torch.ones(3)
    with HostReads(strict=True), pytest.raises(HostReadError):
        float(x.sum())
    with HostReads() as seen:
        bool(x.any())
        x.tolist()
    assert len(seen.calls) == 2 and float(x.sum()) == 3.0


def test_device_step_reads_nothing_back(world, trainer, mini_pack, tmp_path):
    from mdp.curriculum.device import HostReads, materialize
    from mdp.curriculum.stages import write_stage_manifest

    pack, _, _, codes, tables = world
    manifest = str(tmp_path / "dialogue.jsonl")
    write_stage_manifest(pack, "dialogue", manifest, 24, 0)
    trainer.attach_device_data(manifest, pack, codes, tables=tables, window=2, augment=True)
    plans = [trainer.planner.plan(s) for s in range(3)]  # host work: numpy and the records' CPU permutation
    with HostReads(strict=True):
        recs = [trainer.run(plan) for plan in plans]
    vals = [materialize(r) for r in recs]
    assert all(np.isfinite(v["loss"]) and v["grad_norm"] > 0 for v in vals), vals
    assert trainer.expert_backend == "grouped_mm"  # the sort-based experts run on CPU


def test_trimmed_lengths_fall_in_few_buckets(world, tmp_path):
    """`bucket_length`: never shorter than asked, multiples of 16, at most seq_len,
    a few lengths per doubling; the planner's steps take them."""
    from mdp.curriculum.data import read_stage_manifest
    from mdp.curriculum.plan import LENGTH_MULTIPLE, StepPlanner, bucket_length
    from mdp.curriculum.stages import write_stage_manifest

    for per in (0, 1, 2, 4):
        got = [bucket_length(n, 384, per) for n in range(1, 500)]
        assert all(t >= min(n, 384) and t % LENGTH_MULTIPLE == 0 and t <= 384 for n, t in zip(range(1, 500), got))
        assert all(a <= b for a, b in zip(got, got[1:]))
        if per:  # at most `per` lengths in each octave past the first multiples of 16
            assert len({t for t in got if 64 < t <= 128}) <= per and len({t for t in got if 128 < t <= 256}) <= per
    assert sorted({bucket_length(n, 384, 0) for n in range(1, 385)}) == list(range(16, 385, 16))
    assert sorted({bucket_length(n, 384, 2) for n in range(1, 385)}) == [16, 32, 48, 64, 96, 128, 192, 256, 384]
    pack, tables = world[0], world[4]
    manifest = str(tmp_path / "dialogue.jsonl")
    write_stage_manifest(pack, "dialogue", manifest, 48, 0)
    recs = read_stage_manifest(manifest, len(pack), pack.num_scenes, len(pack.answer_offset) - 1)
    for per in (0, 2):
        planner = StepPlanner(tables, recs, 0, 6, 384, window=4, per_octave=per)
        for step in range(8):
            plan = planner.plan(step)
            assert plan.T == bucket_length(int(plan.rows.length.max()) - 1, 384, per)


def test_device_step_keeps_sdpa_off_cudnn(trainer):
    """The step's attention runs with cuDNN attention off (a plan per new shape) and
    torch's choice returns after it; an empty `attention` leaves torch's choice."""
    before = torch.backends.cuda.cudnn_sdp_enabled()
    with trainer._attention():
        assert not torch.backends.cuda.cudnn_sdp_enabled() and torch.backends.cuda.flash_sdp_enabled()
    assert torch.backends.cuda.cudnn_sdp_enabled() == before
    saved, trainer.attention = trainer.attention, ()
    try:
        with trainer._attention():
            assert torch.backends.cuda.cudnn_sdp_enabled() == before
    finally:
        trainer.attention = saved


@pytest.mark.slow
def test_device_path_trains_resumes_exports(tmp_path, mini_pack):
    """The staged recipe with `train_path=device`: the loss falls, a stopped run
    resumes, and the export loads."""
    import torch.distributed as dist

    from mdp.curriculum.run import run_curriculum
    from mdp.recipes import get_recipe
    from mdp.train import init_distributed

    out = tmp_path / "run"
    r = get_recipe("omni-mini-smoke").override(
        [f"pack={mini_pack}", f"out_dir={out}", "stage_steps=speech:3,vision:2,dialogue:6", "stage_samples=8",
         "save_every=2", "lr=3e-3", "min_lr=3e-3", "train_path=device", "bucket_window=2", "log_every=4"]
    )
    if dist.is_initialized():
        dist.destroy_process_group()
    init_distributed()
    try:
        assert run_curriculum(r, stop_after=2) is None
        model_dir = run_curriculum(r)
    finally:
        dist.destroy_process_group()
    speech = json.loads((out / "speech" / "loss.json").read_text())
    assert [row["step"] for row in speech] == [0, 1, 2]
    assert all(0.0 <= row["text_acc"] <= 1.0 for row in speech)
    # the plain stage-1 loss (the optimized one weights answers by `answer_weight`, so it
    # swings with the share of answers in a length-bucketed batch)
    from mdp.loss import WEIGHTS

    plain = lambda row: sum(w * row[f"{t}_loss"] for t, w in WEIGHTS.items())
    dialogue = [plain(row) for row in json.loads((out / "dialogue" / "loss.json").read_text())]
    assert min(dialogue[-2:]) < 0.6 * plain(speech[0]), (speech, dialogue)
    from omni.model import OmniModel

    assert OmniModel.from_pretrained(model_dir).config.llm.hidden_size == 256


def test_too_long_rows_are_replaced_by_later_records(world, tmp_path):
    """As `PackDataset.sample`: a row longer than seq_len + 1 takes the next record."""
    from mdp.curriculum.data import read_stage_manifest
    from mdp.curriculum.plan import StepPlanner, draw
    from mdp.curriculum.stages import write_stage_manifest

    pack, tables = world[0], world[4]
    manifest = str(tmp_path / "dialogue.jsonl")
    write_stage_manifest(pack, "dialogue", manifest, 60, 1)
    recs = read_stage_manifest(manifest, len(pack), pack.num_scenes, len(pack.answer_offset) - 1)
    idx = np.arange(60)
    d = draw(np.random.default_rng(1), 60, len(tables.clip_len), augment=True, jitter=True)
    free = StepPlanner(tables, recs, 0, 60, 384).rows(idx, None, d).length
    cap = int(np.sort(free)[40])  # about a third of the rows are too long for this seq_len
    planner = StepPlanner(tables, recs, 0, 60, cap - 1)
    rows = planner.rows(idx, None, d)
    assert (rows.length <= cap).all() and planner.too_long > 0
    moved = rows.index != idx
    assert moved.any() and (free[~moved] <= cap).all() and (free[moved] > cap).all()
    assert (((rows.index - idx) % 60)[moved] >= 1).all()


@pytest.mark.slow
def test_a_fine_tune_starts_from_a_model_and_keeps_its_tokenizer(tmp_path, mini_pack):
    """`curriculum.init_model`: the first stage starts from the model's weights (no encoder
    pre-training), and the run trains and exports with the model's own tokenizer: at lr 1e-30 and
    no expert-bias updates the export is the model it started from, tokenizer included."""
    import filecmp
    import os
    import shutil

    import torch.distributed as dist
    from safetensors.torch import load_file

    from mdp.curriculum.run import run_curriculum, run_tokenizer
    from mdp.recipes import get_recipe
    from mdp.train import init_distributed
    from omni.tokenizer import DEFAULT_CORPUS, build_default_tokenizer, load_tokenizer

    base = ["train_path=device", "bucket_window=2", "stage_samples=8", f"pack={mini_pack}"]
    first = get_recipe("omni-mini-smoke").override(base + [f"out_dir={tmp_path / 'a'}", "stage_steps=speech:1,vision:1,dialogue:1"])
    if dist.is_initialized():
        dist.destroy_process_group()
    init_distributed()
    try:
        init = run_curriculum(first)
        # a tokenizer other than the shipped asset: the same BPE on the asset corpus without its
        # lines about the light (other merges, the same 512 ids)
        shutil.rmtree(os.path.join(init, "tokenizer"))
        lines = [line for line in DEFAULT_CORPUS.read_text().splitlines() if "light" not in line]
        build_default_tokenizer(lines, os.path.join(init, "tokenizer"))
        tune = get_recipe("omni-mini-smoke").override(base + [
            f"out_dir={tmp_path / 'b'}", "stage_steps=dialogue:2", f"curriculum.init_model={init}",
            "lr=1e-30", "min_lr=1e-30", "weight_decay=0", "bias_update_rate=0"])
        text = "turn the light on"
        assert run_tokenizer(tune).encode(text) == load_tokenizer(os.path.join(init, "tokenizer")).encode(text)
        assert run_tokenizer(tune).encode(text) != load_tokenizer().encode(text)
        out = run_curriculum(tune)
        with pytest.raises(ValueError, match="not a 'debug' model"):  # another architecture
            run_curriculum(tune.replace(flavor="debug", output={"out_dir": str(tmp_path / "c")}))
    finally:
        dist.destroy_process_group()
    assert not (tmp_path / "b" / "encoders.json").exists()  # no encoder pre-training
    assert (tmp_path / "a" / "encoders.json").exists()
    a, b = load_file(os.path.join(init, "model.safetensors")), load_file(os.path.join(out, "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], rtol=0, atol=1e-20) for k in a)
    assert filecmp.cmp(os.path.join(init, "tokenizer", "tokenizer.json"), os.path.join(out, "tokenizer", "tokenizer.json"),
                       shallow=False)


def test_swapped_replies_train_the_speech_of_another_answer_and_not_its_text(world, tmp_path):
    """`curriculum.speech_swap`: a swapped spoken answer is written and spoken as another
    answer; its rows carry that answer's text ids and codec rows, its speech is labelled
    and its text is not (nor marked as an answer). The other rows are as without swaps."""
    from mdp.curriculum.build import expand_segments
    from mdp.curriculum.data import read_stage_manifest
    from mdp.curriculum.plan import COL, StepPlanner, draw, finalize
    from mdp.curriculum.stages import write_stage_manifest
    from mdp.data import CAT_AUDIO_ONLY, IGNORE

    pack, cfg, tok, codes, tables = world
    manifest = str(tmp_path / "dialogue.jsonl")
    write_stage_manifest(pack, "dialogue", manifest, 80, 2)
    recs = read_stage_manifest(manifest, len(pack), pack.num_scenes, len(pack.answer_offset) - 1)
    idx = np.arange(80)
    d = draw(np.random.default_rng(3), 80, len(tables.clip_len), augment=True, jitter=True, swap=0.5)
    assert 20 <= int((d["swap_to"] >= 0).sum()) <= 60
    planner = StepPlanner(tables, recs, 0, 80, 384)
    plain = planner.rows(idx, None, {k: v for k, v in d.items() if k != "swap_to"})
    rows = planner.rows(idx, None, d)
    swapped = (rows.seg[..., COL["cat"]] == CAT_AUDIO_ONLY).any(1)
    voiced_answers = np.array([recs[i]["voice"] and recs[i]["layout"] in ("text", "image", "audio", "stream", "tool",
                                                                          "say") for i in rows.index])
    assert swapped.sum() >= 10 and (swapped <= (voiced_answers & (d["swap_to"] >= 0))).all()
    assert (rows.seg[~swapped] == plain.seg[~swapped]).all()
    plan = finalize(tables, rows, 384)
    batch = expand_segments(tables, torch.from_numpy(plan.seg), plan.T)
    eos = tok.special.eos
    for b in np.flatnonzero(swapped):
        own = recs[rows.index[b]]["answer"]
        spoken = batch["text_cat"][b] == CAT_AUDIO_ONLY
        assert spoken.any() and (batch["text_labels"][b][spoken] == IGNORE).all()
        assert not batch["answer"][b].any() or recs[rows.index[b]]["layout"] == "tool"
        # the reply written is another answer's words (and end), and its speech is labelled
        start = int(torch.nonzero(spoken)[0]) + 1  # position p labels p + 1
        answer_ids = lambda a: tables.id_pool[tables.ans_off[a] : tables.ans_off[a] + tables.ans_len[a]].tolist()
        written = batch["ids"][b, start:].tolist()
        written = written[: written.index(eos) + 1]
        assert written != answer_ids(own) and written in [answer_ids(a) for a in np.flatnonzero(tables.voice_ok)]
        assert (batch["audio_labels"][b][spoken] != IGNORE).all()
    assert plan.audio_labels == int((batch["audio_labels"][..., 0] != IGNORE).sum())

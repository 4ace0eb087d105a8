"""The default model's data bridge: reply rows decode back through the generator's
segment machine, and the user-turn layouts equal what the serving model builds."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mdp.curriculum.data import PackDataset, answer_code_table, placeholder_order, speech_rows
from mdp.curriculum.stages import STAGES, stage_plan, stage_seq_lens, write_stage_manifest
from omni.config import get_omni_config
from omni.segments import SegmentMachine


@pytest.mark.parametrize("delay", [0, 2, 5])
def test_speech_rows_decode_through_segment_machine(delay):
    """Teacher-forced rows, read as the model's per-step outputs, give back the
    answer's text and exactly its codec frames (independent of the bridge), with the
    speech `delay` steps behind the text: its first rows are pads whatever the heads say."""
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 1024, (4, 9))
    text = [40, 41, 42, 2]
    tx, rows = speech_rows(text, codes, offset=32, audio_eos=2, pad=3, delay=delay)
    assert len(rows) == delay + 10 and rows[:delay] == [[3] * 4] * delay and rows[delay][0] == int(codes[0, 0]) + 32
    m = SegmentMachine(text_pad=3, text_eos=2, offset=32, audio_eos=2, audio_pad=3, delay=delay)
    for p, (t, row) in enumerate(zip(tx, rows)):  # position p outputs row p (the prompt's last position outputs row 0)
        noisy = [77, 78, 79, 80] if p < delay else row  # what the heads sample in the delay is not read
        r = m.step(t, noisy)
        assert r.next_codec == row  # the row fed back is the one trained on
        assert (r.frame is None) == (p <= delay)
    assert r.done and m.done
    assert m.text_ids == text
    np.testing.assert_array_equal(np.array(m.frames).T, codes)
    with pytest.raises(ValueError, match="only"):
        speech_rows(list(range(12)), codes[:, :3], 32, 2, 3)
    if delay:  # the delay gives a long text room: only speech rows past it are spoken
        assert len(speech_rows(list(range(12)), codes[:, :3], 32, 2, 3, delay=8)[1]) == 12


@pytest.fixture(scope="module")
def model():
    from omni.model import OmniModel

    torch.manual_seed(0)
    return OmniModel(get_omni_config("mini")).eval()


def _dataset(tmp_path, pack, lines, model):
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    enc = model.audio_encoder
    ds = PackDataset(str(path), pack, model.config, model.tokenizer, 640, enc.num_frames, model.frames_ready)
    ds.stream_jitter = False
    return ds


def test_layouts_equal_serving_prompts(tmp_path, mini_pack, model):
    from omni.generation import OmniRequest
    from omni.synth.pack import Pack

    pack = Pack(mini_pack)
    vis = next(i for i in range(len(pack)) if pack.sample_scene[i] >= 0 and pack.is_video(i))
    still = next(i for i in range(len(pack)) if pack.sample_scene[i] >= 0 and not pack.is_video(i))
    sp = next(i for i in range(len(pack)) if pack.sample_scene[i] < 0)
    rec = lambda i, layout, voice: {"i": i, "layout": layout, "scene": int(pack.sample_scene[i]),
                                     "answer": int(pack.sample_answer[i]), "voice": voice, "seed": 5}
    lines = [rec(vis, "stream", True), rec(still, "stream", False), rec(still, "image", True), rec(sp, "audio", True),
             rec(sp, "text", False), rec(vis, "video", True), rec(still, "video", False)]
    ds = _dataset(tmp_path, pack, lines, model)
    for n, line in enumerate(lines):
        s = ds.sample(n)
        i = line["i"]
        pcm = pack.question_audio(i, np.random.default_rng(line["seed"]))
        if line["layout"] == "stream":
            frames = pack.frames(i)
            chunks = -(-len(pcm) // 16000)
            frames = [frames[min(j, len(frames) - 1)] for j in range(2 * chunks)]
            req = OmniRequest(audio=pcm, video=frames, video_times=[j / 2 for j in range(len(frames))])
        elif line["layout"] == "video":  # `omni chat --video --text`: every frame at 2 FPS, then the question
            frames = list(pack.frames(i))
            req = OmniRequest(text=pack.question_text(i), video=frames, video_times=[j / 2 for j in range(len(frames))])
        elif line["layout"] == "image":
            req = OmniRequest(text=pack.question_text(i), images=[pack.frames(i)[0]])
        elif line["layout"] == "audio":
            req = OmniRequest(audio=pcm)
        else:
            req = OmniRequest(text=pack.question_text(i))
        prompt = model.prepare(req, voice=line["voice"]).ids
        L = len(prompt)
        assert s.ids[:L].tolist() == prompt.tolist(), line["layout"]
        # loss only on the reply: the last prompt position predicts its first token
        assert (s.text_cat[: L - 1] == 0).all() and s.text_cat[L - 1] > 0
        answer = model.tokenizer.encode(pack.answer_text(i)) + [model.tokenizer.special.eos]
        assert s.text_labels[L - 1 : L - 1 + len(answer)].tolist() == answer
        if line["voice"]:
            d = model.config.text_audio_delay  # the speech starts d rows after the text
            assert s.first_audio[L - 1] and (s.audio_labels[L - 1 : L - 1 + d] == 3).all()
            assert s.audio_labels[L - 1 + d, 0] >= 32
        else:
            assert (s.audio_labels == -100).all()
        # features in sequence order: item rows permuted onto the placeholders
        n_ph = int(((s.ids == model.tokenizer.special.image_pad) | (s.ids == model.tokenizer.special.audio_pad)).sum())
        assert sorted(s.order) == list(range(n_ph))


def test_placeholder_order_interleaves():
    from mdp.data import ModalityItem

    items = [ModalityItem("image", {}, 2, 1.0), ModalityItem("image", {}, 2, 1.0), ModalityItem("audio", {}, 3, 1.0)]
    ids = torch.tensor([9, 12, 12, 6, 9, 12, 12, 6, 6, 9])  # img0, a, img1, a a
    assert placeholder_order(ids, items, 12, 6) == [0, 1, 4, 2, 3, 5, 6]
    with pytest.raises(ValueError, match="differ"):
        placeholder_order(ids[:-3], items, 12, 6)


def test_stage_manifests_and_errors(tmp_path, mini_pack):
    from omni.synth.pack import Pack

    pack = Pack(mini_pack)
    for stage in STAGES:
        counts = write_stage_manifest(pack, stage, str(tmp_path / f"{stage}.jsonl"), 40, seed=1)
        assert sum(counts.values()) == 40
    again = write_stage_manifest(pack, "dialogue", str(tmp_path / "again.jsonl"), 40, seed=1)
    assert (tmp_path / "again.jsonl").read_text() == (tmp_path / "dialogue.jsonl").read_text() and again
    assert stage_plan({"speech": 3, "dialogue": 2}) == [("speech", 3), ("dialogue", 2)]
    with pytest.raises(ValueError, match="unknown stage"):
        stage_plan({"hearing": 3})
    assert stage_seq_lens({"speech": 9}, 5) == {name: 9 if name == "speech" else 5 for name in STAGES}
    with pytest.raises(ValueError, match="stage_seq_len"):
        stage_seq_lens({"hearing": 9}, 5)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"i": 0, "layout": "smell", "scene": -1, "answer": 0, "voice": True, "seed": 1}) + "\n")
    from mdp.data import ManifestError
    from mdp.curriculum.data import read_stage_manifest

    with pytest.raises(ManifestError, match="layout"):
        read_stage_manifest(str(bad), len(pack), pack.num_scenes, 10)
    codes = answer_code_table(pack)
    assert len(codes) == len(pack.answer_offset) - 1 and all(c.shape[0] == 4 and c.max() < 1024 for c in codes)


def test_too_long_sample_is_replaced(tmp_path, mini_pack, model):
    from omni.synth.pack import Pack

    from mdp.data import ManifestError

    pack = Pack(mini_pack)
    vis = next(i for i in range(len(pack)) if pack.sample_scene[i] >= 0)
    sp = next(i for i in range(len(pack)) if pack.sample_scene[i] < 0)
    lines = [{"i": vis, "layout": "stream", "scene": int(pack.sample_scene[vis]), "answer": int(pack.sample_answer[vis]),
              "voice": True, "seed": 1},
             {"i": sp, "layout": "text", "scene": -1, "answer": int(pack.sample_answer[sp]), "voice": False, "seed": 2}]
    ds = _dataset(tmp_path, pack, lines, model)
    ds.seq_len = 60  # the stream turn does not fit, the text question does
    s = ds.sample(0)
    assert ds.too_long == 1 and not (s.ids == model.tokenizer.special.audio_pad).any()
    ds.seq_len = 4
    with pytest.raises(ManifestError, match="exceed seq_len"):
        ds.sample(0)


def test_budget_plan_scales_stages_by_sequence_length(tmp_path, monkeypatch):
    import torch.distributed as dist

    from mdp.curriculum.run import _Plan
    from mdp.recipes import get_recipe

    monkeypatch.setattr(dist, "get_rank", lambda: 0)
    r = get_recipe("omni-mini").override([f"out_dir={tmp_path}", "stage_steps=speech:100,vision:100,dialogue:100",
                                          "stage_seq_len=speech:100,vision:100,dialogue:200", "time_budget_s=100"])
    plan = _Plan(r, resume=True)
    assert plan.needs_fit(0) and plan.needs_fit(2)
    # 10 of 100 speech steps done at 0.1 s/step; need 9 + 10 + 20 = 39 s, have 100 - 2 x 15 = 70 s: no change
    assert plan.fit(0, 10, 0.1, 100.0) == 100 and plan.stages[2] == ["dialogue", 100]
    plan = _Plan(r.override(["out_dir=" + str(tmp_path / "b")]), resume=True)
    # 1 s/step: need 90 + 100 + 200 = 390 s, have 0.95 x (130 - 30) = 95 s: scale 95/390
    total = plan.fit(0, 10, 1.0, 130.0)
    assert total == 10 + int(90 * 95 / 390) and plan.stages[1][1] == int(100 * 95 / 390)
    # the next stage re-fits with its own speed (faster than the first timing): it may
    # grow back up to the recipe's bound, never beyond; the stage before keeps its count
    assert plan.needs_fit(1) and not plan.needs_fit(0)
    assert plan.fit(1, 15, 0.2, 1000.0) == 100 and plan.stages[2][1] == 100
    assert plan.fit(2, 15, 0.5, 40.0) == 15 + int(85 * 38 / 42.5) and plan.stages[0][1] == total
    again = _Plan(r.override(["out_dir=" + str(tmp_path / "b")]), resume=True)  # a resume reads plan.json
    assert again.stages == plan.stages and again.bounds == [n for _, n in plan.stages]
    # a resumed run keeps the plan when its own budget holds the rest (it never grows) ...
    kept = [list(s) for s in again.stages]
    assert again.fit(2, 15, 0.001, 1000.0) == kept[2][1] and again.stages == kept
    # ... and shrinks the stage it trains (and the later ones) when it does not
    again = _Plan(r.override(["out_dir=" + str(tmp_path / "b")]), resume=True)
    left = kept[2][1] - 15
    assert left > 19 and again.fit(2, 15, 1.0, 20.0) == 15 + 19  # 0.95 x 20 s at 1 s/step
    assert again.stages[:2] == kept[:2]


def test_budget_plan_refits_from_the_wall_clock_later_in_a_stage(tmp_path, monkeypatch):
    """Fifteen timed steps size the stage first; every REFIT_EVERY steps after them the wall
    clock since the timed start (probes, checkpoints, slower steps included) sizes it again,
    so a call whose steps turn out slower than their first timing still ends its plan."""
    import torch.distributed as dist

    from mdp.curriculum.run import _Plan
    from mdp.recipes import get_recipe

    monkeypatch.setattr(dist, "get_rank", lambda: 0)
    r = get_recipe("omni-mini").override([f"out_dir={tmp_path}", "stage_steps=speech:10,vision:10,dialogue:2000",
                                          "time_budget_s=600"])
    plan = _Plan(r, resume=True)
    lo, hi = _Plan.TIMED
    timed = [0.2] * (hi - lo)

    def unread() -> float:  # the wall clock is read only when a later re-fit is due
        raise AssertionError("the wall clock was read")

    assert plan.speed(2, hi - 1, timed, unread) is None  # before the timed steps end: nothing due
    assert plan.speed(2, hi, timed, unread) == pytest.approx(0.2)  # their mean, once
    # the first fit: 1,980 steps at 0.2 s = 396 s fit in 0.95 x 500 s: the stage keeps its 2,000
    assert plan.fit(2, hi, 0.2, 500.0) == 2000
    assert plan.speed(2, hi + 1, timed, unread) is None and plan.speed(2, hi + 100, timed, unread) is None
    # 250 steps later the wall clock says 0.3 s/step (265 steps in 79.5 s): the rest no longer fits
    since = hi + _Plan.REFIT_EVERY
    sec = plan.speed(2, since, timed, lambda: 79.5)
    assert sec == pytest.approx(79.5 / (since - lo))
    left = 2000 - since
    total = plan.fit(2, since, sec, 400.0)
    assert total == since + int(left * 0.95 * 400.0 / (left * sec)) and total < 2000
    assert plan.speed(2, since + _Plan.REFIT_EVERY, timed, lambda: 150.0) is not None  # and again after as many
    # without a time budget nothing is ever due
    free = _Plan(get_recipe("omni-mini").override([f"out_dir={tmp_path / 'free'}"]), resume=True)
    assert free.speed(2, hi, timed, unread) is None and free.speed(2, since, timed, unread) is None


def test_a_time_budget_without_fit_keeps_every_step_of_the_recipe(tmp_path, monkeypatch):
    """`budget.fit=false` with a time budget: the calls stop at their budget and resume, but the
    plan is never sized to the time (no timing, no plan.json): every step of `stage_steps` is
    trained, over as many calls as it takes."""
    import torch.distributed as dist

    from mdp.curriculum.run import _Plan
    from mdp.recipes import get_recipe

    monkeypatch.setattr(dist, "get_rank", lambda: 0)
    r = get_recipe("omni-mini").override([f"out_dir={tmp_path}", "stage_steps=speech:541,vision:784,dialogue:1885",
                                          "time_budget_s=420", "budget.fit=false"])
    assert r.budget.fit is False and r.budget.time_s == 420
    for resume in (False, True):
        plan = _Plan(r, resume=resume)
        assert not plan.active and not any(plan.needs_fit(i) for i in range(3))
        assert plan.stages == [["speech", 541], ["vision", 784], ["dialogue", 1885]]
        lo, hi = _Plan.TIMED
        assert plan.speed(2, hi, [0.3] * (hi - lo), lambda: 1e9) is None
    assert not (tmp_path / "plan.json").exists()


def test_budget_plan_costs_a_stage_by_its_cost_length_where_named(tmp_path, monkeypatch):
    """A dialogue stage whose seq_len admits rare long rows (tool conversations) is costed as
    `curriculum.stage_cost_len` says, so the stages before it keep their steps."""
    import torch.distributed as dist

    from mdp.curriculum.run import _Plan
    from mdp.recipes import get_recipe

    monkeypatch.setattr(dist, "get_rank", lambda: 0)
    base = [f"out_dir={tmp_path}", "stage_steps=speech:100,vision:100,dialogue:100", "time_budget_s=100"]
    short = _Plan(get_recipe("omni-mini").override(base + ["stage_seq_len=speech:100,vision:100,dialogue:200"]), True)
    long_rows = ["stage_seq_len=speech:100,vision:100,dialogue:400"]
    longer = _Plan(get_recipe("omni-mini").override(base + long_rows), True)
    costed = _Plan(get_recipe("omni-mini").override(base + long_rows + ["stage_cost_len=dialogue:200"]), True)
    steps = [p.fit(0, 10, 1.0, 130.0) for p in (short, longer, costed)]
    assert steps[1] < steps[0] and steps[2] == steps[0]
    assert costed.stages == short.stages
    assert costed.estimate(2) == 2.0 and longer.estimate(2) == 4.0  # the speech timing scaled by the cost lengths
    with pytest.raises(ValueError, match="stage_seq_len"):  # checked as stage_seq_len is
        _Plan(get_recipe("omni-mini").override(base + ["stage_cost_len=chat:3"]), True)


def test_step_packing_round_trip():
    """Loader workers hand a step over as a few large tensors; the items rebuilt in
    the main process equal the samples' own (values, dtypes, shapes, order)."""
    import torch

    from mdp.data import ModalityItem, Sample
    from mdp.curriculum.run import pack_step, unpack_step

    def sample(n_items: int, seed: int) -> Sample:
        g = torch.Generator().manual_seed(seed)
        L = 6
        s = Sample(torch.randint(0, 9, (L,), generator=g), torch.zeros(L, 4, dtype=torch.long),
                   torch.zeros(L, dtype=torch.long), torch.zeros(L, dtype=torch.long),
                   torch.zeros(L, 4, dtype=torch.long), torch.zeros(L, dtype=torch.bool))
        for k in range(n_items):
            if k % 2:
                s.items.append(ModalityItem("audio", {"pcm": torch.randn(50 + k, generator=g)}, 3, 1.0))
            else:
                s.items.append(ModalityItem("image", {"patches": torch.randint(0, 255, (4, 6), generator=g).to(torch.uint8),
                                                      "grid": (2, 2)}, 2, 2.0))
        s.order = list(range(sum(it.num_tokens for it in s.items)))[::-1]
        return s

    samples = [sample(3, 0), sample(0, 1), sample(2, 2)]
    packed = pack_step(samples)
    assert len(packed["buffers"]) == 2  # one buffer per dtype, not one tensor per item
    items = unpack_step(packed)
    want = [it for s in samples for it in s.items]
    assert [it.kind for it in items] == [it.kind for it in want]
    for a, b in zip(items, want):
        assert a.num_tokens == b.num_tokens and a.cost == b.cost and a.data.keys() == b.data.keys()
        for k in a.data:
            if torch.is_tensor(b.data[k]):
                assert a.data[k].dtype == b.data[k].dtype and torch.equal(a.data[k], b.data[k])
            else:
                assert a.data[k] == b.data[k]
    # placeholder order: sample-local orders shifted by the tokens of the samples before
    n0 = sum(it.num_tokens for it in samples[0].items)
    assert packed["order"].tolist() == samples[0].order + [n0 + o for o in samples[2].order]
    assert torch.equal(packed["batch"]["ids"][2], samples[2].ids)


def test_training_process_threads():
    """One CPU thread for the training process on a GPU with loader workers (its
    parallel copies stall behind busy workers); torch's default otherwise; an
    explicit recipe value wins."""
    import torch

    from mdp.curriculum.run import main_process_threads

    cuda, cpu = torch.device("cuda", 0), torch.device("cpu")
    assert main_process_threads(0, 12, cuda) == 1
    assert main_process_threads(0, 0, cuda) == 0
    assert main_process_threads(0, 12, cpu) == 0
    assert main_process_threads(6, 12, cuda) == 6


def test_caption_layout_is_the_chat_prompt_and_names_every_object(tmp_path, mini_pack, model):
    """A caption sample is `omni chat --image X --text "describe the picture"`; its
    reply lists each object's color, shape and slot (reading order), in text."""
    from omni.generation import OmniRequest
    from omni.synth.pack import Pack
    from omni.synth.questions import CAPTION_PROMPT, scene_caption

    pack = Pack(mini_pack)
    k = max(range(pack.num_scenes), key=lambda j: len(pack.scene(j).objects))
    scene = pack.scene(k)
    ds = _dataset(tmp_path, pack, [{"i": 0, "layout": "caption", "scene": k, "answer": 0, "voice": False, "seed": 3}], model)
    s = ds.sample(0)
    prompt = model.prepare(OmniRequest(text=CAPTION_PROMPT, images=[pack.scene_frames(k)[0]]), voice=False).ids
    L = len(prompt)
    assert s.ids[:L].tolist() == prompt.tolist()
    caption = scene_caption(scene)
    reply = model.tokenizer.encode(caption) + [model.tokenizer.special.eos]
    assert s.text_labels[L - 1 : L - 1 + len(reply)].tolist() == reply
    assert (s.audio_labels == -100).all()
    # every object once, in reading order, from the scene record alone
    parts = caption.split(", ")
    assert sorted(parts) == sorted(f"{o.color} {o.shape} {o.slot}" for o in scene.objects)
    order = ("top", "left", "center", "right", "bottom")
    assert [p.split()[-1] for p in parts] == sorted((p.split()[-1] for p in parts), key=order.index)


def test_caption_weight_sets_the_share_of_captions(tmp_path, mini_pack):
    from mdp.data import ManifestError
    from mdp.curriculum.data import read_stage_manifest
    from omni.synth.pack import Pack

    pack = Pack(mini_pack)
    off = write_stage_manifest(pack, "vision", str(tmp_path / "off.jsonl"), 400, seed=2, caption_weight=0.0)
    assert "caption/text" not in off
    default = write_stage_manifest(pack, "vision", str(tmp_path / "on.jsonl"), 400, seed=2)
    w = {m[1] + "/" + ("voice" if m[3] else "text"): m[0] for m in STAGES["vision"]}
    share = w["caption/text"] / sum(w.values())
    assert abs(default["caption/text"] / 400 - share) < 0.06  # binomial: sd ~0.02 at n = 400
    lines = [json.loads(x) for x in (tmp_path / "on.jsonl").read_text().splitlines()]
    assert {x["scene"] for x in lines if x["layout"] == "caption"} <= set(range(pack.num_scenes))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"i": 0, "layout": "caption", "scene": 0, "answer": 0, "voice": True, "seed": 1}) + "\n")
    with pytest.raises(ManifestError, match="a caption is a text reply"):
        read_stage_manifest(str(bad), len(pack), pack.num_scenes, 10)
    bad.write_text(json.dumps({"i": 0, "layout": "caption", "scene": -1, "answer": 0, "voice": False, "seed": 1}) + "\n")
    with pytest.raises(ManifestError, match="needs a scene"):
        read_stage_manifest(str(bad), len(pack), pack.num_scenes, 10)


def test_transcribe_layout_is_audio_plus_instruction_and_replies_with_the_words(tmp_path, mini_pack, model):
    """A transcription sample is the spoken question then "write down what I said"
    (`OmniRequest(audio=..., text=...)`), answered in text with the question's words."""
    from omni.generation import OmniRequest
    from omni.synth.pack import Pack
    from omni.synth.questions import TRANSCRIBE_PROMPT

    pack = Pack(mini_pack)
    i = next(i for i in range(len(pack)) if pack.sample_scene[i] >= 0)  # a visual question, asked without camera
    line = {"i": i, "layout": "transcribe", "scene": -1, "answer": int(pack.sample_answer[i]), "voice": False, "seed": 4}
    s = _dataset(tmp_path, pack, [line], model).sample(0)
    pcm = pack.question_audio(i, np.random.default_rng(4))
    prompt = model.prepare(OmniRequest(audio=pcm, text=TRANSCRIBE_PROMPT), voice=False).ids
    L = len(prompt)
    assert s.ids[:L].tolist() == prompt.tolist()
    reply = model.tokenizer.encode(pack.question_text(i)) + [model.tokenizer.special.eos]
    assert len(reply) > 3 and s.text_labels[L - 1 : L - 1 + len(reply)].tolist() == reply
    assert (s.audio_labels == -100).all()
    counts = write_stage_manifest(pack, "speech", str(tmp_path / "s.jsonl"), 200, seed=3)
    assert counts.get("transcribe/text", 0) > 0
    assert "transcribe/text" not in write_stage_manifest(pack, "speech", str(tmp_path / "s0.jsonl"), 200, seed=3,
                                                         transcribe_weight=0.0)


def test_greetings_and_repeats_are_asked_with_the_camera_on(tmp_path, mini_pack, model):
    """The dialogue stage asks the speech tasks in the streaming layout too, each with a
    picture (a random scene where the sample has none), and the row is what `omni serve`
    builds for that audio beside that camera, replying with the greeting's own answer."""
    from omni.generation import OmniRequest
    from omni.synth.pack import Pack
    from mdp.curriculum.data import SPEECH_FAMILIES

    pack = Pack(mini_pack)
    counts = write_stage_manifest(pack, "dialogue", str(tmp_path / "d.jsonl"), 600, seed=3)
    lines = [json.loads(x) for x in (tmp_path / "d.jsonl").read_text().splitlines()]
    spoken = [x for x in lines if x["layout"] == "stream" and pack.family(x["i"]) in SPEECH_FAMILIES]
    # the mix's lines this pack can draw (no voice bank sentences; tool requests where it has them)
    drawn = [m for m in STAGES["dialogue"] if m[2] != "sentence" and (m[2] != "tool" or pack.samples_of("tool"))]
    share = sum(m[0] for m in drawn if m[1:3] == ("stream", "speech")) / sum(m[0] for m in drawn)
    assert abs(len(spoken) / 600 - share) < 0.05, counts  # binomial sd ~0.012 at n = 600
    assert all(0 <= x["scene"] < pack.num_scenes for x in spoken)
    sceneless = [x for x in spoken if pack.sample_scene[x["i"]] < 0]
    assert sceneless, "the mini pack has speech samples without a scene: they must get one"
    line = sceneless[0]
    ds = _dataset(tmp_path, pack, [line], model)
    s = ds.sample(0)
    pcm = pack.question_audio(line["i"], np.random.default_rng(line["seed"]))
    frames = pack.scene_frames(line["scene"])
    chunks = -(-len(pcm) // 16000)
    frames = [frames[min(j, len(frames) - 1)] for j in range(2 * chunks)]
    req = OmniRequest(audio=pcm, video=frames, video_times=[j / 2 for j in range(len(frames))])
    prompt = model.prepare(req, voice=line["voice"]).ids
    L = len(prompt)
    assert s.ids[:L].tolist() == prompt.tolist()
    answer = model.tokenizer.encode(pack.answer_text(line["i"])) + [model.tokenizer.special.eos]
    assert s.text_labels[L - 1 : L - 1 + len(answer)].tolist() == answer


def test_a_recipe_delay_reaches_the_rows_and_the_exported_config(tmp_path, mini_pack, model):
    """`curriculum.text_audio_delay`: the trained config (and so the export) speaks that far
    behind its text, and the loader path's spoken replies start with as many pad rows."""
    import dataclasses

    from mdp.recipes import RECIPES
    from mdp.trainer import build_config
    from omni.synth.pack import Pack

    r = RECIPES["omni-mini"]
    assert build_config(r).text_audio_delay == 0
    assert build_config(r.replace(curriculum={"text_audio_delay": 3})).text_audio_delay == 3
    pack = Pack(mini_pack)
    sp = next(i for i in range(len(pack)) if pack.sample_scene[i] < 0)
    line = {"i": sp, "layout": "audio", "scene": -1, "answer": int(pack.sample_answer[sp]), "voice": True, "seed": 5}
    (tmp_path / "m.jsonl").write_text(json.dumps(line) + "\n")
    rows = {}
    for delay in (0, 3):
        cfg = dataclasses.replace(model.config, text_audio_delay=delay)
        enc = model.audio_encoder
        ds = PackDataset(str(tmp_path / "m.jsonl"), pack, cfg, model.tokenizer, 640, enc.num_frames, model.frames_ready)
        s = ds.sample(0)
        spoken = torch.nonzero(s.audio_labels[:, 0] != -100).flatten()
        rows[delay] = s.audio_labels[spoken]
        assert (s.text_cat[spoken] == 2).all()
        # the first-audio label is the reply's first frame, after the delay's pad rows
        assert torch.nonzero(s.first_audio).flatten().tolist() == [int(spoken[delay])]
    assert len(rows[3]) == len(rows[0]) + 3
    assert (rows[3][:3] == 3).all() and torch.equal(rows[3][3:], rows[0])

"""The world's tool in the default model's data: planned requests, the pack, the stage mix,
and the loader path's `tool` layout against the conversation a served session holds."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mdp.curriculum.data import PackDataset, read_stage_manifest, silence_codes, speech_rows
from mdp.curriculum.stages import write_stage_manifest
from omni.config import get_omni_config
from omni.sequence import ChatFormat, Tokens
from omni.synth.plan import build_plan
from omni.synth.questions import answer_query
from omni.synth.tool_world import REQUESTS, ToolCase, draw_case, system_prompt, tool_conversation
from omni.tool_calls import CALL_CLOSE, CALL_OPEN


@pytest.fixture(scope="module")
def model():
    from omni.model import OmniModel

    torch.manual_seed(0)
    return OmniModel(get_omni_config("mini")).eval()


def test_plan_adds_tool_requests_and_nothing_else_changes():
    base = build_plan(3, "heldout", 5, renderings_per_text=1)
    same = build_plan(3, "heldout", 5, renderings_per_text=1, tool_ratio=0.0)
    more = build_plan(3, "heldout", 5, renderings_per_text=1, tool_ratio=0.5)
    assert [s.question for s in base.samples] == [s.question for s in same.samples]
    tool = [s for s in more.samples if s.question.family == "tool"]
    rest = [s.question for s in more.samples if s.question.family != "tool"]
    assert rest == [s.question for s in base.samples]  # the tool draws from generators of its own
    num_visual = sum(s.question.family not in ("repeat", "greeting") for s in base.samples)
    assert len(tool) == round(0.5 * num_visual) > 0
    for s in tool:
        q = s.question
        assert q.text in REQUESTS[q.query["on"]]["heldout"]
        assert q.answer == ToolCase.of(q.text, q.query).answer == answer_query(None, q.query)
    with pytest.raises(ValueError, match="tool_ratio"):
        build_plan(0, "train", 2, tool_ratio=-1)


def test_pack_and_eval_sets_keep_tool_requests_apart(tool_world):
    from omni.synth.build import read_jsonl
    from omni.synth.codes import silence_frame
    from omni.synth.heldout import items_from_pack
    from omni.synth.pack import Pack

    root, plan, codec = tool_world
    pack = Pack(root / "train.pack.npz")
    fams = [pack.family(i) for i in range(len(pack))]
    assert "tool" in fams
    assert pack.meta["silence_frame"] == silence_frame(codec)
    np.testing.assert_array_equal(silence_codes(pack, 3), np.array(silence_frame(codec))[:, None].repeat(3, 1))
    # a tool request's answer needs the tool's output: never a plain spoken question
    assert all(r["category"] != "tool" for r in read_jsonl(root / "train" / "spoken_qa.jsonl"))
    items = items_from_pack(str(root / "train.pack.npz"))
    assert items and all(it["family"] != "tool" for it in items)
    assert len(items) == len(fams) - fams.count("tool")


def test_stage_mix_draws_tool_lines_only_from_packs_that_have_them(tmp_path, tool_world, mini_pack):
    from omni.synth.pack import Pack

    root, _, _ = tool_world
    pack = Pack(root / "train.pack.npz")
    counts = write_stage_manifest(pack, "dialogue", str(tmp_path / "d.jsonl"), 400, seed=0)
    assert counts.get("tool/voice", 0) > 0
    lines = [json.loads(x) for x in open(tmp_path / "d.jsonl")]
    assert all(pack.family(r["i"]) == "tool" for r in lines if r["layout"] == "tool")
    # no tool request ever counts as a visual question
    assert all(pack.family(r["i"]) != "tool" for r in lines if r["layout"] in ("stream", "image"))
    assert "tool/voice" not in write_stage_manifest(Pack(mini_pack), "dialogue", str(tmp_path / "m.jsonl"), 400, 0)
    # curriculum.tool_weight sets their share, as the other weights do
    assert "tool/voice" not in write_stage_manifest(pack, "dialogue", str(tmp_path / "z.jsonl"), 400, 0, tool_weight=0)
    heavy = write_stage_manifest(pack, "dialogue", str(tmp_path / "h.jsonl"), 400, 0, tool_weight=100)
    assert heavy["tool/voice"] + heavy["tool/voice/typed"] > 0.9 * 400
    assert 0.15 < heavy["tool/voice/typed"] / 400 < 0.35  # a quarter of the requests typed (TYPED_TOOL_SHARE)


def test_a_share_of_the_questions_is_asked_with_the_tool_declared(tmp_path, tool_world, mini_pack):
    """curriculum.tools_declared: in a stage that teaches the tool, that share of its questions
    carries the system turn ("system": true), drawn apart so every line is otherwise the same;
    a stage or pack without tool lines gets none; a bad field is refused."""
    from mdp.data import ManifestError
    from omni.synth.pack import Pack

    pack = Pack(tool_world[0] / "train.pack.npz")
    read = lambda name: [json.loads(x) for x in open(tmp_path / name)]
    write_stage_manifest(pack, "dialogue", str(tmp_path / "plain.jsonl"), 600, 0)
    counts = write_stage_manifest(pack, "dialogue", str(tmp_path / "decl.jsonl"), 600, 0, tools_declared=0.4)
    plain, decl = read("plain.jsonl"), read("decl.jsonl")
    assert [{k: v for k, v in r.items() if k != "system"} for r in decl] == plain
    marked = [r for r in decl if r.get("system")]
    askable = [r for r in decl if r["layout"] in ("stream", "image", "audio")]
    assert {r["layout"] for r in marked} == {"stream", "image", "audio"}
    assert 0.3 < len(marked) / len(askable) < 0.5
    assert sum(v for k, v in counts.items() if k.endswith("/declared")) == len(marked)
    for stage, p in (("vision", pack), ("dialogue", Pack(mini_pack))):  # no tool lines: none declared
        write_stage_manifest(p, stage, str(tmp_path / "n.jsonl"), 300, 0, tools_declared=1.0)
        assert not any(r.get("system") for r in read("n.jsonl"))
    caption = next(r for r in decl if r["layout"] == "caption")
    for bad, field in (({**caption, "system": True}, "'system'"), ({**caption, "typed": True}, "'typed'")):
        (tmp_path / "bad.jsonl").write_text(json.dumps(bad) + "\n")
        with pytest.raises(ManifestError, match=field):
            read_stage_manifest(str(tmp_path / "bad.jsonl"), len(pack), pack.num_scenes, len(pack.answer_offset) - 1)


def test_a_question_asked_with_the_tool_declared_is_the_served_prompt(tmp_path, tool_world, model):
    """A declared stream line, position by position, is the serving prompt of the spoken question
    with the camera and the tool's declaration as the system prompt (`OmniRequest(system=...)`,
    as a session that declares the tool holds it), then the ordinary spoken answer."""
    from omni.generation import OmniRequest
    from omni.synth.pack import Pack

    pack = Pack(tool_world[0] / "train.pack.npz")
    i = next(i for i in range(len(pack)) if pack.family(i) not in ("tool", "greeting", "repeat")
             and pack.sample_scene[i] >= 0)
    line = {"i": i, "layout": "stream", "scene": int(pack.sample_scene[i]), "answer": int(pack.sample_answer[i]),
            "voice": True, "seed": 5, "system": True}
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps(line) + "\n")
    ds = PackDataset(str(path), pack, model.config, model.tokenizer, 1024, model.audio_encoder.num_frames,
                     model.frames_ready)
    ds.stream_jitter = False
    s = ds.sample(0)
    pcm = pack.question_audio(i, np.random.default_rng(line["seed"]))
    frames = pack.scene_frames(line["scene"])
    frames = [frames[min(j, len(frames) - 1)] for j in range(2 * -(-len(pcm) // 16000))]
    served = model.prepare(OmniRequest(audio=pcm, video=frames, video_times=[j / 2 for j in range(len(frames))],
                                       system=system_prompt()), voice=True)
    n = len(served.ids)
    assert s.ids[:n].tolist() == served.ids.tolist() and s.codec[:n].tolist() == served.codec.tolist()
    assert not (s.text_cat[: n - 1] > 0).any() and s.text_cat[n - 1] > 0  # loss from the answer's first row on


def test_tool_layout_is_the_served_conversation(tmp_path, tool_world, model):
    """The loader path's tool sample, position by position, is `tool_conversation` of the
    serving prompt of the spoken request (with the camera when the sample has a scene; or of
    the typed request), the call spoken as silence and the answer's speech; loss on the two
    replies only."""
    from omni.generation import OmniRequest
    from omni.synth.pack import Pack

    root, _, _ = tool_world
    pack = Pack(root / "train.pack.npz")
    picks = [next(i for i in range(len(pack)) if pack.family(i) == "tool" and (pack.sample_scene[i] >= 0) == cam)
             for cam in (True, False)]
    picks.append(picks[0])  # the first request again, typed (a text client's)
    lines = [{"i": i, "layout": "tool", "scene": int(pack.sample_scene[i]), "answer": int(pack.sample_answer[i]),
              "voice": True, "seed": 7, **({"typed": True} if k == 2 else {})} for k, i in enumerate(picks)]
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    enc = model.audio_encoder
    ds = PackDataset(str(path), pack, model.config, model.tokenizer, 1024, enc.num_frames, model.frames_ready)
    ds.stream_jitter = False
    tok, cfg = model.tokenizer, model.config
    fmt = ChatFormat(tok, cfg.audio_pad_id)
    for n, (line, i) in enumerate(zip(lines, picks)):
        s = ds.sample(n)
        pcm = pack.question_audio(i, np.random.default_rng(line["seed"]))
        if line.get("typed"):
            req = OmniRequest(text=pack.question_text(i))
        elif line["scene"] >= 0:
            frames = pack.scene_frames(line["scene"])
            frames = [frames[min(j, len(frames) - 1)] for j in range(2 * -(-len(pcm) // 16000))]
            req = OmniRequest(audio=pcm, video=frames, video_times=[j / 2 for j in range(len(frames))])
        else:
            req = OmniRequest(audio=pcm)
        served = model.prepare(req, voice=True)
        head = len(fmt.generation_prompt(True))
        user_turn = Tokens(served.ids[:-head], served.codec[:-head], served.audio, served.image)
        case = ToolCase.of(pack.question_text(i), pack.meta["sample_queries"][i])

        def reply(text, codes):
            ids, rows = speech_rows(tok.encode(text) + [tok.special.eos], codes, cfg.audio_id_offset,
                                    cfg.audio_eos_id, cfg.audio_pad_id, cfg.text_audio_delay)
            return Tokens(torch.tensor(ids), torch.tensor(rows))

        call_len = len(tok.encode(case.call)) + 1
        call = reply(case.call, silence_codes(pack, call_len - 1))
        answer = reply(case.answer, ds.codes[line["answer"]])
        conv = tool_conversation(fmt, user_turn, call, case.output, answer)
        L = len(conv.tokens) - 1  # the sample ends with the answer's last row (no trailing newline)
        assert s.ids[:L].tolist() == conv.tokens.ids[:L].tolist()
        assert s.codec[:L].tolist() == conv.tokens.codec[:L].tolist()
        labelled = torch.nonzero(s.text_cat > 0).flatten()
        (a, b), (c, d) = conv.call_span, conv.answer_span
        want = list(range(a - 1, b - 1)) + list(range(c - 1, d - 1))  # position p predicts p + 1
        assert labelled.tolist() == want
        assert s.text_labels[a - 1 : a - 1 + call_len].tolist() == tok.encode(case.call) + [tok.special.eos]
        assert s.first_audio[a - 1] and s.first_audio[c - 1]
        assert s.answer[a - 1] and s.answer[c - 1] and not s.answer[b - 1 : c - 1].any()


def test_a_tool_conversation_too_long_for_the_stage_is_an_error_not_a_skip(tmp_path, tool_world, model):
    """Other samples that do not fit are replaced by the next line; a tool conversation is
    never replaced (all of them are about as long, so the stage would silently train none)."""
    from mdp.data import ManifestError
    from omni.synth.pack import Pack

    root, _, _ = tool_world
    pack = Pack(root / "train.pack.npz")
    i = next(i for i in range(len(pack)) if pack.family(i) == "tool")
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"i": i, "layout": "tool", "scene": -1, "answer": int(pack.sample_answer[i]),
                                "voice": True, "seed": 1}) + "\n")
    ds = PackDataset(str(path), pack, model.config, model.tokenizer, 384, model.audio_encoder.num_frames,
                     model.frames_ready)
    with pytest.raises(ManifestError, match="stage_seq_len"):
        ds.sample(0)
    from mdp.curriculum.plan import StepPlanner
    from mdp.curriculum.tables import PackTables

    tables = PackTables(pack, model.config, model.tokenizer, ds.codes, torch.device("cpu"))
    with pytest.raises(ValueError, match="stage_seq_len"):
        StepPlanner(tables, ds.records, 0, 1, 384, window=1).plan(0)


def test_a_tool_line_on_another_sample_is_refused_by_both_paths(tmp_path, tool_world, model):
    from mdp.curriculum.plan import StepPlanner
    from mdp.curriculum.tables import PackTables
    from mdp.data import ManifestError
    from omni.synth.pack import Pack

    root, _, _ = tool_world
    pack = Pack(root / "train.pack.npz")
    i = next(i for i in range(len(pack)) if pack.family(i) != "tool")
    line = {"i": i, "layout": "tool", "scene": -1, "answer": int(pack.sample_answer[i]), "voice": True, "seed": 1}
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(line) + "\n")
    ds = PackDataset(str(path), pack, model.config, model.tokenizer, 1024, model.audio_encoder.num_frames,
                     model.frames_ready)
    with pytest.raises(ManifestError, match="not a tool request"):
        ds.sample(0)
    tables = PackTables(pack, model.config, model.tokenizer, ds.codes, torch.device("cpu"))
    planner = StepPlanner(tables, ds.records, 0, 1, 1024, window=1, augment=False, jitter=False)
    with pytest.raises(ValueError, match="not a tool request"):
        planner.plan(0)


def test_tool_bench_reads_the_packs_requests(tool_world, load_bench):
    """bench/tool_world.py --pack: the pack's tool requests, heard as recorded, with the camera
    where the sample has a scene (what the GPU machine, without espeak-ng, can ask)."""
    from omni.synth.pack import Pack

    root, _, _ = tool_world
    path = str(root / "train.pack.npz")
    pack = Pack(path)
    index = [i for i in range(len(pack)) if pack.family(i) == "tool"]
    cases, inputs = load_bench("tool_world").pack_cases(path, 0)
    assert [c.request for c in cases] == [pack.question_text(i) for i in index]
    assert [c.query for c in cases] == [pack.meta["sample_queries"][i] for i in index]
    for i, chunk in zip(index, inputs):
        np.testing.assert_array_equal(chunk.audio, pack.question_audio(i))
        assert bool(chunk.frames) == (pack.sample_scene[i] >= 0)
        assert chunk.frame_times is None or len(chunk.frame_times) == len(chunk.frames) >= 2
    assert len(load_bench("tool_world").pack_cases(path, 3)[0]) == 3


def test_export_keeps_the_packs_silent_frame(tool_world, mini_pack):
    """The exported model exempts the frame its unspoken rows were trained as from the audio
    repetition penalty (omni/config.py codec_silence_frame); a pack without codes has none."""
    from mdp.curriculum.run import _pack_silence
    from mdp.recipes import get_recipe
    from omni.synth.codes import silence_frame

    root, _, codec = tool_world
    r = get_recipe("omni-mini-smoke").override([f"curriculum.pack={root / 'train.pack.npz'}"])
    assert _pack_silence(r) == silence_frame(codec)
    assert _pack_silence(get_recipe("omni-mini-smoke").override([f"curriculum.pack={mini_pack}"])) is None


class _Scripted:
    """A RealtimeOmni stand-in whose replies are scripted per turn from what it was told
    (the bench's scoring is under test here, not a model)."""

    def __init__(self, first, second):
        self.first, self.second, self.told, self.turn, self.left = first, second, {}, {}, {}

    def open_slot(self, prompt):
        s = len(self.told)
        assert prompt == system_prompt()
        self.told[s], self.turn[s] = [], 0
        return s

    def prefill_text(self, s, role, text):
        self.told[s].append((role, text))

    def begin_responses(self, items):
        for s, _ in items:
            self.turn[s] += 1
            request = self.told[s][0][1]
            text = self.first(request) if self.turn[s] == 1 else self.second(self.told[s][-1][1])
            self.left[s] = [text[i:i + 3] for i in range(0, len(text), 3)]  # 3 characters a step

    def decode_step(self, slots):
        from omni.realtime_api import StepOutput

        outs = []
        for s in slots:
            piece = self.left[s].pop(0) if self.left[s] else ""
            outs.append(StepOutput(1, piece, None, done=not self.left[s]))
        return outs

    def end_responses(self, slots):
        pass

    def close_slot(self, s):
        pass


def test_tool_bench_scores_calls_and_answers(load_bench):
    bench = load_bench("tool_world")
    rng = np.random.default_rng(3)
    cases = [draw_case(rng, "heldout") for _ in range(24)]
    by_request = {c.request: c for c in cases}
    answers = {c.output: c.answer for c in cases}
    right = _Scripted(lambda r: by_request[r].call, lambda out: "The light " + answers[out][len("the light "):] + ".")
    rows = bench.run_cases(right, cases, None, max_steps=200)
    s = bench.summary(rows)
    assert s["both_ok"]["all"] == {"n": 24, "accuracy": 1.0}
    assert sum(v["n"] for k, v in s["call_ok"].items() if k != "all") == 24
    # the call's arguments wrong, two calls, a spoken call, or an answer from the request alone: all scored wrong
    flip = lambda r: ToolCase(r, not by_request[r].on, True).call  # noqa: E731
    flipped = bench.summary(bench.run_cases(_Scripted(flip, lambda o: answers[o]), cases, None, 200))
    assert flipped["call_ok"]["all"]["accuracy"] == 0.0 and flipped["call_valid"]["all"]["accuracy"] == 1.0
    twice = lambda r: by_request[r].call * 2  # noqa: E731
    assert not any(r["call_valid"] for r in bench.run_cases(_Scripted(twice, lambda o: ""), cases, None, 200))
    said = lambda r: by_request[r].call[len(CALL_OPEN):-len(CALL_CLOSE)]  # noqa: E731
    assert not any(r["call_ok"] for r in bench.run_cases(_Scripted(said, lambda o: ""), cases, None, 200))
    guess = bench.run_cases(_Scripted(lambda r: by_request[r].call, lambda o: "the light is on"), cases, None, 200)
    assert {r["answer_ok"] for r in guess} == {True, False}
    assert all(r["answer_ok"] == (r["expected_answer"] == "the light is on") for r in guess)

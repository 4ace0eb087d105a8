"""bench/default_model.py runs end to end on a checkpoint directory (random weights:
the numbers are meaningless, the report's structure and counts are checked)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch


def _random_mini(path) -> None:
    """A checkpoint directory of the `mini` flavor with random weights."""
    from omni.config import get_omni_config
    from omni.model import OmniModel

    torch.manual_seed(0)
    OmniModel(get_omni_config("mini")).save_pretrained(path)


def test_bench_default_model_on_pack(tmp_path, mini_pack):
    _random_mini(tmp_path / "model")
    out = tmp_path / "report.json"
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    res = subprocess.run(
        [sys.executable, os.path.join(root, "bench", "default_model.py"), "--model", str(tmp_path / "model"),
         "--pack", str(mini_pack), "--limit", "3", "--max-steps", "8", "--threads", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=240, env=dict(os.environ, PYTHONPATH=root),
    )
    assert res.returncode == 0, res.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["source"] == "pack" and report["text"]["all"]["n"] == 3
    assert sum(v["n"] for k, v in report["text"].items() if k != "all") == 3
    assert len(report["samples"]) == 3 and all("text_ok" in s for s in report["samples"])
    assert "family" in res.stdout and "bars" in res.stdout


def test_partial_credit_measures():
    from omni.synth import heldout as m

    assert m.word_accuracy("what color is the square", "what color is the square") == 1.0
    assert m.word_accuracy("what color is the square", "what color the star") == 1 - 2 / 5  # one deletion, one swap
    assert m.word_accuracy("a b", "x y z w") == 0.0  # floored
    ref = "red circle top, blue star left"
    assert m.caption_f1(ref, "blue star left, red circle top") == 1.0  # order does not matter
    assert m.caption_f1(ref, "red circle top") == 2 * 1 / 3
    assert m.caption_f1(ref, "green square center") == 0.0


def test_bench_probes_transcribe_and_caption(tmp_path, mini_pack):
    from omni.synth.pack import Pack

    _random_mini(tmp_path / "model")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    pack = Pack(mini_pack)
    for question in ("transcribe", "caption"):
        out = tmp_path / f"{question}.json"
        res = subprocess.run(
            [sys.executable, os.path.join(root, "bench", "default_model.py"), "--model", str(tmp_path / "model"),
             "--pack", str(mini_pack), "--limit", "3", "--max-steps", "6", "--threads", "1", "--question", question,
             "--out", str(out)],
            capture_output=True, text=True, timeout=240, env=dict(os.environ, PYTHONPATH=root),
        )
        assert res.returncode == 0, res.stderr[-2000:]
        report = json.loads(out.read_text())
        part = report["partial_credit"]
        assert part["measure"] == ("word accuracy" if question == "transcribe" else "object F1")
        assert part["all"]["n"] == 3 and 0.0 <= part["all"]["mean"] <= 1.0
        refs = {s["reference"] for s in report["samples"]}
        if question == "transcribe":
            assert refs <= {pack.question_text(i) for i in range(len(pack))}
        else:  # one row per distinct scene, its caption the reference
            assert len(refs) == 3 and all(r.count(" ") >= 2 for r in refs)


def test_bench_hearing_split_runs(tmp_path, mini_pack):
    """bench/hearing_split.py on a random `mini` checkpoint: every condition asked, the re-spoken
    ones in fresh voices of the split they name; report and plot written."""
    _random_mini(tmp_path / "model")
    out = tmp_path / "split.json"
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    res = subprocess.run(
        [sys.executable, os.path.join(root, "bench", "hearing_split.py"), "--model", str(tmp_path / "model"),
         "--train-pack", str(mini_pack), "--heldout-pack", str(mini_pack), "-n", "2", "--batch", "2",
         "--threads", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=240, env=dict(os.environ, PYTHONPATH=root),
    )
    assert res.returncode == 0, res.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert [(r["texts"], r["voices"]) for r in rows] == [("heldout", "pack"), ("heldout", "heldout"),
                                                         ("heldout", "train"), ("train", "heldout"),
                                                         ("train", "train"), ("reworded", "heldout")]
    assert all(r["n"] == 2 and 0 <= r["transcript_word_accuracy"] <= 1 for r in rows)
    assert all(("spoken_exact" in r) == (r["texts"] != "train") for r in rows)
    assert [("text_exact" in r) for r in rows] == [True, False, False, False, False, True]
    assert (tmp_path / "split.png").stat().st_size > 0


def test_rerender_speaks_the_same_text_in_a_voice_of_the_split(mini_pack):
    from omni.synth.heldout import items_from_pack, rerender
    from omni.synth.voices import HELDOUT_VARIANTS, TRAIN_VARIANTS

    items = items_from_pack(str(mini_pack), limit=2)
    for split, variants in (("train", TRAIN_VARIANTS), ("heldout", HELDOUT_VARIANTS)):
        again = rerender(items, str(mini_pack), split, seed=3)
        assert [a["question_text"] for a in again] == [it["question_text"] for it in items]
        assert all(a["voice"].split("/")[0].split("+")[1] in variants for a in again)
        assert all(len(a["audio"]) > 8000 and a["audio"].dtype.name == "float32" for a in again)
        assert [a["voice"] for a in again] == [a["voice"] for a in rerender(items, str(mini_pack), split, seed=3)]


def test_tail_s_replaces_each_questions_silence_after_it(mini_pack):
    """`--tail-s S`: the same recordings, each followed by S s of silence instead of its own."""
    from omni.synth.heldout import items_from_pack
    from omni.synth.pack import Pack

    own = items_from_pack(str(mini_pack), limit=3)
    short = items_from_pack(str(mini_pack), limit=3, tail_s=0.0)
    longer = items_from_pack(str(mini_pack), limit=3, tail_s=1.0)
    pack = Pack(str(mini_pack))
    tails = {pack.sample_id(i): float(pack.sample_noise[i, 2]) for i in range(len(pack))}
    for a, b, c in zip(own, short, longer):
        assert a["id"] == b["id"] == c["id"]
        assert len(c["audio"]) - len(b["audio"]) == 16000  # 1 s more silence, nothing else
        assert abs(len(a["audio"]) - len(b["audio"]) - tails[a["id"]] * 16000) <= 1


def test_reword_asks_the_same_query_in_a_wording_of_the_split(mini_pack):
    from omni.synth.heldout import items_from_pack, reword
    from omni.synth.pack import Pack
    from omni.synth.questions import GREETINGS, TEMPLATES, answer_query, query_phrase

    pack = Pack(str(mini_pack))
    items = items_from_pack(str(mini_pack))
    index = {pack.sample_id(i): i for i in range(len(pack))}
    for split in ("train", "heldout"):
        again = reword(items, str(mini_pack), split, seed=1)
        assert [a["id"] for a in again] == [it["id"] for it in items]
        for it, a in zip(items, again):
            i = index[it["id"]]
            family, kind = pack.meta["sample_wordings"][i].split("/")[:2]
            query = pack.meta["sample_queries"][i]
            if family == "greeting":
                allowed = GREETINGS[query["intent"]][1 if split == "train" else 2]
            else:
                allowed = [t.format(x=query_phrase(query)) for t in TEMPLATES[(family, kind)][split]]
            assert a["question_text"] in allowed
            assert a["answer"] == it["answer"] and a["audio"] is it["audio"]  # the words change, not the rest
            k = int(pack.sample_scene[i])
            if k >= 0 and family != "greeting":
                assert answer_query(pack.scene(k), query) == it["answer"]


def test_files_leave_the_tool_requests_to_the_tool_bench(tmp_path):
    """A split directory of `omni data default --tool-ratio R` holds tool requests: they are
    answered after the tool's output (bench/tool_world.py), so the questions' bench skips them."""
    import argparse
    import importlib.util

    import numpy as np

    from omni.synth.audio import write_wav

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    spec = importlib.util.spec_from_file_location("default_model_bench", os.path.join(root, "bench", "default_model.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = [{"id": "q0", "family": "greeting", "question_audio": "q0.wav", "question_text": "hello",
             "answer_text": "hello"},
            {"id": "q1", "family": "tool", "question_audio": "q1.wav", "question_text": "turn the light on",
             "answer_text": "the light is on"}]
    for r in rows:
        write_wav(tmp_path / r["question_audio"], np.zeros(8000, np.int16))
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "scenes.jsonl").write_text("")
    items = bench.load_items(argparse.Namespace(pack=None, data=str(tmp_path), limit=0, question="spoken"))
    assert [it["id"] for it in items] == ["q0"]

"""Rule-based scoring and manifest validation."""

from __future__ import annotations

import json

import pytest

from omni.eval import scoring
from omni.eval.manifest import ManifestError, load_manifest


def test_wer():
    assert scoring.wer("the red star is moving up", "the red star is moving up") == 0
    assert scoring.word_errors("the red star", "a red star moving") == (2, 3)
    assert scoring.wer("there are three circles", "There are 3 circles.") == 0  # numbers folded


def test_extract_choice():
    opts = {"A": "red", "B": "green", "C": "blue", "D": "yellow"}
    assert scoring.extract_choice("B", opts) == "B"
    assert scoring.extract_choice("(C) blue", opts) == "C"
    assert scoring.extract_choice("The answer is D.", opts) == "D"
    assert scoring.extract_choice("It is green.", opts) == "B"
    assert scoring.extract_choice("red or blue", opts) is None
    assert scoring.extract_choice("no idea", opts) is None


def test_exact_and_refusal():
    assert scoring.exact_match("The star is red.", "red")
    assert not scoring.exact_match("reddish", "red")
    assert scoring.is_refusal("I'm sorry, I can't help with that.")
    assert not scoring.is_refusal("Sure, the star is red.")


def _write(tmp_path, lines, name="av-mcq.jsonl"):
    (tmp_path / name).write_text("\n".join(lines) + "\n")
    return tmp_path


def test_manifest_shapes_and_errors(tmp_path):
    ok = {"id": "1", "question": "q?", "options": ["red", "green"], "answer": "B", "video": "v.mp4", "task_type": "color"}
    s = load_manifest(_write(tmp_path, [json.dumps(ok)]), "av-mcq")[0]
    assert s.options == {"A": "red", "B": "green"} and s.category == "color"
    with pytest.raises(ManifestError, match=r"av-mcq.jsonl:2: not valid JSON"):
        load_manifest(_write(tmp_path, [json.dumps(ok), "{bad"]), "av-mcq")
    with pytest.raises(ManifestError, match="not one of the options"):
        load_manifest(_write(tmp_path, [json.dumps({**ok, "answer": "E"})]), "av-mcq")
    with pytest.raises(ManifestError, match="duplicate sample id"):
        load_manifest(_write(tmp_path, [json.dumps(ok), json.dumps(ok)]), "av-mcq")
    with pytest.raises(ManifestError, match="need 'audio' and 'text'"):
        load_manifest(_write(tmp_path, [json.dumps({"id": 1, "audio": "a.wav"})], "asr.jsonl"), "asr")
    with pytest.raises(ManifestError, match="unknown rule"):
        load_manifest(_write(tmp_path, [json.dumps({"id": 1, "audio": "a.wav", "rule": "judge"})], "spoken-qa.jsonl"), "spoken-qa")
    with pytest.raises(ManifestError, match="no manifest"):
        load_manifest(tmp_path / "nothing", "asr") if (tmp_path / "nothing").mkdir() is None else None

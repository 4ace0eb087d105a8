"""`omni data`: help, a tiny end-to-end run, corpus, and clear errors."""

from __future__ import annotations

import subprocess
import sys

from omni.cli import main
from omni.synth.corpus import corpus_lines
from omni.synth.questions import all_question_texts, answer_space


def test_help_lists_every_action() -> None:
    out = subprocess.run([sys.executable, "-m", "omni.cli", "data", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    for action in ("default", "build", "eval-sets", "corpus", "pack", "codes", "check-voice", "validate"):
        assert action in out.stdout


def test_build_validate_pack_from_the_command_line(tmp_path, capsys) -> None:
    d = tmp_path / "h"
    assert main(["data", "build", "--split", "heldout", "--out", str(d), "--scenes", "2", "--speech-ratio", "0.5",
                 "--eval-sets", "--no-progress"]) == 0
    assert (d / "av_mcq.jsonl").exists() and (d / "spoken_qa.jsonl").exists()
    assert main(["data", "validate", "--data", str(d)]) == 0
    assert main(["data", "pack", "--data", str(d), "--out", str(tmp_path / "h.npz"), "--no-progress"]) == 0
    assert "heldout:" in capsys.readouterr().out


def test_errors_are_clear(tmp_path, capsys) -> None:
    assert main(["data", "pack", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "x.npz")]) == 2
    err = capsys.readouterr().err
    assert "omni data pack: error" in err and "nope" in err
    assert main(["data", "validate", "--data", str(tmp_path)]) == 1
    assert "manifest.jsonl: missing" in capsys.readouterr().out


def test_corpus_holds_train_wordings_answers_and_template(tmp_path) -> None:
    path = tmp_path / "corpus.txt"
    assert main(["data", "corpus", "--out", str(path)]) == 0
    lines = path.read_text().splitlines()
    assert lines == corpus_lines()
    assert set(all_question_texts("train")) <= set(lines) and set(answer_space()) <= set(lines)
    assert not set(all_question_texts("heldout")) & set(lines)
    assert {"USER:", "VOICE ASSISTANT:", "</longcat_s>", "second{1.0}:"} <= set(lines)
    assert set(all_question_texts("heldout")) <= set(corpus_lines(include_heldout=True))

"""The pocketsphinx answer judge hears the assistant's voice and refuses unknown words."""

from __future__ import annotations

import numpy as np
import pytest

from omni.synth.recognize import AnswerRecognizer, answer_grammar
from omni.synth.voices import ASSISTANT_VOICE, synthesize


def test_judge_hears_the_assistant_voice() -> None:
    judge = AnswerRecognizer()
    for answer in ("two", "red circle", "you are welcome"):
        assert judge.recognize(synthesize(answer, ASSISTANT_VOICE)) == answer
    # silence is no answer, whatever the grammar offers
    assert judge.recognize(np.zeros(16000, np.float32)) == ""


def test_grammar_and_errors() -> None:
    g = answer_grammar(["Two", "red circle"])
    assert "( two )" in g and "( red circle )" in g and g.startswith("#JSGF")
    with pytest.raises(ValueError, match="xyzzyq"):
        AnswerRecognizer(["xyzzyq"])
    with pytest.raises(ValueError, match="16000"):
        AnswerRecognizer(["two"]).recognize(np.zeros(100, np.float32), sample_rate=8000)


class _PassThrough:
    """Stands in for speech.Codec: encode/decode that keep (or erase) the audio."""

    def __init__(self, erase: bool) -> None:
        self.erase = erase

    def encode(self, wav):
        return wav[None]

    def decode(self, codes):
        return codes * 0 if self.erase else codes


def test_check_voice_through_a_codec_hears_what_the_codec_returns() -> None:
    from omni.synth.recognize import check_voice

    answers = ["two", "left"]
    kept = check_voice(answers=answers, progress=False, codec=_PassThrough(erase=False))
    erased = check_voice(answers=answers, progress=False, codec=_PassThrough(erase=True))
    assert kept["through_codec"] and kept["correct"] == 2
    assert erased["correct"] == 0 and [m["heard"] for m in erased["misses"]] == ["", ""]


def test_codec_alignment_bench_judges_each_phase(tmp_path) -> None:
    """bench/codec_alignment.py: every answer at every onset phase, through the shipped codec and
    as spoken (the judge's control); a phase outside a frame is refused."""
    import json
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    script = os.path.join(root, "bench", "codec_alignment.py")
    env = dict(os.environ, PYTHONPATH=root)
    out = tmp_path / "align.json"
    res = subprocess.run([sys.executable, script, "--answers", "two,left", "--phases", "0,0.5", "--threads", "1",
                          "--no-progress", "--out", str(out)], capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    rep = json.loads(out.read_text())
    assert rep["answers"] == 2 and rep["clips_per_phase"] == 2 and rep["phases"] == [0.0, 0.5]
    assert rep["heard_right"]["original"] == {"0": 2, "0.5": 2}  # the judge hears the spoken answers
    assert all(0 <= v <= 2 for v in rep["heard_right"]["codec"].values())
    assert (tmp_path / "align.png").stat().st_size > 0
    bad = subprocess.run([sys.executable, script, "--phases", "1.5"], capture_output=True, text=True, timeout=120, env=env)
    assert bad.returncode == 2 and "shares of a frame" in bad.stderr

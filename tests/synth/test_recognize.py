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

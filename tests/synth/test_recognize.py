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

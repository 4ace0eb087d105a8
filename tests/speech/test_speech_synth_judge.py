"""espeak-ng synthesis and the pocketsphinx grammar judge."""

from __future__ import annotations

import random

import numpy as np

from speech.judge import GrammarRecognizer, confusable_sentences, jsgf, word_errors
from speech.synth import EVAL_VOICES, random_sentence, synthesize, train_voices


def test_grammar_is_confusable() -> None:
    s = confusable_sentences()
    assert len(s) >= 100 and len(set(s)) == len(s)
    # most sentences have a neighbour that differs in exactly one word
    near = sum(any(word_errors(a, b) == 1 for b in s if b != a) for a in s)
    assert near >= 0.9 * len(s)
    assert jsgf(s).startswith("#JSGF V1.0;")


def test_train_and_eval_voices_are_disjoint() -> None:
    assert not set(EVAL_VOICES) & set(train_voices())
    rng = random.Random(0)
    assert all(" are in the " not in random_sentence(rng) for _ in range(200))


def test_synthesis_and_recognition() -> None:
    s = confusable_sentences()
    audio = synthesize(s[0], "en-us", 150, 50)
    assert audio.dtype == np.float32 and 1.0 < len(audio) / 16000 < 5.0 and np.abs(audio).max() > 0.1
    rec = GrammarRecognizer(s)
    assert rec.recognize(audio) == s[0]
    assert rec.recognize(np.zeros(16000, np.float32)) != s[0]
    assert word_errors("a b c", "a x c") == 1 and word_errors("a b", "") == 2


def test_voice_shares_give_a_speaker_its_fraction_and_refuse_eval_voices(tmp_path, monkeypatch) -> None:
    import pytest

    import speech.synth as synth

    # count voice choices without running espeak-ng
    monkeypatch.setattr(synth, "synthesize", lambda text, voice, speed, pitch, sr: np.zeros(1600, np.float32))
    utts = list(synth.generate_utterances(400 * 0.1, seed=1, progress=False, voice_shares={"en-us+klatt5": 0.4}))
    share = sum(u.voice == "en-us+klatt5" for u in utts) / len(utts)
    assert len(utts) == 400 and 0.33 < share < 0.47
    assert synth.parse_voice_shares("en-us+klatt5=0.35, en-gb=0.1") == {"en-us+klatt5": 0.35, "en-gb": 0.1}
    for bad in ("en-us+klatt5", "x=1.5", "a=0.6,b=0.5"):
        with pytest.raises(ValueError):
            synth.parse_voice_shares(bad)
    with pytest.raises(ValueError, match="held-out"):
        synth.generate_corpus(str(tmp_path), 0.1, voice_shares={EVAL_VOICES[0]: 0.5})

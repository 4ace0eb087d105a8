"""Rewordings of the training questions (`omni.synth.rewording`): the object phrase and so
the answer kept, only template words changed, never a held-out wording, only training words."""

from __future__ import annotations

import pytest

from omni.synth.questions import GREETINGS, TEMPLATES, all_question_texts
from omni.synth.rewording import is_heldout_wording, reword, rewordings, split_question
from omni.synth.sentences import vocabulary


def test_a_training_question_splits_into_its_template_and_phrase():
    assert split_question("how many red circles do you see") == ("counting", "how many {x} do you see", "red circles")
    assert split_question("could you please repeat i see a blue star") == (
        "repeat", "could you please repeat {x}", "i see a blue star")
    assert split_question("what is moving") == ("motion", "what is moving", "")
    # greetings, tool requests and held-out wordings are not reworded
    assert split_question("good morning") is None
    assert split_question("switch the light on") is None
    assert split_question("tell me how many red circles there are") is None


def test_rewordings_keep_the_phrase_and_use_training_words_only():
    texts = all_question_texts("train")
    words = set(vocabulary(texts))
    got = rewordings(texts, 3, seed=0)
    assert len(got) > 2 * len(texts)  # nearly every question has three
    for t, r in got:
        family, template, phrase = split_question(texts[t])
        assert r != texts[t] and r not in texts and set(r.split()) <= words
        assert not is_heldout_wording(r)
        if phrase:
            assert phrase in r
        if family == "repeat":  # the phrase to repeat is still what the request ends with
            assert r.endswith(phrase)
    assert got == rewordings(texts, 3, seed=0) != rewordings(texts, 3, seed=1)
    with pytest.raises(ValueError):
        rewordings(texts, -1)


def test_held_out_wordings_are_redrawn():
    # the held-out templates of every kind and the held-out greetings are recognized
    for splits in TEMPLATES.values():
        for t in splits["heldout"]:
            assert is_heldout_wording(t.replace("{x}", "red circle"))
    for _, _, heldout in GREETINGS.values():
        assert all(is_heldout_wording(w) for w in heldout)
    assert not is_heldout_wording("how many red circles do you see")
    # a held-out wording inside a longer one counts, at word boundaries only
    assert is_heldout_wording("tell me what is moving now") and is_heldout_wording("so hi there")
    assert not is_heldout_wording("tell me what is movingly") and not is_heldout_wording("whi there")
    # "what is moving" with the prefix "tell me" is a held-out text: no draw returns it
    assert all(reword("what is moving", s, k) != "tell me what is moving" for s in range(5) for k in range(20))


def test_unrewordable_texts_give_none():
    assert reword("hello", 0, 0) is None and reword("not a question of this world", 0, 0) is None


def test_the_neighbour_style_keeps_the_draws_the_shipped_bank_was_made_with():
    # pinned from the module before styles existed: the shipped model's bank is reproducible
    assert [reword("what color is the square", 0, k) for k in range(4)] == [
        "what color is square", "what color is the square please", "now what color the is square",
        "what color the square"]
    assert [reword("could you please repeat i see a blue star", 0, k) for k in range(3)] == [
        "could please repeat i see a blue star", "please could repeat you i see a blue star",
        "could please repeat i see a blue star"]


def test_wide_rewordings_front_the_object_trade_synonyms_and_shuffle_yet_stay_training_words():
    texts = all_question_texts("train")
    words = set(vocabulary(texts))
    wide = rewordings(texts, 6, seed=0, style="wide")
    assert len(wide) > 5 * len(texts) and wide != rewordings(texts, 6, seed=0)
    fronted = synonym = 0
    for t, r in wide:
        family, template, phrase = split_question(texts[t])
        assert r != texts[t] and r not in texts and set(r.split()) <= words and not is_heldout_wording(r)
        if phrase:
            assert phrase in r
        if family == "repeat":
            assert r.endswith(phrase)
        fronted += bool(phrase) and family != "repeat" and (r.startswith(phrase) or r.startswith("the " + phrase))
        synonym += ("which" in r.split()) != ("which" in texts[t].split())
    # each new edit happens in a good share of the rewordings, not once by chance
    assert fronted > 0.08 * len(wide) and synonym > 0.04 * len(wide)
    assert rewordings(texts[:40], 2, seed=0, style="wide") == rewordings(texts[:40], 2, seed=0, style="wide")
    with pytest.raises(ValueError, match="unknown rewording style"):
        reword("what color is the square", 0, 0, style="loose")

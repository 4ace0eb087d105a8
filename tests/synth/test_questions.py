"""Questions: answers are unique and right, wordings split cleanly, options are sound."""

from __future__ import annotations

import numpy as np

from omni.synth.questions import (
    GREETINGS,
    TEMPLATES,
    VISUAL_FAMILIES,
    all_question_texts,
    all_wordings,
    answer_query,
    make_question,
    normalize_answer,
    phrases,
    visual_queries,
)
from omni.synth.world import NUMBER_WORDS, Scene, sample_scene


def _oracle(scene: Scene, query: dict) -> set[str]:
    """Independent brute force: every answer some matching object supports."""
    objs = scene.objects
    t = query["type"]
    if t == "count":
        return {NUMBER_WORDS[sum(1 for o in objs if all(getattr(o, k) == query[k] for k in ("color", "shape") if k in query))]}
    if t == "what_moving":
        movers = [o for o in objs if o.direction]
        return {f"{o.color} {o.shape}" for o in movers} or {"nothing"}
    hits = [o for o in objs if all(getattr(o, k) == v for k, v in query["ref"].items())]
    field = {"color_of": "color", "shape_of": "shape", "where": "slot", "which_way": "direction"}[t]
    answers = {getattr(o, field) for o in hits}
    if len(hits) > 1:
        answers.add("<several objects fit>")
    return answers


def test_every_generated_question_has_exactly_one_right_answer() -> None:
    rng = np.random.default_rng(0)
    n = 0
    for i in range(120):
        scene = sample_scene(0, "train", i)
        for (family, kind), queries in visual_queries(scene).items():
            for q in queries:
                question = make_question(scene, family, kind, q, "train", rng)
                assert _oracle(scene, q) == {question.answer}, (scene.scene_id, q)
                if q["type"] == "where" or ("ref" in q and "slot" in q["ref"]):
                    assert not [o for o in scene.objects if o.direction and all(getattr(o, k) == v for k, v in q["ref"].items())]
                n += 1
    assert n > 1000


def test_ambiguous_queries_are_refused() -> None:
    for i in range(200):
        scene = sample_scene(0, "train", i, video_fraction=1.0)
        for o in scene.objects:
            q = {"type": "color_of", "ref": {"shape": o.shape}}
            if sum(p.shape == o.shape for p in scene.objects) > 1:
                assert answer_query(scene, q) is None
        if len(scene.movers) > 1:
            assert answer_query(scene, {"type": "what_moving"}) is None


def test_train_and_heldout_wordings_and_texts_are_disjoint() -> None:
    assert not set(all_wordings("train")) & set(all_wordings("heldout"))
    train, held = set(all_question_texts("train")), set(all_question_texts("heldout"))
    assert len(train) > 500 and len(held) > 200
    assert not train & held
    assert not set(phrases("train")) & set(phrases("heldout"))
    for splits in TEMPLATES.values():
        assert splits["train"] and splits["heldout"]
    for _, tr, ho in GREETINGS.values():
        assert tr and ho and not set(tr) & set(ho)


def test_heldout_wordings_use_only_words_train_wordings_teach() -> None:
    """A held-out wording is a new sentence, not a new word: the model learns words only from training."""
    words = lambda split: {w for t in all_wordings(split) for w in t.replace("{x}", " ").split()}  # noqa: E731
    assert words("heldout") <= words("train"), sorted(words("heldout") - words("train"))
    assert len(words("train")) > len(words("heldout"))


def test_options_hold_the_answer_once_among_four_distinct() -> None:
    rng = np.random.default_rng(1)
    for i in range(60):
        scene = sample_scene(0, "heldout", i)
        for (family, kind), queries in visual_queries(scene).items():
            assert family in VISUAL_FAMILIES
            for q in queries:
                question = make_question(scene, family, kind, q, "heldout", rng)
                assert len(question.options) == 4 and len(set(question.options)) == 4
                assert question.options.count(question.answer) == 1
                assert question.wording.split("/")[2] == "heldout"


def test_normalize_answer() -> None:
    assert normalize_answer("  The Red-Circle! ") == "the red circle"
    assert normalize_answer("two") == "two"

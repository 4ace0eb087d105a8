"""Plans: deterministic, stable under resizing, split by scene, voice and wording."""

from __future__ import annotations

from omni.synth.plan import build_plan
from omni.synth.questions import all_question_texts
from omni.synth.voices import ASSISTANT_VOICE, HELDOUT_VARIANTS, TRAIN_VARIANTS, VOICES


def _flat(plan) -> list[tuple]:
    return [(s.sample_id, s.scene_id, s.question.text, s.question.answer, s.clip_id, s.noise) for s in plan.samples]


def test_plan_is_deterministic_and_seed_dependent() -> None:
    a, b = build_plan(7, "train", 12), build_plan(7, "train", 12)
    assert _flat(a) == _flat(b)
    assert {k: c.voice for k, c in a.clips.items()} == {k: c.voice for k, c in b.clips.items()}
    assert _flat(build_plan(8, "train", 12)) != _flat(a)


def test_growing_a_plan_keeps_its_scenes_and_their_questions() -> None:
    small, big = build_plan(1, "heldout", 6, speech_ratio=0.0), build_plan(1, "heldout", 9, speech_ratio=0.0)
    assert [s.to_dict() for s in small.scenes] == [s.to_dict() for s in big.scenes[:6]]
    assert [(s.scene_id, s.question.text) for s in small.samples] == [
        (s.scene_id, s.question.text) for s in big.samples[: len(small.samples)]
    ]


def test_splits_share_no_scene_voice_or_wording() -> None:
    train, held = build_plan(0, "train", 40), build_plan(0, "heldout", 40)
    assert not {s.signature() for s in train.scenes} & {s.signature() for s in held.scenes}
    train_voices = {c.voice.name for c in train.clips.values()}
    held_voices = {c.voice.name for c in held.clips.values()}
    assert train_voices <= set(VOICES["train"]) and held_voices <= set(VOICES["heldout"])
    assert not train_voices & held_voices and not set(VOICES["train"]) & set(VOICES["heldout"])
    assert not set(TRAIN_VARIANTS) & set(HELDOUT_VARIANTS)
    assert ASSISTANT_VOICE.name not in VOICES["train"] + VOICES["heldout"]
    train_texts = {s.question.text for s in train.samples}
    held_texts = {s.question.text for s in held.samples}
    assert not train_texts & held_texts
    assert train_texts <= set(all_question_texts("train")) and held_texts <= set(all_question_texts("heldout"))
    assert {s.question.wording.split("/")[2] for s in held.samples} == {"heldout"}


def test_every_family_appears_and_speech_ratio_holds() -> None:
    plan = build_plan(0, "train", 60, questions_per_scene=3, speech_ratio=0.25)
    fams = [s.question.family for s in plan.samples]
    assert set(fams) == {"counting", "attribute", "position", "motion", "repeat", "greeting"}
    visual = sum(f not in ("repeat", "greeting") for f in fams)
    assert len(fams) - visual == round(0.25 * visual)
    counts = [s.question.answer for s in plan.samples if s.question.family == "counting"]
    assert len(set(counts)) >= 3  # not only "one"

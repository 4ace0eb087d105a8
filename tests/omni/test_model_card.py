"""A model directory's card (what the model knows, what to ask it): validated, optional,
and a malformed one never stops a model from serving."""

from __future__ import annotations

import json
import logging

import pytest

from omni.model_card import CardError, parse_card, read_card


def test_parse_card_accepts_a_card_and_refuses_what_is_not_one():
    assert parse_card({"about": " a world ", "ask": [" what is moving "]}) == {"about": "a world",
                                                                             "ask": ["what is moving"]}
    assert parse_card({}) == {"about": "", "ask": []}
    for bad, words in [([], "JSON object"), ({"abuot": "x"}, "unknown card fields"),
                       ({"about": 3}, "'about'"), ({"about": "x" * 601}, "'about'"),
                       ({"ask": "what"}, "'ask'"), ({"ask": ["q"] * 9}, "'ask'"), ({"ask": [""]}, "'ask'"),
                       ({"ask": ["x" * 101]}, "'ask'"), ({"ask": [1]}, "'ask'")]:
        with pytest.raises(CardError, match=words):
            parse_card(bad)


def test_a_card_may_name_the_tools_the_model_was_trained_to_call():
    from omni.synth.tool_world import LIGHT

    light = LIGHT.to_json()
    assert parse_card({"tools": [light]}) == {"about": "", "ask": [], "tools": [light]}
    bare = {k: v for k, v in light.items() if k != "description"}
    assert parse_card({"tools": [bare]})["tools"] == [{**bare, "description": ""}]
    for bad in ("set_light", [light] * 2, [{**light, "type": "web_search"}], [{**light, "name": "a b"}],
                [{**light, "parameters": {"type": "array"}}], [{**light, "extra": 1}], [light] * 9):
        with pytest.raises(CardError, match="tools"):
            parse_card({"tools": bad})


def test_read_card_is_optional_and_ignores_a_broken_one(tmp_path, caplog):
    assert read_card(None) is None and read_card(str(tmp_path)) is None
    (tmp_path / "card.json").write_text('{"about": "shapes", "ask": ["what color is the star"]}')
    assert read_card(str(tmp_path)) == {"about": "shapes", "ask": ["what color is the star"]}
    for broken in ("{not json", json.dumps({"ask": "one string"}), "\udcff"):
        (tmp_path / "card.json").write_bytes(broken.encode("utf-8", "surrogateescape"))
        with caplog.at_level(logging.WARNING, logger="omni.model_card"):
            assert read_card(str(tmp_path)) is None
        assert "ignoring" in caplog.text
        caplog.clear()


def test_the_shipped_card_suggests_questions_the_model_was_trained_on():
    from omni.defaults import DEFAULT_MODEL_DIR
    from omni.synth.questions import all_question_texts
    from omni.synth.tool_world import request_texts

    card = read_card(DEFAULT_MODEL_DIR)
    assert card is not None and "synthetic world" in card["about"] and len(card["ask"]) >= 4
    train = set(all_question_texts("train")) | set(request_texts("train"))  # questions, and the light
    assert all(q in train for q in card["ask"]), [q for q in card["ask"] if q not in train]

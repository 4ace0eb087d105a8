"""Answer tokens at a chosen onset phase (`curriculum.answer_phases`, `bench/answer_phases.py`)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch


def test_the_phase_heard_most_often_is_chosen_by_a_margin_and_zero_wins_ties(load_bench):
    choose = load_bench("answer_phases").choose
    phases = [0.0, 0.25, 0.5, 0.75]
    scores = {"one": [0, 3, 1, 3], "red": [3, 3, 3, 3], "green": [0, 0, 0, 0], "up": [2, 0, 3, 1]}
    assert choose(scores, phases) == {"one": 0.25, "red": 0.0, "green": 0.0, "up": 0.5}
    assert choose(scores, phases, margin=2) == {"one": 0.25, "red": 0.0, "green": 0.0, "up": 0.0}  # 3 vs 2: noise


def test_answer_tokens_are_those_of_the_delayed_audio(mini_pack, tmp_path):
    from mdp.curriculum.data import answer_code_table, load_answer_phases
    from omni.synth.audio import mulaw_decode
    from omni.synth.pack import Pack
    from speech import Codec

    pack, codec = Pack(mini_pack), Codec.from_pretrained()
    texts = pack.meta["answer_texts"]
    table = tmp_path / "phases.json"
    table.write_text(json.dumps({"phases": {texts[1]: 0.5, texts[2]: 0.0}}))
    phases = load_answer_phases(str(table))
    plain = answer_code_table(pack, codec, use_pack=False)
    moved = answer_code_table(pack, codec, use_pack=True, phases=phases)  # a table overrides the pack's tokens
    wav = mulaw_decode(pack.answer_mulaw[pack.answer_offset[1] : pack.answer_offset[2]])  # independent of answer_wav
    with torch.no_grad():
        want = codec.encode(torch.from_numpy(np.concatenate([np.zeros(codec.hop_length // 2, wav.dtype), wav])))[0]
    np.testing.assert_array_equal(moved[1], want.numpy())
    assert not np.array_equal(moved[1], plain[1])  # 30 ms of silence first: other tokens
    for a in [0] + list(range(2, len(texts))):  # phase 0 or not in the table: as before
        np.testing.assert_array_equal(moved[a], plain[a])
    assert load_answer_phases(None) is None
    table.write_text(json.dumps({"phases": {texts[1]: 1.5}}))
    with pytest.raises(ValueError, match="shares of a frame"):
        load_answer_phases(str(table))
    for text in ("{}", "not json"):  # no table: a clear error naming the recipe field
        table.write_text(text)
        with pytest.raises(ValueError, match="curriculum.answer_phases"):
            load_answer_phases(str(table))
    with pytest.raises(ValueError, match="curriculum.answer_phases"):
        load_answer_phases(str(tmp_path / "missing.json"))

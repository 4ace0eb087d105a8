"""bench/wording_proxy.py: the reading of new wordings, trained and judged on the CPU in text."""

from __future__ import annotations

import json

import pytest


def test_training_draws_are_reworded_as_often_as_the_bank_hears_it(load_bench):
    wp = load_bench("wording_proxy")
    from omni.synth.questions import all_question_texts
    from omni.synth.rewording import is_heldout_wording, split_question

    train = set(all_question_texts("train"))
    plain = wp.train_items(600, "none", 6, seed=0)
    assert all(q in train for _, q, _ in plain)  # only the training wordings
    wide = wp.train_items(600, "wide", 6, seed=0)
    reworded = [q for _, q, _ in wide if q not in train]
    # 6 rewordings beside 8 renderings: 6 / 14 of the draws, less the few texts no rewording exists for
    assert 0.3 < len(reworded) / len(wide) < 0.5
    assert all(not is_heldout_wording(q) for q in reworded)
    # the answers are the questions', a repeat's phrase among them; contexts describe the scene
    assert [a for _, _, a in wide] == [a for _, _, a in plain]
    assert any(c == "" and split_question(q) and split_question(q)[0] == "repeat" for c, q, _ in plain)
    assert any("moving" in c for c, _, _ in plain)


def test_held_out_questions_are_asked_in_both_wordings(load_bench):
    wp = load_bench("wording_proxy")
    from omni.synth.questions import all_question_texts
    from omni.synth.rewording import is_heldout_wording
    from omni.synth.rewording import split_question

    evals = wp.eval_items(80)
    train = set(all_question_texts("train"))
    for e in evals:
        assert is_heldout_wording(e["heldout"]) and not is_heldout_wording(e["trained"])
        assert e["answer"] in e["accept"] and "/heldout/" in e["wording"]
        if e["family"] != "repeat":  # a held-out phrase to repeat makes no training text
            assert e["trained"] in train and split_question(e["trained"])[0] == e["family"]


def test_summary_pairs_styles_by_seed(load_bench):
    wp = load_bench("wording_proxy")
    runs = [{"style": "none", "seed": 0, "heldout_wording": 0.5, "training_wording": 0.9},
            {"style": "wide", "seed": 0, "heldout_wording": 0.7, "training_wording": 0.9},
            {"style": "none", "seed": 1, "heldout_wording": 0.6, "training_wording": 0.8},
            {"style": "wide", "seed": 1, "heldout_wording": 0.5, "training_wording": 0.8}]
    s = wp.summarize(runs, ["none", "wide"])
    assert abs(s["none"]["heldout_wording"] - 0.55) < 1e-9 and abs(s["none"]["gap"] - 0.30) < 1e-9
    vs = s["wide"]["vs_none"]
    assert [round(d, 6) for d in vs["heldout_diff_per_seed"]] == [0.2, -0.1] and vs["better_in_seeds"] == 1


def test_a_short_run_trains_judges_and_reports(tmp_path, load_bench):
    wp = load_bench("wording_proxy")
    out = tmp_path / "proxy.json"
    rep = wp.main(["--styles", "none,wide:3", "--seeds", "0", "--steps", "40", "--train", "400", "--eval", "30",
                   "--batch", "16", "--threads", "1", "--no-progress", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["summary"] == rep["summary"] and [r["style"] for r in saved["runs"]] == ["none", "wide:3"]
    assert [r["rewordings"] for r in saved["runs"]] == [6, 3]  # the default count, then the arm's own
    first = saved["runs"][0]
    # 40 steps leave the loss well under a uniform guess over the 512 tokens (ln 512 = 6.2)
    assert first["final_loss"] < 4.0
    assert 0.0 <= first["heldout_wording"] <= 1.0 and set(first["families"]) <= {
        "attribute", "counting", "position", "motion", "repeat"}
    png = tmp_path / "proxy.png"
    assert png.stat().st_size > 1000
    png.unlink()  # --report redraws it from the JSON alone
    assert wp.main(["--report", str(out)]) == saved and png.stat().st_size > 1000


@pytest.mark.parametrize("arm", ["loose", "wide:0", "wide:x"])
def test_an_unknown_arm_is_refused(arm, load_bench, capsys):
    wp = load_bench("wording_proxy")
    with pytest.raises(SystemExit):
        wp.main(["--styles", f"none,{arm}", "--no-progress"])
    assert "is no arm" in capsys.readouterr().err

"""The end-of-turn head (omni/turn_end.py): its files, where the realtime model
reads it, how it is trained (omni/turn_end_train.py), and the shipped one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from omni.turn_end import (CUT_RATE, META, WEIGHTS, TurnEndHead, calibrate_thresholds, load_turn_end,
                           save_turn_end, turn_end_meta)
from omni.turn_end_train import auc, plan_examples, train_head

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("width", [0, 8])
def test_head_files_round_trip_and_a_head_of_another_model_is_refused(tmp_path, width):
    torch.manual_seed(0)
    head = TurnEndHead(32, width=width)
    with torch.no_grad():
        head.mean.normal_()
        head.scale.uniform_(0.5, 2)
    save_turn_end(head, tmp_path, {"position": "reply_start"})
    back = load_turn_end(tmp_path, hidden_size=32)
    x = torch.randn(5, 32)
    assert back.width == width and torch.equal(head(x), back(x))
    assert 0 < back.prob(x[0]) < 1
    # several at once (the replies begun together): each as judged alone
    assert back.probs(list(x[:3])) == pytest.approx([back.prob(h) for h in x[:3]], abs=1e-6)
    assert turn_end_meta(tmp_path)["position"] == "reply_start"
    assert load_turn_end(tmp_path / "nowhere") is None and load_turn_end(None) is None
    with pytest.raises(ValueError, match="hidden size 32, the model has 64"):
        load_turn_end(tmp_path, hidden_size=64)
    (tmp_path / META).write_text("{not json")
    with pytest.raises(ValueError, match="unreadable"):
        load_turn_end(tmp_path)


def test_thresholds_end_at_most_their_share_of_cut_questions():
    rng = np.random.default_rng(0)
    p = rng.uniform(size=400)
    thr = calibrate_thresholds(p)
    assert set(thr) == set(CUT_RATE)
    for eager, rate in CUT_RATE.items():
        ended = (p >= thr[eager]).mean()
        # at most the share, and one score more would pass it: the lowest such threshold
        assert ended <= rate and ended + 1 / len(p) > rate - 1e-9, (eager, ended)
    assert thr["low"] > thr["medium"] == thr["auto"] > thr["high"]
    # ties end together: a threshold never sits on a tie it would have to split
    tied = np.array([0.9] * 10 + [0.1] * 90)
    assert calibrate_thresholds(tied, {"x": 0.05})["x"] > 0.9
    assert calibrate_thresholds(tied, {"x": 0.10})["x"] == pytest.approx(0.1, abs=1e-6)
    with pytest.raises(ValueError, match="no incomplete turns"):
        calibrate_thresholds([])


def test_a_head_brings_its_thresholds_and_bad_ones_are_refused(tmp_path):
    head = TurnEndHead(8)
    save_turn_end(head, tmp_path, {"thresholds": {"auto": 0.71, "high": 0.4}})
    assert load_turn_end(tmp_path).thresholds == {"auto": 0.71, "high": 0.4}
    save_turn_end(head, tmp_path, {})
    assert load_turn_end(tmp_path).thresholds is None  # a head trained before: the protocol's table
    save_turn_end(head, tmp_path, {"thresholds": {"auto": 1.5}})
    with pytest.raises(ValueError, match="thresholds must map eagerness"):
        load_turn_end(tmp_path)


def test_the_realtime_model_judges_a_turn_when_its_reply_begins():
    from omni.config import get_omni_config
    from omni.model import OmniModel
    from omni.realtime import RealtimeOmni
    from omni.realtime_api import UserChunk

    torch.manual_seed(0)
    model = OmniModel(get_omni_config("debug"))
    head = TurnEndHead(model.config.llm.hidden_size, 8)
    seen = []

    class Spy(TurnEndHead):
        def probs(self, hiddens):
            seen.extend(h.clone() for h in hiddens)
            return head.probs(hiddens)

    spy = Spy(model.config.llm.hidden_size, 8)
    rt = RealtimeOmni(model, max_slots=1, capacity=512, turn_end=spy)
    plain = RealtimeOmni(model, max_slots=1, capacity=512)
    audio = (0.1 * np.sin(np.arange(16000) / 9)).astype(np.float32)
    for r in (rt, plain):
        s = r.open_slot()
        r.prefill([(s, r.encode_chunk(s, UserChunk(audio)))])
        r.begin_response(s)
    p = rt.turn_end_prob(0)
    assert len(seen) == 1 and p == pytest.approx(head.prob(seen[0]))
    assert plain.turn_end_prob(0) is None  # no head: no judgment
    # the hidden state it judged is the reply's first (the one the reply samples from)
    assert torch.allclose(seen[0], plain._slot(0).reply.hidden)
    # a reply made to start with given text (a forced tool call) is not a judgment of the turn
    rt.end_response(0)
    rt.begin_response(0, opening="<longcat_tool_call>")
    assert rt.turn_end_prob(0) is None


def test_training_data_labels_cuts_and_whole_questions():
    from omni.synth.questions import all_question_texts

    whole = set(all_question_texts("train")) | set(all_question_texts("heldout"))
    ex = plan_examples("train", 200, seed=3)
    assert sum(e.complete for e in ex) >= 100  # every even example is whole; a cut may be a whole question too
    for e in ex:
        assert e.complete == (e.text in whole)
    assert any(not e.complete for e in ex) and any(e.camera for e in ex) and any(e.history for e in ex)
    held = plan_examples("heldout", 50, seed=3)
    assert {e.voice["name"].split("+")[1] for e in held} <= {"m7", "f4", "klatt4"}  # unseen speakers


def test_the_silence_after_the_words_is_drawn_in_the_asked_range():
    import argparse

    from omni.turn_end_train import TAIL_S, tail_ms_range

    assert all(TAIL_S[0] <= e.tail_s <= TAIL_S[1] for e in plan_examples("train", 50, seed=5))
    short = plan_examples("train", 50, seed=5, tail_s=tail_ms_range("30,70"))
    assert all(0.03 <= e.tail_s <= 0.07 for e in short)
    assert [e.text for e in short] == [e.text for e in plan_examples("train", 50, seed=5)]  # only the silences change
    for bad in ("70,30", "fifty", "10", "0,5000"):
        with pytest.raises(argparse.ArgumentTypeError, match="tail-ms"):
            tail_ms_range(bad)


def test_training_utterances_in_the_bank_voices_never_use_held_out_speakers():
    from omni.synth.voices import ASSISTANT_VOICE, HELDOUT_VARIANTS, TRAIN_VARIANTS

    ex = plan_examples("train", 300, seed=4, voices="bank")
    variants = {e.voice["name"].split("+")[1] for e in ex}
    assert not variants & set(HELDOUT_VARIANTS) and ASSISTANT_VOICE.name not in {e.voice["name"] for e in ex}
    assert len(variants - set(TRAIN_VARIANTS)) > 30  # many more timbres than the train split's 11
    assert not any(e.voice["name"].startswith("en-gb+") for e in ex)  # spoken as "en", which honours the variant
    # the texts and cuts are those of the split's own voices: only the voices change
    assert [e.text for e in ex] == [e.text for e in plan_examples("train", 300, seed=4)]
    with pytest.raises(ValueError):
        plan_examples("heldout", 10, seed=4, voices="bank")


def test_training_utterances_may_include_rewordings_labelled_whole():
    from omni.synth.questions import all_question_texts
    from omni.synth.rewording import rewordings

    train = all_question_texts("train")
    reworded = {r for _, r in rewordings(train, 2, 6)}
    ex = plan_examples("train", 400, seed=6, rewordings=2)
    whole = set(train) | set(all_question_texts("heldout")) | reworded
    complete = [e.text for e in ex if e.complete]
    assert sum(t in reworded for t in complete) > len(complete) / 3  # 2 of every 3 texts are rewordings
    assert all(e.complete == (e.text in whole) for e in ex)
    assert not {e.text for e in ex} & set(all_question_texts("heldout")) - set(train)  # no held-out wording
    assert [e.text for e in plan_examples("train", 50, seed=6, rewordings=0)] == [
        e.text for e in plan_examples("train", 50, seed=6)]
    with pytest.raises(ValueError, match="train split"):
        plan_examples("heldout", 10, seed=6, rewordings=1)


def test_auc_and_head_training_on_separable_features():
    assert auc(np.array([0.9, 0.8, 0.1, 0.2]), np.array([1, 1, 0, 0])) == 1.0
    assert auc(np.array([0.1, 0.2, 0.9, 0.8]), np.array([1, 1, 0, 0])) == 0.0
    assert auc(np.array([0.5, 0.5]), np.array([1, 0])) == 0.5
    g = torch.Generator().manual_seed(0)
    y = torch.arange(200) % 2
    x = torch.randn(200, 16, generator=g) * 3 + 50  # far from zero: the head standardizes
    x[:, 3] += 4 * y  # one channel tells
    head, loss = train_head(x, y, width=8, steps=300)
    with torch.no_grad():
        p = torch.sigmoid(head(x))
    assert ((p > 0.5).long() == y).float().mean() > 0.95 and loss < 0.2


def test_the_shipped_default_model_has_a_head_that_fits_it():
    from omni.defaults import DEFAULT_MODEL_DIR

    cfg = json.loads((Path(DEFAULT_MODEL_DIR) / "config.json").read_text())
    head = load_turn_end(DEFAULT_MODEL_DIR, cfg["omni"]["llm"]["hidden_size"])
    assert head is not None, f"{DEFAULT_MODEL_DIR}/{WEIGHTS} is missing"
    meta = turn_end_meta(DEFAULT_MODEL_DIR)
    assert meta["heldout"]["auc"] > 0.5 and meta["train"]["utterances"] >= 1000
    # calibrated on cut questions: each eagerness ends about its share of the held-out ones
    assert set(head.thresholds) == set(CUT_RATE)
    for eager, rate in CUT_RATE.items():
        assert meta["heldout"][f"{eager}_incomplete_ended"] <= rate + 0.06, eager


def test_train_turn_end_command_runs_end_to_end(tmp_path):
    """`omni train-turn-end` on the shipped model, tiny: synthesis, features through the serving
    path, training and scores; --dry-run leaves the model directory untouched."""
    from omni.defaults import DEFAULT_MODEL_DIR

    before = os.path.getmtime(Path(DEFAULT_MODEL_DIR) / WEIGHTS)
    out = tmp_path / "scores.json"
    r = subprocess.run([sys.executable, "-m", "omni.cli", "train-turn-end", "--train", "24", "--heldout", "12",
                        "--calibration", "20",
                        "--threads", "2", "--dry-run", "--results", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    scores = json.loads(out.read_text())
    assert scores["train"]["utterances"] == 24 and scores["heldout"]["n"] == 12
    assert scores["calibration"]["n"] == 20 and set(scores["thresholds"]) == set(CUT_RATE)
    assert 0 <= scores["heldout"]["auc"] <= 1
    assert os.path.getmtime(Path(DEFAULT_MODEL_DIR) / WEIGHTS) == before


def test_the_shipped_head_judges_alike_in_bf16():
    """`omni serve` runs bf16 on a GPU (`--dtype auto`) while the head was trained on fp32
    hidden states: on held-out utterances the bf16 model's reply-start state must give the
    same decisions (on these 16: mean |dp| under 0.02, at most one decision apart)."""
    from omni.defaults import DEFAULT_MODEL_DIR
    from omni.model import OmniModel
    from omni.synth.voices import check_tools
    from omni.turn_end_train import extract_features, synthesize_examples

    check_tools()
    examples = plan_examples("heldout", 16, 1)
    synthesize_examples(examples, 2)
    probs = {}
    for dtype in (torch.float32, torch.bfloat16):
        model = OmniModel.from_pretrained(DEFAULT_MODEL_DIR, dtype=dtype)
        head = load_turn_end(DEFAULT_MODEL_DIR, model.config.llm.hidden_size, "cpu")
        with torch.no_grad():
            probs[dtype] = torch.sigmoid(head(extract_features(model, examples, "heldout", 8).float())).numpy()
    a, b = probs[torch.float32], probs[torch.bfloat16]
    assert not np.array_equal(a, b), "the bf16 model gave the fp32 numbers: was it cast?"
    assert np.abs(a - b).mean() < 0.02 and ((a >= 0.5) == (b >= 0.5)).mean() >= 15 / 16


def test_turn_end_silence_bench_runs(tmp_path):
    """bench/turn_end_silence.py, tiny: the shipped head scored after two silence ranges."""
    out = tmp_path / "silence.json"
    r = subprocess.run([sys.executable, "bench/turn_end_silence.py", "-n", "8", "--tails", "30,70 100,300",
                        "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert [row["tail_ms"] for row in rows] == [[30, 70], [100, 300]] and all(row["n"] == 8 for row in rows)
    assert all(0 <= row["auc"] <= 1 for row in rows)

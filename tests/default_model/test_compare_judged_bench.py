"""bench/compare_judged.py: two judged reports compared question by question."""

from __future__ import annotations

import json

import pytest


def _report(path, oks, speech=None):
    fams = ["attribute", "counting"] * (len(oks) // 2)
    samples = [{"id": f"q{i}", "family": f, "text_ok": ok, "speech_ok": None if speech is None else speech[i]}
               for i, (f, ok) in enumerate(zip(fams, oks))]
    path.write_text(json.dumps({"samples": samples}))
    return str(path)


def test_paired_counts_accuracy_and_mcnemar(tmp_path, load_bench):
    cj = load_bench("compare_judged")
    a = _report(tmp_path / "a.json", [True, True, True, False, True, False, False, False])
    b = _report(tmp_path / "b.json", [True, False, False, False, True, True, True, True])
    out = tmp_path / "c.json"
    assert cj.main([a, b, "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    first, second = res["runs"]
    assert (first["right"], second["right"]) == (4, 5) and res["questions"] == 8
    assert first["families"] == {"attribute": 0.75, "counting": 0.25}
    assert (second["only_first"], second["only_this"]) == (2, 3)
    assert second["mcnemar_p"] == 1.0  # 2 against 3 discordant: nothing to tell
    assert "mcnemar_p" not in first


def test_reports_must_hold_the_same_questions_and_the_field(tmp_path, load_bench):
    cj = load_bench("compare_judged")
    a = _report(tmp_path / "a.json", [True, False])
    b = _report(tmp_path / "b.json", [True, False, True, True])
    with pytest.raises(SystemExit, match="other questions"):
        cj.compare([a, b], "text_ok")
    with pytest.raises(SystemExit, match="speech_ok"):
        cj.compare([a, a], "speech_ok")
    s = _report(tmp_path / "s.json", [True, False], speech=[False, True])
    assert cj.compare([s, s], "speech_ok")["runs"][1]["only_this"] == 0


def test_wordings_group_questions_by_text_with_the_worlds_words_as_placeholders(load_bench):
    cj = load_bench("compare_judged")
    vocab = cj.world_vocabulary()
    assert cj.wording_of("The red one has which shape", vocab) == "the <colour> one has which shape"
    assert cj.wording_of("tell me where the blue star is", vocab) == "tell me where the <colour> <shape> is"
    assert cj.wording_of("tell me how many triangles there are", vocab) == "tell me how many triangles there are"


def test_by_wording_gives_each_runs_accuracy_per_wording_and_the_swings(tmp_path, load_bench, mini_pack):
    from omni.synth.pack import Pack

    cj = load_bench("compare_judged")
    pack = Pack(str(mini_pack))
    vocab = cj.world_vocabulary()
    ids = [pack.sample_id(i) for i in range(len(pack))]
    wording = {pack.sample_id(i): cj.wording_of(pack.question_text(i), vocab) for i in range(len(pack))}
    # the most asked wording: the first run answers all of it, the second none; the rest alike
    top = max(set(wording.values()), key=lambda w: sum(v == w for v in wording.values()))
    asked = sum(v == top for v in wording.values())
    assert asked >= 2, "the tiny pack repeats no wording: the test needs one asked twice"

    def report(name, ok_top):
        samples = [{"id": q, "family": pack.family(i), "text_ok": ok_top if wording[q] == top else (i % 2 == 0)}
                   for i, q in enumerate(ids)]
        path = tmp_path / name
        path.write_text(json.dumps({"samples": samples}))
        return str(path)

    a, b = report("a.json", True), report("b.json", False)
    out = tmp_path / "w.json"
    assert cj.main([a, b, "--pack", str(mini_pack), "--min-asked", "2", "--out", str(out)]) == 0
    bw = json.loads(out.read_text())["by_wording"]
    row = next(r for r in bw["rows"] if r["wording"] == top)
    assert row["asked"] == asked and row["accuracy"] == [1.0, 0.0]
    assert all(r["accuracy"][0] == r["accuracy"][1] for r in bw["rows"] if r["wording"] != top)
    assert bw["swings"][0]["worse"] == [top] and bw["swings"][0]["better"] == []
    assert bw["swings"][0]["questions_in_swinging_wordings"] == asked
    assert all(r["asked"] >= 2 for r in bw["rows"])
    # reports of other questions than the pack's are refused, naming the pack
    other = tmp_path / "o.json"
    other.write_text(json.dumps({"samples": [{"id": "elsewhere-1", "family": "attribute", "text_ok": True}]}))
    with pytest.raises(SystemExit, match="not their pack"):
        cj.main([str(other), str(other), "--pack", str(mini_pack)])


def test_the_test_over_wordings_counts_wordings_not_questions(load_bench):
    cj = load_bench("compare_judged")

    def runs(right_a, right_b, cluster):
        a = [{"id": q, "text_ok": right_a(q)} for q in cluster]
        b = [{"id": q, "text_ok": right_b(q)} for q in cluster]
        return a, b

    # one wording of 12 questions flips: McNemar sees 12 discordant questions, the wordings see one
    cluster = {f"q{i}": ("w0" if i < 12 else f"w{i}") for i in range(30)}
    a, b = runs(lambda q: False, lambda q: cluster[q] == "w0", cluster)
    one = cj.clustered(a, b, cluster, "text_ok", resamples=2000)
    assert one["clusters"] == 19 and one["difference"] == round(12 / 30, 4)
    assert one["p"] == 1.0  # flipping the one wording's sign never makes the sum smaller
    assert cj.paired(a, b)["mcnemar_p"] < 0.001
    # the same 12 questions spread over 12 wordings: now a real difference
    spread = {f"q{i}": f"w{i}" for i in range(30)}
    a, b = runs(lambda q: False, lambda q: int(q[1:]) < 12, spread)
    many = cj.clustered(a, b, spread, "text_ok", resamples=2000)
    assert many["p"] < 0.01 and many["interval95"][0] > 0
    # identical runs: no difference, p = 1, the interval a point
    same = cj.clustered(a, a, spread, "text_ok", resamples=500)
    assert same["difference"] == 0 and same["p"] == 1.0 and same["interval95"] == [0.0, 0.0]

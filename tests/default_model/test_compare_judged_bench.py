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

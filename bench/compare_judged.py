"""Two or more judged runs of `bench/default_model.py` on the same held-out questions, paired.

    python bench/compare_judged.py bench/results/default_model_gpu_run13_scratch.json \\
        bench/results/default_model_gpu_run14_follow.json --out bench/results/compare_run13_run14.json

Models judged on the same questions differ question by question, and a few hundred questions
leave wide margins: this gives each run's accuracy (overall and per family) and, for each run
against the first, the questions only one of the two answered right and the exact two-sided
McNemar p-value (`bench/recipe_ab.py`'s). `--field speech_ok` compares the spoken replies heard
right instead of the text (reports that judged speech). Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from recipe_ab import paired  # noqa: E402


def load(path: str, field: str) -> list[dict]:
    with open(path) as fh:
        report = json.load(fh)
    samples = report.get("samples")
    if not samples:
        raise SystemExit(f"{path}: no per-question samples (a bench/default_model.py report?)")
    if any(s.get(field) is None for s in samples):
        raise SystemExit(f"{path}: some samples have no {field!r} (judged without it?)")
    return samples


def compare(paths: list[str], field: str) -> dict:
    runs = [load(p, field) for p in paths]
    ids = {s["id"] for s in runs[0]}
    for p, r in zip(paths[1:], runs[1:]):
        if {s["id"] for s in r} != ids:
            raise SystemExit(f"{p} was judged on other questions than {paths[0]}")
    families = sorted({s["family"] for s in runs[0]})
    out = {"field": field, "questions": len(ids), "runs": []}
    for p, r in zip(paths, runs):
        row = {"report": p, "right": sum(bool(s[field]) for s in r),
               "families": {f: round(sum(bool(s[field]) for s in r if s["family"] == f)
                                     / max(1, sum(s["family"] == f for s in r)), 4) for f in families}}
        row["accuracy"] = round(row["right"] / len(ids), 4)
        if r is not runs[0]:
            row.update(paired(runs[0], r, field))
        out["runs"].append(row)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("reports", nargs="+", help="bench/default_model.py JSON reports; the first is the reference")
    ap.add_argument("--field", default="text_ok", choices=("text_ok", "speech_ok"), help="what is compared")
    ap.add_argument("--out", default=None, help="JSON path (default: print only)")
    a = ap.parse_args(argv)
    if len(a.reports) < 2:
        ap.error("give at least two reports")
    res = compare(a.reports, a.field)
    fams = list(res["runs"][0]["families"])
    print(f"{res['questions']} questions, {a.field}")
    print(f"{'report':<56} {'all':>6} " + " ".join(f"{f[:9]:>9}" for f in fams) + "  only first / only this, p")
    for r in res["runs"]:
        tail = f"  {r['only_first']} / {r['only_this']}, p = {r['mcnemar_p']}" if "mcnemar_p" in r else ""
        print(f"{os.path.basename(r['report'])[:56]:<56} {100 * r['accuracy']:5.1f}% "
              + " ".join(f"{100 * r['families'][f]:8.1f}%" for f in fams) + tail)
    if a.out:
        res["command"] = "python bench/compare_judged.py " + " ".join(sys.argv[1:] if argv is None else argv)
        with open(a.out, "w") as fh:
            json.dump(res, fh, indent=1)
        print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

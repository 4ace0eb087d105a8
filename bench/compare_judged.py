"""Two or more judged runs of `bench/default_model.py` on the same held-out questions, paired.

    python bench/compare_judged.py bench/results/default_model_gpu_run13_scratch.json \\
        bench/results/default_model_gpu_run14_follow.json --out bench/results/compare_run13_run14.json

Models judged on the same questions differ question by question, and a few hundred questions
leave wide margins: this gives each run's accuracy (overall and per family) and, for each run
against the first, the questions only one of the two answered right and the exact two-sided
McNemar p-value (`bench/recipe_ab.py`'s). `--field speech_ok` compares the spoken replies heard
right instead of the text (reports that judged speech). Prints a table, writes JSON.

`--pack PACK` (the held-out pack the reports judged) adds the questions' wordings: each question's
text with the world's words (colours, shapes, numbers, places, directions) as placeholders, so
"the red one has which shape" and "the blue one has which shape" are one wording. For each wording
asked at least `--min-asked` times it gives every run's accuracy, and which wordings a run answers
far better or worse than the first (by `--swing` or more): whether runs differ by the question
types they answer or by whole wordings that flip between them. A run's answers to the questions of
one wording are not independent (a run reads a wording one way for all its questions), so McNemar's
test, which counts questions, is too sure; with `--pack` each run against the first also gets a
test over wordings: the paired difference in questions right summed over wordings, its p-value by
flipping the sign of each wording's difference at random (`--resamples` times), and a 95 % interval
of the accuracy difference from resampling whole wordings.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from recipe_ab import paired  # noqa: E402


def wording_of(text: str, vocabulary: dict[str, str]) -> str:
    """A question's text with the world's words as placeholders: its wording."""
    return " ".join(vocabulary.get(w, w) for w in text.lower().split())


def world_vocabulary() -> dict[str, str]:
    from omni.synth.world import COLOR_NAMES, DIRECTIONS, NUMBER_WORDS, POSITIONS, SHAPES
    vocab = {}
    # "one" stays a word: in this world's questions it is the pronoun ("the red one"), never a count
    for name, words in (("colour", COLOR_NAMES), ("shape", SHAPES), ("number", NUMBER_WORDS),
                        ("place", POSITIONS), ("direction", DIRECTIONS)):
        for w in words:
            if w != "one":
                vocab.setdefault(w, f"<{name}>")
    return vocab


def clustered(a: list[dict], b: list[dict], cluster: dict[str, str], field: str, resamples: int,
              seed: int = 0) -> dict:
    """Run b against run a, the questions grouped in clusters (wordings): a sign-flip permutation
    p-value of the summed per-cluster difference in questions right, and a 95 % bootstrap interval
    of the accuracy difference, resampling whole clusters."""
    import numpy as np
    ra = {s["id"]: bool(s[field]) for s in a}
    rb = {s["id"]: bool(s[field]) for s in b}
    names = sorted(set(cluster.values()))
    pos = {c: k for k, c in enumerate(names)}
    diff = np.zeros(len(names))
    size = np.zeros(len(names))
    for q, c in cluster.items():
        diff[pos[c]] += int(rb[q]) - int(ra[q])
        size[pos[c]] += 1
    rng = np.random.default_rng(seed)
    observed = abs(diff.sum())
    flips = rng.choice((-1.0, 1.0), size=(resamples, len(names)))
    p = (1 + int((np.abs(flips @ diff) >= observed - 1e-9).sum())) / (resamples + 1)
    picks = rng.integers(0, len(names), size=(resamples, len(names)))
    boot = diff[picks].sum(1) / size[picks].sum(1)
    lo, hi = np.quantile(boot, [0.025, 0.975])
    return {"clusters": len(names), "difference": round(float(diff.sum() / size.sum()), 4),
            "interval95": [round(float(lo), 4), round(float(hi), 4)], "p": round(float(p), 4),
            "resamples": resamples}


def by_wording(runs: list[list[dict]], paths: list[str], field: str, pack_path: str,
               min_asked: int, swing: float, resamples: int = 10000) -> dict:
    """Accuracy per wording for every run, and the wordings that swing against the first run."""
    from omni.synth.pack import Pack
    pack = Pack(pack_path)
    index = {pack.sample_id(i): i for i in range(len(pack))}
    missing = [s["id"] for s in runs[0] if s["id"] not in index]
    if missing:
        raise SystemExit(f"{pack_path} lacks {len(missing)} of the judged questions (e.g. {missing[0]}): not their pack")
    vocab = world_vocabulary()
    wording = {s["id"]: wording_of(pack.question_text(index[s["id"]]), vocab) for s in runs[0]}
    family = {s["id"]: s["family"] for s in runs[0]}
    groups: dict[str, list[str]] = {}
    for qid, w in wording.items():
        groups.setdefault(w, []).append(qid)
    right = [{s["id"]: bool(s[field]) for s in r} for r in runs]
    rows = []
    for w, qids in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        if len(qids) < min_asked:
            continue
        acc = [round(sum(ok[q] for q in qids) / len(qids), 4) for ok in right]
        rows.append({"wording": w, "family": family[qids[0]], "asked": len(qids), "accuracy": acc})
    asked = {r["wording"]: r["asked"] for r in rows}
    swings = []
    for k, p in enumerate(paths[1:], start=1):
        up = [r["wording"] for r in rows if r["accuracy"][k] - r["accuracy"][0] >= swing]
        down = [r["wording"] for r in rows if r["accuracy"][0] - r["accuracy"][k] >= swing]
        swings.append({"report": p, "better": up, "worse": down,
                       "questions_in_swinging_wordings": sum(asked[w] for w in up + down),
                       "over_wordings": clustered(runs[0], runs[k], wording, field, resamples)})
    return {"pack": pack_path, "min_asked": min_asked, "swing": swing, "wordings": len(groups),
            "shown": len(rows), "questions_shown": sum(r["asked"] for r in rows), "rows": rows, "swings": swings}


def load(path: str, field: str) -> list[dict]:
    with open(path) as fh:
        report = json.load(fh)
    samples = report.get("samples")
    if not samples:
        raise SystemExit(f"{path}: no per-question samples (a bench/default_model.py report?)")
    if any(s.get(field) is None for s in samples):
        raise SystemExit(f"{path}: some samples have no {field!r} (judged without it?)")
    return samples


def compare(paths: list[str], field: str, runs: list[list[dict]] | None = None) -> dict:
    """Each run's accuracy, and each against the first, paired; `runs`: the reports already loaded."""
    runs = runs if runs is not None else [load(p, field) for p in paths]
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
    ap.add_argument("--pack", default=None, help="the held-out pack the reports judged: adds accuracy per wording")
    ap.add_argument("--min-asked", type=int, default=3, help="wordings asked fewer times are left out (--pack)")
    ap.add_argument("--swing", type=float, default=0.4,
                    help="a wording swings when a run's accuracy on it differs from the first's by this much (--pack)")
    ap.add_argument("--resamples", type=int, default=10000,
                    help="sign flips and bootstrap draws of the test over wordings (--pack)")
    a = ap.parse_args(argv)
    if len(a.reports) < 2:
        ap.error("give at least two reports")
    if a.pack is not None and not os.path.isfile(a.pack):
        ap.error(f"--pack {a.pack}: no such file")
    if a.min_asked < 1 or not 0 < a.swing <= 1 or a.resamples < 100:
        ap.error("--min-asked must be >= 1, --swing in (0, 1] and --resamples >= 100")
    runs = [load(p, a.field) for p in a.reports]
    res = compare(a.reports, a.field, runs)
    fams = list(res["runs"][0]["families"])
    print(f"{res['questions']} questions, {a.field}")
    print(f"{'report':<56} {'all':>6} " + " ".join(f"{f[:9]:>9}" for f in fams) + "  only first / only this, p")
    for r in res["runs"]:
        tail = f"  {r['only_first']} / {r['only_this']}, p = {r['mcnemar_p']}" if "mcnemar_p" in r else ""
        print(f"{os.path.basename(r['report'])[:56]:<56} {100 * r['accuracy']:5.1f}% "
              + " ".join(f"{100 * r['families'][f]:8.1f}%" for f in fams) + tail)
    if a.pack:
        res["by_wording"] = bw = by_wording(runs, a.reports, a.field, a.pack, a.min_asked, a.swing, a.resamples)
        print(f"\nby wording: {bw['wordings']} wordings, {bw['shown']} asked >= {a.min_asked} times "
              f"({bw['questions_shown']} questions); accuracy per run, in the reports' order")
        for r in bw["rows"]:
            print(f"  {r['family']:<10} {r['asked']:>3}  " + " ".join(f"{100 * x:5.1f}%" for x in r["accuracy"])
                  + f"  {r['wording']}")
        for sw in bw["swings"]:
            print(f"{os.path.basename(sw['report'])}: {len(sw['better'])} wordings better and {len(sw['worse'])} worse "
                  f"by >= {100 * a.swing:.0f} points than the first ({sw['questions_in_swinging_wordings']} questions)")
            ow = sw["over_wordings"]
            print(f"  against the first over {ow['clusters']} wordings: {100 * ow['difference']:+.1f} points, "
                  f"95 % interval {100 * ow['interval95'][0]:+.1f} to {100 * ow['interval95'][1]:+.1f}, p = {ow['p']}")
    if a.out:
        res["command"] = "python bench/compare_judged.py " + " ".join(sys.argv[1:] if argv is None else argv)
        with open(a.out, "w") as fh:
            json.dump(res, fh, indent=1)
        print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

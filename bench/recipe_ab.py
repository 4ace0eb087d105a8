"""Recipe A/B: train the default model's curriculum under two or more recipe variants and
compare them on the same held-out questions, paired.

    python bench/recipe_ab.py --train runs/data/train.pack.npz --heldout runs/data/heldout.pack.npz \\
        --common stage_steps=vision:450 --common global_batch=32 \\
        --arm "baseline: encoder_steps=" \\
        --arm "pretrained: encoder_steps=vision:600,audio:0" \\
        --question text --limit 200 --out bench/results/recipe_ab_encoders_cpu.json

Each arm is `NAME: KEY=VALUE; KEY=VALUE` (recipe overrides of `omni train --set`, on top of
the `--common` ones). Every arm runs `omni train --recipe RECIPE` into its own directory,
then `bench/default_model.py` on its exported model; the arms answer the same held-out
samples, so the comparison is paired: besides each arm's accuracy (per family) the report
gives, for every arm against the first, the samples only one of the two got right and the
exact two-sided McNemar p-value, so a difference within the noise of a few hundred
questions reads as such. Prints a table, writes JSON and a bar plot next to it.
`--reuse` keeps an arm's model from an earlier run with the same settings (a series of
A/Bs against one baseline trains the baseline once).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_arm(spec: str) -> tuple[str, list[str]]:
    """`NAME: k=v; k=v` -> (NAME, ["k=v", "k=v"]). Values may hold ',' and ':'."""
    name, sep, rest = spec.partition(":")
    name = name.strip()
    if not sep or not name or not name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"arm {spec!r}: expected 'NAME: key=value; key=value' with a plain NAME")
    sets = [s.strip() for s in rest.split(";") if s.strip()]
    for s in sets:
        if "=" not in s:
            raise ValueError(f"arm {name}: override {s!r} is not key=value")
    return name, sets


def mcnemar_p(only_a: int, only_b: int) -> float:
    """Exact two-sided McNemar p-value: the discordant pairs under a fair coin."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    k = min(only_a, only_b)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def paired(a: list[dict], b: list[dict], field: str = "text_ok") -> dict:
    """Compare two reports' samples (same ids) on `field`: right in one arm only, and McNemar's p."""
    ra = {s["id"]: bool(s[field]) for s in a}
    rb = {s["id"]: bool(s[field]) for s in b}
    if ra.keys() != rb.keys():
        raise ValueError("the arms were evaluated on different samples")
    only_a = sum(ra[k] and not rb[k] for k in ra)
    only_b = sum(rb[k] and not ra[k] for k in ra)
    return {"only_first": only_a, "only_this": only_b, "mcnemar_p": round(mcnemar_p(only_a, only_b), 4)}


# torchrun's variables: an arm is its own one-process job, never a rank of the caller's group
DIST_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "MASTER_ADDR", "MASTER_PORT")


def run(cmd: list[str], log: str) -> float:
    t0 = time.time()
    env = {k: v for k, v in os.environ.items() if k not in DIST_ENV}
    with open(log, "w") as fh:
        proc = subprocess.run(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, env=env)
    if proc.returncode:
        with open(log) as fh:
            tail = fh.read()[-3000:]
        raise SystemExit(f"{' '.join(cmd)} failed (exit {proc.returncode}); log {log}:\n{tail}")
    return time.time() - t0


def plot(report: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = list(report["arms"])
    fams = sorted({f for a in arms for f in report["arms"][a]["text"]})
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(fams) * len(arms) / 2), 3.6))
    width = 0.8 / len(arms)
    for j, a in enumerate(arms):
        acc = [report["arms"][a]["text"].get(f, {}).get("accuracy", 0.0) for f in fams]
        ax.bar([i + j * width for i in range(len(fams))], acc, width, label=f"{a} ({report['arms'][a]['accuracy']:.1%})")
    ax.set_xticks([i + width * (len(arms) - 1) / 2 for i in range(len(fams))], fams, rotation=30, ha="right")
    ax.set_ylabel("held-out exact match")
    ax.set_ylim(0, 1)
    ax.set_title(f"recipe A/B, {report['question']} questions, n={report['samples']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--train", required=True, help="training pack (.npz, `omni data pack`)")
    p.add_argument("--heldout", required=True, help="held-out pack (.npz) the arms are judged on")
    p.add_argument("--recipe", default="omni-mini", help="base recipe (omni train --recipe)")
    p.add_argument("--common", action="append", default=[], metavar="KEY=VALUE",
                   help="recipe override for every arm (repeatable)")
    p.add_argument("--arm", action="append", required=True, metavar="'NAME: K=V; K=V'",
                   help="one variant (repeatable, at least two); the first is the reference")
    p.add_argument("--question", choices=("spoken", "text", "transcribe", "caption"), default="text",
                   help="held-out question mode of bench/default_model.py")
    p.add_argument("--limit", type=int, default=200, help="held-out samples (even stride; 0 = all)")
    p.add_argument("--work", default="runs/recipe_ab", help="arms' training directories and logs")
    p.add_argument("--reuse", action="store_true",
                   help="skip training an arm whose directory holds a model trained with the same recipe, "
                        "overrides and packs (WORK/NAME/arm.json); it is evaluated again")
    p.add_argument("--out", default="bench/results/recipe_ab.json", help="JSON report path")
    args = p.parse_args()
    try:
        arms = [parse_arm(a) for a in args.arm]
    except ValueError as e:
        p.error(str(e))
    if len(arms) < 2 or len({n for n, _ in arms}) != len(arms):
        p.error("give at least two arms with distinct names")
    for f in (args.train, args.heldout):
        if not os.path.isfile(f):
            p.error(f"no such pack: {f} (write it with `omni data default --out runs/data`)")

    py = sys.executable
    report = {"recipe": args.recipe, "common": args.common, "question": args.question,
              "device": f"{platform.machine()} CPU, {os.cpu_count()} cores", "arms": {}}
    for i, (name, sets) in enumerate(arms):
        work = os.path.abspath(os.path.join(args.work, name))
        os.makedirs(work, exist_ok=True)
        overrides = [f"pack={os.path.abspath(args.train)}", *args.common, *sets, f"out_dir={work}"]
        cmd = [py, "-m", "omni.cli", "train", "--recipe", args.recipe, "--no-resume"]
        for o in overrides:
            cmd += ["--set", o]
        record = os.path.join(work, "arm.json")  # what this directory's model was trained with
        trained = {"recipe": args.recipe, "overrides": overrides[:-1]}
        encoders = os.path.join(work, "encoders.json")  # the encoder pre-training's log, if it runs
        prior = None
        if args.reuse and os.path.isfile(record) and os.path.isdir(os.path.join(work, "model")):
            with open(record) as fh:
                prior = json.load(fh)
            if {k: prior.get(k) for k in trained} != trained:
                prior = None
        if prior is not None:
            print(f"[{i + 1}/{len(arms)}] {name}: reusing the model trained with the same recipe", flush=True)
            train_s = prior["train_s"]
        else:
            print(f"[{i + 1}/{len(arms)}] {name}: training ({'; '.join(sets) or 'no overrides'})", flush=True)
            for stale in (encoders, record):
                if os.path.exists(stale):
                    os.remove(stale)
            train_s = run(cmd, os.path.join(work, "train.log"))
            with open(record, "w") as fh:
                json.dump({**trained, "train_s": round(train_s, 1)}, fh, indent=1)
        evaluation = os.path.join(work, "eval.json")
        print(f"[{i + 1}/{len(arms)}] {name}: evaluating on {args.limit or 'all'} held-out samples", flush=True)
        eval_s = run([py, "bench/default_model.py", "--model", os.path.join(work, "model"), "--pack",
                      os.path.abspath(args.heldout), "--question", args.question, "--limit", str(args.limit),
                      "--out", evaluation], os.path.join(work, "eval.log"))
        with open(evaluation) as fh:
            ev = json.load(fh)
        ok = [bool(s["text_ok"]) for s in ev["samples"]]
        report["arms"][name] = {"overrides": sets, "train_s": round(train_s, 1), "reused": prior is not None,
                                "eval_s": round(eval_s, 1),
                                "accuracy": round(sum(ok) / len(ok), 4), "text": ev["text"],
                                "partial_credit": ev.get("partial_credit"), "samples": ev["samples"]}
        if os.path.isfile(encoders):
            with open(encoders) as fh:
                enc = json.load(fh)
            report["arms"][name]["encoders"] = {k: {kk: v[kk] for kk in ("steps", "seconds", "loss_first", "loss_last10")}
                                                for k, v in enc.items()}
    first = arms[0][0]
    report["samples"] = len(report["arms"][first]["samples"])
    for name, _ in arms[1:]:
        report["arms"][name]["vs_" + first] = paired(report["arms"][first]["samples"], report["arms"][name]["samples"])

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(report, fh, indent=1)
    plot(report, os.path.splitext(args.out)[0] + ".png")
    print(f"\nrecipe {args.recipe} ({'; '.join(args.common)}), {report['samples']} held-out {args.question} questions, "
          f"{report['device']}")
    print(f"{'arm':14} {'exact':>7} {'train s':>8}  vs {first}")
    for name, _ in arms:
        a = report["arms"][name]
        cmp = a.get("vs_" + first)
        vs = "" if cmp is None else (f"right only here {cmp['only_this']}, only in {first} {cmp['only_first']}, "
                                     f"McNemar p={cmp['mcnemar_p']}")
        print(f"{name:14} {a['accuracy']:7.1%} {a['train_s']:8.0f}  {vs}")
    print(f"wrote {args.out} and its plot")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

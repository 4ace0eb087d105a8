"""Which rewordings teach a small decoder to read wordings it never saw: a CPU proxy.

    python bench/wording_proxy.py --styles none,neighbour,wide --seeds 0,1,2 \\
        --out bench/results/wording_proxy_cpu.json

The default model answers a held-out question 12-17 points less often in a held-out wording
than in a training one, and runs of one recipe differ by whole wordings they happen to read
right (`bench/compare_judged.py --pack`). Whether a kind of rewording in the voice bank
(`omni.synth.rewording.STYLES`) closes that gap costs a GPU run of the whole recipe to see
once, and one seed tells little. This proxy asks the same question of the reading alone, in
minutes on a CPU: the picture is replaced by its exact description ("red circle top, blue star
left moving up"), so nothing is to be seen or heard, only read; a decoder of the project's own
architecture (`omni.llm`: half the default model's LLM in width and depth; `--model mini`: that LLM) is trained from
scratch on description + question -> answer in the training wordings, where a question is
replaced by one of its rewordings as often as the GPU recipe's voice bank hears one (R rewordings
beside 8 renderings of each question text: R / (8 + R) of the draws); then held-out scenes are
asked each question twice, in a held-out wording and in a training one. Printed per style: the
accuracy in each, the gap, per family, and each style against the first over the same seeds
(mean difference and its spread). The GPU recipe, not this proxy, decides what ships: a proxy
that reads perfectly seen descriptions with a fresh decoder shows the direction and the size of
an effect on reading, not the default model's accuracy.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

RENDERINGS = 8  # the GPU recipe's voice bank: 8 renderings of every question text beside its rewordings
REPEAT_SHARE = 0.1  # of the draws, "repeat after me" requests (the one rewordable family with no picture)


def describe(scene) -> str:
    """The exact content of a scene as text: each object's colour, shape, place and motion."""
    from omni.synth.questions import scene_caption
    return scene_caption(scene, motion=True)


def _query(scene, rng: np.random.Generator, split: str):
    """(family, kind, query, scene or None) of one random question: visual on `scene`, or a repeat."""
    from omni.synth.questions import speech_query, visual_queries
    if rng.random() < REPEAT_SHARE:
        while True:
            family, kind, query = speech_query(rng, split)
            if family == "repeat":
                return family, kind, query, None
    kinds = [(k, qs) for k, qs in visual_queries(scene).items() if qs]
    (family, kind), qs = kinds[int(rng.integers(len(kinds)))]
    return family, kind, qs[int(rng.integers(len(qs)))], scene


def train_items(n: int, style: str, rewordings: int, seed: int) -> list[tuple[str, str, str]]:
    """(context, question, answer) of `n` training draws; a question is one of its `rewordings`
    rewordings (in `style`; "none": never) R / (8 + R) of the time, as the voice bank has it."""
    from omni.synth.questions import answer_query, word_query
    from omni.synth.rewording import reword
    from omni.synth.world import rng_for, sample_scene
    # the questions are drawn apart from the rewording: every style is asked the same questions
    rng, rng_reword = rng_for(seed, "wording-proxy", "train"), rng_for(seed, "wording-proxy", "reword")
    p_reworded = 0.0 if style == "none" else rewordings / (RENDERINGS + rewordings)
    out = []
    while len(out) < n:
        scene = sample_scene(seed, "train", len(out))
        family, kind, query, on = _query(scene, rng, "train")
        _, text = word_query(family, kind, query, "train", rng)
        reworded, k = rng_reword.random() < p_reworded, int(rng_reword.integers(rewordings))
        if reworded:
            # the world's seed, as the bank draws them: the same R rewordings of each text
            text = reword(text, 0, k, style=style) or text
        out.append((describe(on) if on is not None else "", text, answer_query(on, query)))
    return out


def eval_items(n: int, seed: int = 0) -> list[dict]:
    """`n` held-out questions (held-out scenes and phrases), each in a held-out and a training wording."""
    from omni.synth.questions import Question, answer_query, word_query
    from omni.synth.world import rng_for, sample_scene
    rng = rng_for(seed, "wording-proxy", "heldout")
    out = []
    while len(out) < n:
        scene = sample_scene(seed, "heldout", len(out))
        family, kind, query, on = _query(scene, rng, "heldout")
        answer = answer_query(on, query)
        accept = Question(family, kind, "", "", answer, query).accept()
        wording, heldout = word_query(family, kind, query, "heldout", rng)
        _, trained = word_query(family, kind, query, "train", rng)
        out.append({"context": describe(on) if on is not None else "", "family": family, "answer": answer,
                    "accept": accept, "heldout": heldout, "trained": trained, "wording": wording})
    return out


class Encoder:
    """context <pause> question <pause> answer </s>, in the default model's tokenizer."""

    def __init__(self) -> None:
        from omni.tokenizer import load_tokenizer
        self.tok = load_tokenizer()
        self.ids = self.tok.special

    def prompt(self, context: str, question: str) -> list[int]:
        sep = [self.ids.pause]
        return [self.ids.bos] + (self.tok.encode(context) if context else []) + sep + self.tok.encode(question) + sep

    def answer(self, answer: str) -> list[int]:
        return self.tok.encode(answer) + [self.ids.eos]


def batches(enc: Encoder, items: list, batch: int, rng: np.random.Generator):
    """Endless shuffled batches: (input ids [B, T], targets [B, T], -100 outside the answers)."""
    import torch
    rows = []
    for context, question, answer in items:
        p, a = enc.prompt(context, question), enc.answer(answer)
        rows.append((p + a, len(p)))
    while True:
        order = rng.permutation(len(rows))
        for s in range(0, len(order) - batch + 1, batch):
            chosen = [rows[i] for i in order[s:s + batch]]
            t = max(len(r) for r, _ in chosen)
            ids = torch.full((batch, t), enc.ids.pad, dtype=torch.long)
            tgt = torch.full((batch, t), -100, dtype=torch.long)
            for b, (r, p) in enumerate(chosen):
                ids[b, :len(r)] = torch.tensor(r)
                tgt[b, p - 1:len(r) - 1] = torch.tensor(r[p:])  # predict each answer token from the one before
            yield ids, tgt


def model_config(name: str):
    import dataclasses

    from omni.config import get_omni_config
    if name == "mini":  # the default model's LLM
        return get_omni_config("mini").llm
    if name == "small":  # half as wide, half as deep: a quicker proxy
        return dataclasses.replace(get_omni_config("mini").llm, hidden_size=128, num_layers=2, ffn_hidden_size=256,
                                   expert_ffn_hidden_size=128, q_lora_rank=64, kv_lora_rank=32)
    raise ValueError(f"unknown model {name!r}: mini or small")


def train(enc: Encoder, items: list, cfg, steps: int, batch: int, lr: float, seed: int, progress: bool):
    import torch

    from omni.llm.model import LongcatFlashForCausalLM
    torch.manual_seed(seed)
    model = LongcatFlashForCausalLM(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.95))
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))))
    data = batches(enc, items, batch, np.random.default_rng(seed))
    losses = []
    bar = _bar(steps, progress, "train")
    for _ in range(steps):
        ids, tgt = next(data)
        logits = model(ids).logits
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), tgt.flatten(), ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        bar.update(1)
    bar.close()
    return model, losses


def answer_all(model, enc: Encoder, prompts: list[list[int]], max_new: int = 6, batch: int = 256) -> list[str]:
    """Greedy answers (`omni.llm.generation.generate`), the end token left out."""
    import torch

    from omni.llm.generation import generate
    out = []
    with torch.no_grad():
        for s in range(0, len(prompts), batch):
            for toks in generate(model, prompts[s:s + batch], max_new, eos_token_id=enc.ids.eos):
                out.append(enc.tok.decode([t for t in toks if t != enc.ids.eos]))
    return out


def judge(model, enc: Encoder, evals: list[dict]) -> dict:
    """Accuracy in held-out and in training wordings, overall, per family and per held-out wording."""
    from omni.synth.questions import normalize_answer
    res = {}
    for key in ("heldout", "trained"):
        replies = answer_all(model, enc, [enc.prompt(e["context"], e[key]) for e in evals])
        res[key] = [normalize_answer(r) in e["accept"] for r, e in zip(replies, evals)]
    fams = sorted({e["family"] for e in evals})
    by = lambda key, f: float(np.mean([ok for ok, e in zip(res[key], evals) if e["family"] == f]))
    wordings = sorted({e["wording"] for e in evals})
    return {
        "heldout_wording": float(np.mean(res["heldout"])), "training_wording": float(np.mean(res["trained"])),
        "families": {f: {"heldout_wording": by("heldout", f), "training_wording": by("trained", f)} for f in fams},
        "wordings": {w: float(np.mean([ok for ok, e in zip(res["heldout"], evals) if e["wording"] == w]))
                     for w in wordings},
    }


def _bar(total: int, on: bool, desc: str):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, disable=not on, leave=False, file=sys.stderr)


def summarize(runs: list[dict], styles: list[str]) -> dict:
    """Per style: mean and sd over seeds; each style against the first, paired by seed."""
    out = {}
    for style in styles:
        mine = [r for r in runs if r["style"] == style]
        h = [r["heldout_wording"] for r in mine]
        t = [r["training_wording"] for r in mine]
        out[style] = {"seeds": len(mine), "heldout_wording": float(np.mean(h)), "heldout_sd": float(np.std(h)),
                      "training_wording": float(np.mean(t)), "training_sd": float(np.std(t)),
                      "gap": float(np.mean(t) - np.mean(h))}
    base = styles[0]
    for style in styles[1:]:
        diffs = [r["heldout_wording"] - b["heldout_wording"] for r in runs if r["style"] == style
                 for b in runs if b["style"] == base and b["seed"] == r["seed"]]
        out[style]["vs_" + base] = {"heldout_diff_mean": float(np.mean(diffs)), "heldout_diff_per_seed": diffs,
                                    "better_in_seeds": int(sum(d > 0 for d in diffs))}
    return out


def plot(report: dict, path: str) -> None:
    """Each arm's held-out and training-wording accuracy, one dot a seed, and the held-out
    wordings' accuracy per family: where a reader looks before the tables."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    runs, arms = report["runs"], list(report["summary"])
    fig, ax = plt.subplots(1, 2, figsize=(11, 3.8))
    for i, arm in enumerate(arms):
        mine = [r for r in runs if r["style"] == arm]
        for dx, key, colour in ((-0.12, "heldout_wording", "tab:red"), (0.12, "training_wording", "tab:blue")):
            ys = [100 * r[key] for r in mine]
            ax[0].scatter([i + dx] * len(ys), ys, color=colour, s=18,
                          label=("held-out wordings" if key == "heldout_wording" else "training wordings") if i == 0 else None)
            ax[0].hlines(np.mean(ys), i + dx - 0.08, i + dx + 0.08, color=colour)
    ax[0].set(xticks=range(len(arms)), xticklabels=arms, ylabel="held-out questions right %",
              title="each seed (dot) and the mean (bar)")
    ax[0].legend(fontsize=8)
    fams = sorted(runs[0]["families"])
    width = 0.8 / len(arms)
    for i, arm in enumerate(arms):
        mine = [r for r in runs if r["style"] == arm]
        ax[1].bar(np.arange(len(fams)) + i * width, [100 * np.mean([r["families"][f]["heldout_wording"] for r in mine])
                                                     for f in fams], width, label=arm)
    ax[1].set(xticks=np.arange(len(fams)) + 0.4 - width / 2, xticklabels=fams, ylabel="right %",
              title="held-out wordings by family (mean of seeds)")
    ax[1].legend(fontsize=8)
    fig.suptitle(f"reading held-out wordings, {report['model']} decoder, {report['steps']} steps, CPU", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    from omni.commands.argtypes import int_at_least
    from omni.synth.rewording import STYLES
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--styles", default="none,neighbour,wide",
                   help=f"comma-separated arms, the first the baseline: a rewording style (none or of "
                        f"{', '.join(STYLES)}), optionally with its own count of rewordings, e.g. neighbour:16")
    p.add_argument("--rewordings", type=int_at_least(1), default=6,
                   help="rewordings of every question text in the bank, for arms that give none (R: reworded "
                        "R / (8 + R) of the draws; default 6)")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds (default 0,1,2)")
    p.add_argument("--model", choices=("mini", "small"), default="small",
                   help="the decoder: mini (the default model's LLM) or small (half as wide and deep; default)")
    p.add_argument("--train", type=int_at_least(100), default=20000, help="training draws (default 20000)")
    p.add_argument("--eval", type=int_at_least(10), default=600, help="held-out questions (default 600)")
    p.add_argument("--steps", type=int_at_least(1), default=1500, help="optimizer steps (default 1500)")
    p.add_argument("--batch", type=int_at_least(1), default=64, help="batch size (default 64)")
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (default 2e-3)")
    p.add_argument("--threads", type=int_at_least(1), default=2, help="torch threads (default 2)")
    p.add_argument("--out", help="write the JSON here, and the plot beside it (.png)")
    p.add_argument("--report", metavar="JSON", help="redraw the plot of a report this script wrote, and stop")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    if args.report:
        with open(args.report) as f:
            report = json.load(f)
        plot(report, os.path.splitext(args.report)[0] + ".png")
        print(f"-> {os.path.splitext(args.report)[0]}.png")
        return report
    import torch
    torch.set_num_threads(args.threads)
    styles = args.styles.split(",")
    arms = {}
    for arm in styles:
        style, _, count = arm.partition(":")
        if style != "none" and style not in STYLES or count and not (count.isdigit() and int(count) > 0):
            p.error(f"--styles: {arm!r} is no arm: none or one of {sorted(STYLES)}, optionally :N (N >= 1)")
        arms[arm] = (style, int(count) if count else args.rewordings)
    seeds = [int(s) for s in args.seeds.split(",")]
    enc, cfg = Encoder(), model_config(args.model)
    evals = eval_items(args.eval)
    runs = []
    t0 = time.perf_counter()
    for seed in seeds:
        for style in styles:
            items = train_items(args.train, *arms[style], seed)
            t1 = time.perf_counter()
            model, losses = train(enc, items, cfg, args.steps, args.batch, args.lr, seed, not args.no_progress)
            res = judge(model, enc, evals)
            runs.append({"style": style, "rewordings": arms[style][1], "seed": seed, "final_loss": float(np.mean(losses[-50:])),
                         "train_s": round(time.perf_counter() - t1, 1), **res})
            print(f"seed {seed} {style:9s}: held-out wordings {res['heldout_wording']:.1%}, "
                  f"training wordings {res['training_wording']:.1%}, loss {runs[-1]['final_loss']:.3f}, "
                  f"{runs[-1]['train_s']:.0f} s", flush=True)
    summary = summarize(runs, styles)
    print(f"\n| style | held-out wordings (sd) | training wordings (sd) | gap | against {styles[0]}, per seed |")
    print("|---|---|---|---|---|")
    for style in styles:
        s = summary[style]
        vs = s.get("vs_" + styles[0])
        vs_txt = ", ".join(f"{d:+.1%}" for d in vs["heldout_diff_per_seed"]) if vs else "-"
        print(f"| {style} | {s['heldout_wording']:.1%} ({s['heldout_sd']:.1%}) | {s['training_wording']:.1%} "
              f"({s['training_sd']:.1%}) | {s['gap']:+.1%} | {vs_txt} |")
    fams = sorted(runs[0]["families"])
    print("\nheld-out wordings by family (mean over seeds):")
    for style in styles:
        mine = [r for r in runs if r["style"] == style]
        print(f"  {style:9s} " + ", ".join(
            f"{f} {np.mean([r['families'][f]['heldout_wording'] for r in mine]):.0%}" for f in fams))
    report = {"command": "python bench/wording_proxy.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "device": "cpu", "threads": args.threads, "model": args.model, "rewordings": args.rewordings,
              "train_draws": args.train, "eval_questions": args.eval, "steps": args.steps, "batch": args.batch,
              "lr": args.lr, "wall_s": round(time.perf_counter() - t0, 1), "summary": summary, "runs": runs}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1)
        plot(report, os.path.splitext(args.out)[0] + ".png")
        print(f"-> {args.out}, {os.path.splitext(args.out)[0]}.png")
    return report


if __name__ == "__main__":
    main()

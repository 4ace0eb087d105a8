"""Held-out accuracy while the default model trains, against samples seen.

Every `heldout.every` steps and at the end of each stage, the weights being trained
answer `heldout.samples` held-out spoken questions with the camera on (the bars'
question, `omni.synth.heldout`) greedily, on the training device. Each probe
appends a row to `<run>/heldout.json` and redraws `<run>/heldout.png`, so a run
(and each resumed call of it) shows whether the answers generalize while the
training loss falls, not only at the end.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time

import torch

from mdp.log import write_json


class HeldoutProbe:
    def __init__(self, recipe, run_dir: str, device: torch.device) -> None:
        from mdp.curriculum.run import run_tokenizer
        from mdp.trainer import build_config
        from omni.model import OmniModel
        from omni.synth.heldout import items_from_pack

        self.items = items_from_pack(recipe.heldout.pack, recipe.heldout.samples)
        self.batch = max(1, min(len(self.items), 128))
        cfg = build_config(recipe)
        cfg.audio.dropout = 0.0
        self.model = OmniModel(cfg, init=False, tokenizer=run_tokenizer(recipe)).to(device).eval()
        self.path = os.path.join(run_dir, "heldout.json")
        self.rows = _read(self.path)
        # each row names where it ran (the rows of a run resumed elsewhere may differ)
        self.device = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.machine()} CPU"

    @torch.no_grad()
    def __call__(self, trained: torch.nn.Module, stage: str, step: int, samples_seen: int) -> dict:
        """Answer the held-out questions with `trained`'s current weights; log the row."""
        from omni.synth.heldout import answer, per_family, score

        if any(r["stage"] == stage and r["step"] == step for r in self.rows):  # a resumed call repeats a probe
            return next(r for r in self.rows if r["stage"] == stage and r["step"] == step)
        t0 = time.perf_counter()
        self.model.load_state_dict(trained.state_dict(), strict=False)
        answer(self.model, self.items, self.batch, "spoken", progress=False)
        score(self.items, "spoken")
        fams = per_family(self.items, "text_ok")
        row = {"stage": stage, "step": step, "samples_seen": samples_seen,
               "accuracy": fams["all"]["accuracy"], "families": {f: v["accuracy"] for f, v in fams.items() if f != "all"},
               "n": fams["all"]["n"], "seconds": round(time.perf_counter() - t0, 2), "device": self.device}
        self.rows.append(row)
        write_json(self.path, self.rows, indent=1)
        plot(self.rows, os.path.join(os.path.dirname(self.path), "heldout.png"))
        print(f"held-out {stage} step {step} ({samples_seen} samples seen): {row['accuracy']:.1%} exact on "
              f"{row['n']} spoken questions " + " ".join(f"{f} {a:.0%}" for f, a in row["families"].items())
              + f" [{row['seconds']} s]", file=sys.stderr)
        return row


def _read(path: str) -> list[dict]:
    if not os.path.isfile(path):
        return []
    with open(path) as fh:
        return json.load(fh)


def plot(rows: list[dict], path: str) -> None:
    """Held-out exact accuracy (all and per family) against samples seen."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        return
    rows = sorted(rows, key=lambda r: r["samples_seen"])
    x = [r["samples_seen"] for r in rows]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(x, [r["accuracy"] for r in rows], color="black", lw=2, marker="o", label="all")
    for fam in sorted({f for r in rows for f in r["families"]}):
        ax.plot(x, [r["families"].get(fam, float("nan")) for r in rows], lw=1, alpha=0.8, label=fam)
    for k in range(1, len(rows)):  # stage boundaries
        if rows[k]["stage"] != rows[k - 1]["stage"]:
            ax.axvline((x[k] + x[k - 1]) / 2, color="grey", alpha=0.3)
    ax.axhline(0.9, color="red", ls="--", lw=1, alpha=0.6, label="bar (90 %)")
    ax.set_xlabel("training samples seen")
    ax.set_ylabel("held-out exact answers")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title("spoken questions with the camera on, greedy")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

"""Is the default model deaf to new voices or to new wordings? The same questions in other voices.

    python bench/hearing_split.py --model omni/pretrained/default     # ~10 min on 2 cores

The held-out questions differ from the training ones in two ways at once: their voices
(espeak-ng variants no training clip uses) and their wordings (templates no training
question uses). This bench takes them apart. It renders the question texts again with
espeak-ng, each clip heard through the stored microphone of its sample (noise, gain,
silences), in a fresh voice of the held-out split and in a fresh voice of the train split
(the same accents, speeds and pitches; only the timbres differ), and asks the model:

- held-out texts (held-out scenes): the pack's own recording, a held-out voice, a train voice;
  `spoken` (the answer, camera on: what the bar judges) and `transcribe` (the words);
- train texts (train scenes): a held-out voice, a train voice; `transcribe` only (the model has
  trained on these scenes, so their answers say little);
- reworded texts: the held-out questions (scenes, queries, phrases) asked in a training
  wording (`heldout.reword`), in a held-out voice; `spoken`, `transcribe` and `text` (typed
  beside the picture), the last also for the held-out wordings: what the wording alone costs
  the model that hears and the model that reads.

Train voice against held-out voice on the same texts is what new voices cost; held-out
texts against train texts in train voices is what new wordings cost. Prints a table and
writes JSON (default bench/results/hearing_split_cpu.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402

# (texts, voice) conditions; "pack" is the held-out pack's own recording
CONDITIONS = (("heldout", "pack"), ("heldout", "heldout"), ("heldout", "train"), ("train", "heldout"), ("train", "train"),
              ("reworded", "heldout"))
# the rows that also ask the question typed beside the picture (the voice plays no part there)
TYPED = (("heldout", "pack"), ("reworded", "heldout"))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--model", default="omni/pretrained/default", help="OmniModel checkpoint directory")
    p.add_argument("--train-pack", default="runs/data/train.pack.npz", help="the pack the model trained on")
    p.add_argument("--heldout-pack", default="runs/data/heldout.pack.npz", help="the held-out pack")
    p.add_argument("-n", "--questions", type=int, default=60, help="questions of each pack (even stride)")
    p.add_argument("--batch", type=int, default=20, help="requests per batched generate call")
    p.add_argument("--seed", type=int, default=0, help="voice draws")
    p.add_argument("--device", default="cpu", help="torch device")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    p.add_argument("--out", default="bench/results/hearing_split_cpu.json", help="JSON report")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from omni.model import OmniModel
    from omni.synth.heldout import answer, items_from_pack, per_family, rerender, reword, score

    t0 = time.time()
    model = OmniModel.from_pretrained(args.model, device=args.device)
    packs = {"heldout": args.heldout_pack, "train": args.train_pack}
    base = {s: items_from_pack(path, limit=args.questions) for s, path in packs.items()}
    base["reworded"] = reword(base["heldout"], args.heldout_pack, "train", args.seed)
    packs["reworded"] = args.heldout_pack
    rows = []
    for texts, voice in CONDITIONS:
        items = base[texts] if voice == "pack" else rerender(base[texts], packs[texts], voice, args.seed)
        row = {"texts": texts, "voices": voice, "n": len(items)}
        questions = ("transcribe",) if texts == "train" else ("spoken", "transcribe")
        for question in questions + (("text",) if (texts, voice) in TYPED else ()):
            asked = [dict(it) for it in items]
            answer(model, asked, args.batch, question, progress=False)
            score(asked, question)
            if question in ("spoken", "text"):
                fam = per_family(asked, "text_ok")
                row[f"{question}_exact"] = fam["all"]["accuracy"]
                row[f"{question}_families"] = {k: v["accuracy"] for k, v in fam.items() if k != "all"}
            else:
                row["transcript_exact"] = per_family(asked, "text_ok")["all"]["accuracy"]
                row["transcript_word_accuracy"] = round(float(np.mean([it["score"] for it in asked])), 4)
        rows.append(row)
        print(f"{texts:>8} texts, {voice:>8} voices: " + ", ".join(f"{k} {v}" for k, v in row.items() if k not in
                                                                   ("texts", "voices", "n")), flush=True)
    report = {"model": args.model, "device": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else
              f"{platform.machine()} CPU, {os.cpu_count()} cores (shared)",
              "command": "python bench/hearing_split.py " + " ".join(sys.argv[1:]),
              "wall_s": round(time.time() - t0, 1), "rows": rows}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(report, fh, indent=1)
    print(f"\n{'texts':>8} {'voices':>8} {'n':>4} {'spoken exact':>13} {'typed exact':>12} {'transcript exact':>17} "
          f"{'word accuracy':>14}")
    for r in rows:
        sp = f"{r['spoken_exact']:.1%}" if "spoken_exact" in r else "-"
        ty = f"{r['text_exact']:.1%}" if "text_exact" in r else "-"
        print(f"{r['texts']:>9} {r['voices']:>8} {r['n']:4d} {sp:>13} {ty:>12} {r['transcript_exact']:17.1%} "
              f"{r['transcript_word_accuracy']:14.3f}")
    plot(rows, os.path.splitext(args.out)[0] + ".png", report["device"])
    print(f"wrote {args.out}")
    return 0


def plot(rows: list[dict], path: str, device: str) -> None:
    """Bars of each condition: transcript word accuracy and, for held-out texts, spoken answers."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no plot", file=sys.stderr)
        return
    labels = [f"{r['texts']} texts\n{r['voices']} voices" for r in rows]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(9.5, 3.6))
    ax.bar(x - 0.27, [r["transcript_word_accuracy"] for r in rows], 0.27, label="transcript word accuracy")
    ax.bar(x, [r.get("spoken_exact", np.nan) for r in rows], 0.27, label="spoken answers exact")
    ax.bar(x + 0.27, [r.get("text_exact", np.nan) for r in rows], 0.27, label="typed answers exact")
    ax.set(xticks=x, ylim=(0, 1), title=f"what the model hears: voices or wordings ({device})")
    ax.set_xticklabels(labels, fontsize=8)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    raise SystemExit(main())

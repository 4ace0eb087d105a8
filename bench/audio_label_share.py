"""How many of a training step's positions the audio heads must see, per stage.

    python bench/audio_label_share.py --pack runs/data/train.pack.npz --out bench/results/audio_label_share_cpu.json

The device path runs the four audio heads (4 x 1,056 logits a position in the mini
model) only on the positions that have audio labels (a spoken reply's rows;
`StepPlan.audio_labels`). This plans real steps of each stage of the `omni-mini` recipe
(its batch and stage lengths, a pack with the world's tool: dialogue rows of 704) from the
pack, host work only, and prints the share of positions with audio labels: the part of the
audio heads' logits (and their memory) a step still computes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository, not bench/


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n", 2)[2])
    p.add_argument("--pack", default="runs/data/train.pack.npz", help="training pack (omni data default)")
    p.add_argument("--batch", type=int, default=768, help="rows a step (the recipe's global_batch)")
    p.add_argument("--steps", type=int, default=16, help="steps planned per stage")
    p.add_argument("--stage-len", default="speech:176,vision:176,dialogue:704", help="STAGE:LENGTH,...")
    p.add_argument("--tools-declared", type=float, default=0.2, help="curriculum.tools_declared")
    p.add_argument("--out", default="bench/results/audio_label_share_cpu.json", help="JSON report path")
    args = p.parse_args()

    import torch

    from mdp.curriculum.data import answer_code_table, read_stage_manifest
    from mdp.curriculum.plan import StepPlanner
    from mdp.curriculum.stages import write_stage_manifest
    from mdp.curriculum.tables import PackTables
    from omni.config import get_omni_config
    from omni.synth.pack import Pack
    from omni.tokenizer import load_tokenizer

    pack = Pack(args.pack)
    tables = PackTables(pack, get_omni_config("mini"), load_tokenizer(), answer_code_table(pack), torch.device("cpu"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for item in args.stage_len.split(","):
            stage, length = item.split(":")
            manifest = os.path.join(tmp, f"{stage}.jsonl")
            write_stage_manifest(pack, stage, manifest, max(20000, args.batch * args.steps), 0,
                                 tools_declared=args.tools_declared)
            records = read_stage_manifest(manifest, len(pack), pack.num_scenes, len(pack.answer_offset) - 1)
            planner = StepPlanner(tables, records, 0, args.batch, int(length))
            labelled = positions = 0
            for s in range(args.steps):
                plan = planner.plan(s)
                labelled += plan.audio_labels
                positions += len(plan.rows.index) * plan.T
            rows.append({"stage": stage, "seq_len": int(length), "positions": positions,
                         "with_audio_labels": labelled, "share": round(labelled / positions, 4)})
    report = {"pack": os.path.basename(args.pack), "batch": args.batch, "steps": args.steps,
              "tools_declared": args.tools_declared, "stages": rows}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(report, fh, indent=1)
    print(f"{'stage':10} {'seq_len':>7} {'positions':>10} {'audio labels':>13} {'share':>7}")
    for r in rows:
        print(f"{r['stage']:10} {r['seq_len']:7d} {r['positions']:10d} {r['with_audio_labels']:13d} {r['share']:7.1%}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

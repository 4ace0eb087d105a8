"""Does the end-of-turn head judge as well after a short silence as after the usual one?

    python bench/turn_end_silence.py                         # the shipped model, ~2 min on 2 cores

The server judges a turn when silero's silence reaches `speculative_silence_ms` (128 ms
by default; `semantic_vad+spec64` in bench/turn_taking.py judges at 64 ms). The head was
trained on utterances followed by 100-300 ms of silence (`omni train-turn-end`). This
scores a model's head, unchanged, on the same held-out utterances (held-out wordings and
voices, half complete, half cut at a word boundary) followed by silences drawn in each
range: AUC, accuracy at 0.5, and the share of complete / incomplete turns it would end.
Prints a table and writes JSON (default bench/results/turn_end_silence_cpu.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[0] = ROOT

import numpy as np  # noqa: E402
import torch  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="model directory with an end-of-turn head (default: the shipped one)")
    p.add_argument("--tails", default="30,70 60,100 100,300",
                   help="silence ranges in ms, LO,HI each, space-separated (default: '30,70 60,100 100,300')")
    p.add_argument("-n", "--utterances", type=int, default=200, help="held-out utterances per range (default 200)")
    p.add_argument("--seed", type=int, default=1, help="the utterances' draw (the same texts and voices in every range)")
    p.add_argument("--threads", type=int, default=2, help="torch / espeak-ng threads (default 2)")
    p.add_argument("--out", default="bench/results/turn_end_silence_cpu.json", help="JSON report")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from omni.defaults import default_model_dir
    from omni.model import OmniModel
    from omni.synth.voices import check_tools
    from omni.turn_end import load_turn_end
    from omni.turn_end_train import auc, extract_features, plan_examples, synthesize_examples, tail_ms_range

    tails = [tail_ms_range(t) for t in args.tails.split()]
    model_dir = args.model or default_model_dir()
    check_tools()
    torch.set_num_threads(args.threads)
    model = OmniModel.from_pretrained(model_dir)
    head = load_turn_end(model_dir, model.config.llm.hidden_size, "cpu")
    if head is None:
        raise SystemExit(f"{model_dir}: no end-of-turn head (train one with `omni train-turn-end`)")
    rows = []
    t0 = time.perf_counter()
    for lo, hi in tails:
        examples = plan_examples("heldout", args.utterances, args.seed, tail_s=(lo, hi))
        synthesize_examples(examples, args.threads)
        y = np.array([e.complete for e in examples], dtype=int)
        with torch.no_grad():
            p = torch.sigmoid(head(extract_features(model, examples, "heldout", 8).float())).numpy()
        rows.append({"tail_ms": [round(lo * 1000), round(hi * 1000)], "n": int(len(y)), "complete": int(y.sum()),
                     "auc": round(auc(p, y), 4), "accuracy_at_0.5": round(float(((p >= 0.5) == y).mean()), 4),
                     "complete_ended_at_0.5": round(float((p[y == 1] >= 0.5).mean()), 4),
                     "incomplete_ended_at_0.5": round(float((p[y == 0] >= 0.5).mean()), 4)})
    print(f"{'silence ms':>12} {'n':>5} {'AUC':>6} {'acc@0.5':>8} {'complete ended':>15} {'incomplete ended':>17}")
    for r in rows:
        print(f"{'%d-%d' % tuple(r['tail_ms']):>12} {r['n']:>5} {r['auc']:>6.3f} {r['accuracy_at_0.5']:>8.3f} "
              f"{r['complete_ended_at_0.5']:>15.2f} {r['incomplete_ended_at_0.5']:>17.2f}")
    data = {"machine": f"{os.cpu_count()}-core CPU", "platform": platform.platform(),
            "command": "python bench/turn_end_silence.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "model": os.path.relpath(model_dir, ROOT) if os.path.abspath(model_dir).startswith(ROOT) else model_dir,
            "utterances": "held-out wordings and voices, half complete, half cut at a word",
            "seconds": round(time.perf_counter() - t0, 1), "rows": rows}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(data, fh, indent=1)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

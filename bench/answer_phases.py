"""Which onset phase of each spoken answer survives the codec? A table for the training recipe.

The default model speaks an answer as the codec tokens of the pack's recording of it
(`mdp.curriculum.data.answer_code_table`). Where the word starts against the codec's 60 ms
frames decides whether its decoded speech is understood (`bench/codec_alignment.py`: `one`
is heard through the codec when it starts 15 or 45 ms into a frame, not at 0 or 30). This
delays every answer of a pack by each share of a frame (silence before it), encodes and
decodes it with the codec, and has the pocketsphinx judge of `omni data check-voice` hear it
`--trials` times (its dither differs each time); an answer keeps phase 0 unless another phase
is heard right more often. The table's "phases" is what `--set curriculum.answer_phases=PATH`
reads: the model then learns the tokens of the phase that is understood.

    python bench/answer_phases.py --pack runs/data/train.pack.npz \\
        --out bench/results/answer_phases_cpu.json --table omni/synth/answer_phases.json   (~7 min, 2 cores)

Prints the answers whose phase changes and the answers heard right at phase 0 and at the
chosen phases; writes the JSON report and, with --table, the table alone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402


def choose(scores: dict[str, list[int]], phases: list[float]) -> dict[str, float]:
    """{answer: phase}: the phase heard right most often, the earliest of a tie (0 first)."""
    return {a: phases[int(np.argmax(s))] for a, s in scores.items()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--pack", default="runs/data/train.pack.npz", help="pack of `omni data default` (its answers' audio)")
    p.add_argument("--codec", default=None, help="codec directory (default: the shipped speech/pretrained/default)")
    p.add_argument("--phases", default="0,0.25,0.5,0.75", help="delays as shares of a codec frame, 0 first")
    p.add_argument("--trials", type=int, default=3, help="judgments of each clip (the judge dithers)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--out", default=None, help="JSON report")
    p.add_argument("--table", default=None, help="also write the table alone here (the recipe's answer_phases)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    phases = [float(x) for x in args.phases.split(",")]
    if phases[0] != 0 or any(not 0 <= ph < 1 for ph in phases):
        p.error("--phases are shares of a frame in [0, 1), starting with 0")
    from tqdm import tqdm

    from omni.synth.audio import mulaw_decode
    from omni.synth.codes import load_codec
    from omni.synth.pack import Pack
    from omni.synth.questions import normalize_answer
    from omni.synth.recognize import AnswerRecognizer

    pack, codec = Pack(args.pack), load_codec(args.codec)
    judge = AnswerRecognizer(None)
    # the world's answers; the tool's replies ("the light is on") are outside the judge's grammar
    # and keep phase 0
    all_texts = list(pack.meta["answer_texts"])
    texts = [a for a in all_texts if normalize_answer(a) in judge.answers]
    t0 = time.time()
    scores: dict[str, list[int]] = {a: [0] * len(phases) for a in texts}
    heard: dict[str, dict[str, list[str]]] = {a: {} for a in texts}
    items = [(a, k) for a in range(len(texts)) for k in range(len(phases))]
    with torch.inference_mode():
        for a, k in tqdm(items, desc="answers x phases", unit="clip", disable=args.no_progress, dynamic_ncols=True):
            i = all_texts.index(texts[a])
            wav = mulaw_decode(pack.answer_mulaw[pack.answer_offset[i] : pack.answer_offset[i + 1]])
            x = np.concatenate([np.zeros(int(round(phases[k] * codec.hop_length)), wav.dtype), wav])
            y = codec.decode(codec.encode(torch.from_numpy(x)))[0].cpu().numpy()
            got = [judge.recognize(y) for _ in range(args.trials)]
            heard[texts[a]][f"{phases[k]:g}"] = got
            scores[texts[a]][k] = sum(g == normalize_answer(texts[a]) for g in got)
    chosen = choose(scores, phases)
    moved = {a: ph for a, ph in chosen.items() if ph}
    at0 = sum(s[0] for s in scores.values())
    best = sum(max(s) for s in scores.values())
    n = len(texts) * args.trials
    report = {
        "device": f"{platform.machine()} CPU, {os.cpu_count()} cores, {torch.get_num_threads()} threads",
        "pack": args.pack, "codec": args.codec or "speech/pretrained/default", "hop_samples": codec.hop_length,
        "phases_tried": phases, "trials": args.trials, "answers": len(texts),
        "not_judged": [a for a in all_texts if a not in texts],
        "command": "python bench/answer_phases.py " + " ".join(sys.argv[1:]),
        "heard_right_at_phase_0": at0, "heard_right_at_chosen_phases": best, "judgments": n,
        "moved": moved, "never_heard": sorted(a for a, s in scores.items() if not max(s)),
        "scores": scores, "heard": {a: h for a, h in heard.items() if scores[a][0] < args.trials or a in moved},
        "phases": chosen, "wall_s": round(time.time() - t0, 1),
    }
    print(f"heard right: {at0} of {n} judgments at phase 0, {best} at the chosen phases")
    print(f"answers moved ({len(moved)}): " + ", ".join(f"{a} -> {ph:g} {scores[a]}" for a, ph in moved.items()))
    print(f"never heard: {', '.join(report['never_heard']) or 'none'}")
    for path, obj in ((args.out, report), (args.table, {"command": report["command"], "phases": chosen})):
        if path:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            with open(path, "w") as fh:
                json.dump(obj, fh, indent=1)
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

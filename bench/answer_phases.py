"""Which onset phase of each spoken answer survives the codec? A table for the training recipe.

The default model speaks an answer as the codec tokens of the pack's recording of it
(`mdp.curriculum.data.answer_code_table`). Where the word starts against the codec's 60 ms
frames decides whether its decoded speech is understood (`bench/codec_alignment.py`: `one`
is heard through the codec when it starts 15 or 45 ms into a frame, not at 0 or 30). This
encodes and decodes every answer of a pack with the codec and has the pocketsphinx judge of
`omni data check-voice` hear it `--screen` times; an answer it hears right every time keeps
phase 0. Each other answer is delayed by each share of a frame (silence before it), encoded,
decoded and heard `--trials` times (the judge dithers: a few judgments of one clip disagree),
and takes the phase heard right most often if that is `--margin` judgments more than phase 0.
The table's "phases" is what `--set curriculum.answer_phases=PATH` reads: the model then
learns the tokens of the phase that is understood.

    python bench/answer_phases.py --pack runs/data/train.pack.npz --threads 2 \
        --out bench/results/answer_phases_cpu.json --table omni/synth/answer_phases.json   (~5 min, 2-core CPU)

Prints each doubtful answer's score per phase and the phase chosen; writes the JSON report
and, with --table, the table alone.
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


def choose(scores: dict[str, list[int]], phases: list[float], margin: int = 1) -> dict[str, float]:
    """{answer: phase}: the phase heard right most often (the earliest of a tie), if it is heard
    right at least `margin` more times than phase 0; else phase 0."""
    out = {}
    for a, s in scores.items():
        k = int(np.argmax(s))
        out[a] = phases[k] if s[k] - s[0] >= margin else 0.0
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--pack", default="runs/data/train.pack.npz", help="pack of `omni data default` (its answers' audio)")
    p.add_argument("--codec", default=None, help="codec directory (default: the shipped speech/pretrained/default)")
    p.add_argument("--phases", default="0,0.125,0.25,0.375,0.5,0.625,0.75,0.875",
                   help="delays as shares of a codec frame, 0 first")
    p.add_argument("--screen", type=int, default=3, help="judgments at phase 0 an answer must all pass to keep it")
    p.add_argument("--trials", type=int, default=7, help="judgments of each doubtful answer's clip at each phase")
    p.add_argument("--margin", type=int, default=2,
                   help="judgments right a phase must gain over phase 0 to replace it (the judge's noise)")
    p.add_argument("--answers", default="", help="comma-separated answers to try (default: every answer of the pack)")
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

    from omni.synth.codes import delayed, load_codec
    from omni.synth.pack import Pack
    from omni.synth.questions import normalize_answer
    from omni.synth.recognize import AnswerRecognizer

    pack, codec = Pack(args.pack), load_codec(args.codec)
    judge = AnswerRecognizer(None)
    # the world's answers; the tool's replies ("the light is on") are outside the judge's grammar
    # and keep phase 0
    all_texts = list(pack.meta["answer_texts"])
    texts = [a for a in all_texts if normalize_answer(a) in judge.answers]
    if args.answers:
        asked = [a.strip() for a in args.answers.split(",") if a.strip()]
        if unknown := [a for a in asked if a not in texts]:
            p.error(f"not judged answers of the pack: {unknown}")
        texts = asked
    t0 = time.time()

    def judged(a: int, k: int, times: int) -> list[str]:
        """What the judge hears, `times` times, of answer a delayed by phase k through the codec."""
        x = delayed(pack.answer_wav(all_texts.index(texts[a])), phases[k], codec.hop_length)
        y = codec.decode(codec.encode(torch.from_numpy(x)))[0].cpu().numpy()
        return [judge.recognize(y) for _ in range(times)]

    right = lambda a, got: sum(g == normalize_answer(texts[a]) for g in got)
    # screening: an answer heard right every time of --screen at phase 0 keeps it untried further
    # (most answers); the rest are judged --trials times at every phase, phase 0 again included
    with torch.inference_mode():
        screened = {a: judged(a, 0, args.screen) for a in tqdm(range(len(texts)), desc="screening at phase 0",
                                                                  unit="answer", disable=args.no_progress)}
        doubtful = [a for a in range(len(texts)) if right(a, screened[a]) < args.screen]
        scores: dict[str, list[int]] = {}
        heard: dict[str, dict[str, list[str]]] = {}
        items = [(a, k) for a in doubtful for k in range(len(phases))]
        for a, k in tqdm(items, desc="doubtful answers x phases", unit="clip", disable=args.no_progress):
            got = judged(a, k, args.trials)
            heard.setdefault(texts[a], {})[f"{phases[k]:g}"] = got
            scores.setdefault(texts[a], [0] * len(phases))[k] = right(a, got)
    chosen = {**{a: 0.0 for a in texts}, **choose(scores, phases, args.margin)}
    moved = {a: ph for a, ph in chosen.items() if ph}
    report = {
        "device": f"{platform.machine()} CPU, {os.cpu_count()} cores, {torch.get_num_threads()} threads",
        "pack": args.pack, "codec": args.codec or "speech/pretrained/default", "hop_samples": codec.hop_length,
        "phases_tried": phases, "trials": args.trials, "answers": len(texts),
        "not_judged": [a for a in all_texts if a not in texts],
        "command": "python bench/answer_phases.py " + " ".join(sys.argv[1:]),
        "screen": args.screen, "margin": args.margin, "heard_at_screening": {texts[a]: screened[a] for a in doubtful},
        "doubtful": [texts[a] for a in doubtful], "moved": moved,
        "never_heard": sorted(a for a, sc in scores.items() if not max(sc)),
        "scores": scores, "heard": heard,
        "phases": chosen, "wall_s": round(time.time() - t0, 1),
    }
    print(f"{len(doubtful)} of {len(texts)} answers not heard right {args.screen} times in {args.screen} at phase 0")
    for a, sc in scores.items():
        print(f"  {a:<24} right of {args.trials} at phases {', '.join(f'{ph:g}' for ph in phases)}: {sc}"
              f" -> {chosen[a]:g}")
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

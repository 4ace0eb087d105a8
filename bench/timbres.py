"""Are generated espeak-ng timbres (omni.synth.timbres) as intelligible as the shipped ones?

    python bench/timbres.py                  # ~1 min on 2 cores

Renders every answer of the default world in random voices of the voice bank twice: once
with a shipped human variant, once with a generated one (same accents, speeds and pitches),
and lets pocketsphinx, restricted to a grammar of all answers, say which answer it hears.
Prints the two recognition rates and writes JSON (default bench/results/timbres_cpu.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile

sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--timbres", type=int, default=200, help="generated timbres to draw from")
    p.add_argument("--per-answer", type=int, default=2, help="renderings of each answer per arm")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="bench/results/timbres_cpu.json", help="JSON report")
    args = p.parse_args()
    from omni.synth.questions import answer_space, normalize_answer
    from omni.synth.recognize import AnswerRecognizer
    from omni.synth.timbres import names, timbre_data
    from omni.synth.voices import ACCENTS, BANK_VARIANTS, PITCH_RANGE, SPEED_RANGE, Voice, synthesize, variant_voice

    answers = [normalize_answer(a) for a in answer_space()]
    rec = AnswerRecognizer(answers)
    rng = np.random.default_rng(args.seed)
    arms = {"shipped variants": BANK_VARIANTS, "generated timbres": names(args.timbres)}
    heard = {arm: 0 for arm in arms}
    n = 0
    with tempfile.TemporaryDirectory() as tmp:
        data = timbre_data(tmp, args.timbres, args.seed)
        for a in answers:
            for _ in range(args.per_answer):
                accent = ACCENTS[int(rng.integers(len(ACCENTS)))]
                speed = int(rng.integers(SPEED_RANGE[0], SPEED_RANGE[1] + 1))
                pitch = int(rng.integers(PITCH_RANGE[0], PITCH_RANGE[1] + 1))
                n += 1
                for arm, variants in arms.items():
                    v = Voice(variant_voice(accent, variants[int(rng.integers(len(variants)))]), speed, pitch)
                    wav = synthesize(a, v, data if arm == "generated timbres" else None)
                    heard[arm] += rec.recognize(wav) == a
    report = {"device": f"{platform.machine()} CPU, {os.cpu_count()} cores", "answers": len(answers),
              "renderings_per_arm": n, "timbres": args.timbres,
              "command": "python bench/timbres.py " + " ".join(sys.argv[1:]),
              "recognized": {arm: round(heard[arm] / n, 4) for arm in arms}}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(report, fh, indent=1)
    for arm in arms:
        print(f"{arm:20} {heard[arm]:4d} / {n} answers recognized ({heard[arm] / n:.1%})")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Does the codec's intelligibility depend on where a word starts against its frames?

The codec cuts speech into frames of `hop_length` samples (60 ms at 16.67 Hz) from the first
sample of the clip. A reply's answer starts wherever the synthesizer put its first sound, so
the same word can fall on the frame grid at any phase. This speaks every answer of the world in
the assistant's voice (or the answers given), delays it by a share of a frame (silence before
it; the same silence after it), and has the pocketsphinx judge of `omni data check-voice`
(`omni.synth.recognize.AnswerRecognizer`, one recognizer per condition, so each condition's
dither is its own) hear it after a codec encode + decode, and the original delayed the same way
as a control of the judge itself.

    python bench/codec_alignment.py --out bench/results/codec_alignment_cpu.json       (~6 min, 2 cores)
    python bench/codec_alignment.py --answers one,two,green --phases 0,0.5 --renderings 5

Prints answers heard per phase (codec and original) and the answers whose codec result changes
with the phase; writes JSON and a plot (answers heard per phase).
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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--codec", default=None, help="codec directory (default: the shipped speech/pretrained/default)")
    p.add_argument("--answers", default="", help="comma-separated answers (default: every answer of the world)")
    p.add_argument("--phases", default="0,0.25,0.5,0.75", help="delays as shares of a codec frame")
    p.add_argument("--renderings", type=int, default=1,
                   help="renderings of the voice per answer (omni.synth.recognize.voice_renderings)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--out", default=None, help="JSON path (a .png beside it)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from tqdm import tqdm

    from omni.synth.audio import to_float
    from omni.synth.codes import load_codec
    from omni.synth.recognize import AnswerRecognizer, voice_renderings
    from omni.synth.voices import ASSISTANT_VOICE, synthesize

    codec = load_codec(args.codec)
    hop = codec.hop_length
    phases = [float(x) for x in args.phases.split(",")]
    if any(not 0 <= ph < 1 for ph in phases):
        p.error("--phases are shares of a frame in [0, 1)")
    setups = voice_renderings(ASSISTANT_VOICE, args.renderings)
    names = AnswerRecognizer(None).answers
    answers = [a.strip() for a in args.answers.split(",") if a.strip()] or list(names)
    unknown = [a for a in answers if a not in names]
    if unknown:
        p.error(f"not answers of the world: {unknown}")
    t0 = time.time()
    heard: dict[str, dict[str, dict[str, list[str]]]] = {c: {} for c in ("codec", "original")}
    items = [(ph, r, a) for ph in phases for r in range(len(setups)) for a in answers]
    judges = {(c, ph): AnswerRecognizer(None) for c in heard for ph in phases}
    clips = {(r, a): to_float(synthesize(a, setups[r])) for r in range(len(setups)) for a in answers}
    with torch.inference_mode():
        for ph, r, a in tqdm(items, desc="answers x phases", unit="clip", disable=args.no_progress, dynamic_ncols=True):
            pad = np.zeros(int(round(ph * hop)), dtype=np.float32)
            x = np.concatenate([pad, clips[(r, a)], pad])
            y = codec.decode(codec.encode(torch.from_numpy(x)))[0].cpu().numpy()
            for cond, wav in (("codec", y), ("original", x)):
                heard[cond].setdefault(f"{ph:g}", {}).setdefault(a, []).append(judges[(cond, ph)].recognize(wav))
    keys = [f"{ph:g}" for ph in phases]
    right = {c: {k: {a: sum(h == a for h in heard[c][k][a]) for a in answers} for k in keys} for c in heard}
    total = {c: {k: sum(right[c][k].values()) for k in keys} for c in heard}
    varies = sorted(a for a in answers if len({right["codec"][k][a] for k in keys}) > 1)
    always = sorted(a for a in answers if all(right["codec"][k][a] == 0 for k in keys))
    n = len(answers) * len(setups)
    report = {
        "device": f"{platform.machine()} CPU, {os.cpu_count()} cores, {torch.get_num_threads()} threads",
        "codec": args.codec or "speech/pretrained/default", "hop_samples": hop, "sample_rate": codec.sample_rate,
        "voice": ASSISTANT_VOICE.to_dict(), "renderings": len(setups), "answers": len(answers), "phases": phases,
        "command": "python bench/codec_alignment.py " + " ".join(sys.argv[1:]),
        "heard_right": total, "clips_per_phase": n,
        "codec_result_varies_with_phase": {a: [right["codec"][k][a] for k in keys] for a in varies},
        "codec_never_heard": always,
        "heard": {c: {k: {a: heard[c][k][a] for a in answers if right[c][k][a] < len(setups)} for k in keys}
                  for c in heard},
        "wall_s": round(time.time() - t0, 1),
    }
    print(f"{'delay (frame share)':>20} " + " ".join(f"{k:>7}" for k in keys) + f"   (of {n} clips)")
    for c in ("codec", "original"):
        print(f"{c:>20} " + " ".join(f"{total[c][k]:7d}" for k in keys))
    print(f"answers whose codec result changes with the phase ({len(varies)}): "
          + ", ".join(f"{a} {report['codec_result_varies_with_phase'][a]}" for a in varies))
    print(f"never heard through the codec: {', '.join(always) or 'none'}")
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as fh:
            json.dump(report, fh, indent=1)
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.5))
        xs = np.arange(len(keys))
        for i, c in enumerate(("codec", "original")):
            ax.bar(xs + (i - 0.5) * 0.38, [total[c][k] for k in keys], 0.38, label=c)
        ax.set_xticks(xs, [f"{float(k) * hop / codec.sample_rate * 1000:.0f} ms" for k in keys])
        ax.set_xlabel(f"answer delayed by (a frame is {hop / codec.sample_rate * 1000:.0f} ms)")
        ax.set_ylabel(f"heard right (of {n})")
        ax.set_ylim(min(min(total[c].values()) for c in total) - 10, n + 2)
        ax.legend()
        ax.set_title("assistant answers through the codec, by onset phase")
        fig.tight_layout()
        fig.savefig(os.path.splitext(args.out)[0] + ".png", dpi=110)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Word error rate of the input transcribers on the default world's held-out voices.

Utterances: questions of the default world (omni.synth.questions), half with
held-out wordings and half with train wordings, each spoken by a random
held-out voice (omni.synth.voices: espeak-ng variants no training clip uses,
random speed / pitch / word gap), clean and as a microphone hears them (the
world's own noise, level and padding draws, omni.synth.audio.augment).

Transcribers (omni/transcribe.py):
  world-sphinx       pocketsphinx + a trigram LM of every world question (both splits): what ships
  world-sphinx-train the same with an LM of the train wordings only: on held-out wordings it
                     shows how much of the LM's help is knowing the exact sentences
  sphinx             pocketsphinx with its stock English LM (no knowledge of the world)
  ctc-default        the shipped default model's audio encoder CTC head (the "ctc" transcriber
                     on `omni serve` with no --model): pre-trained on the questions' words,
                     then trained on through the LLM only
  ctc-random-mini    the same head of a randomly initialized `mini` model: the floor
  model-default      the shipped default model itself, asked to write down what was said (the
                     "model" transcriber on `omni serve`): greedy, text only

WER = word edits / reference words, over all utterances of a group; RTF = decode
time / audio time (one CPU core, this process).

    python bench/transcribe_wer.py                 # writes bench/results/transcribe_wer_cpu.json
    python bench/transcribe_wer.py --n 20 --out /tmp/wer.json
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

from omni.defaults import DEFAULT_MODEL_DIR  # noqa: E402
from omni.synth.audio import augment, random_noise_params, to_float  # noqa: E402
from omni.synth.questions import CAPTION_PROMPT, TRANSCRIBE_PROMPT, all_question_texts  # noqa: E402
from omni.synth.voices import sample_voice, synthesize  # noqa: E402
from omni.transcribe import SphinxTranscriber, ctc, world_sphinx  # noqa: E402
from omni.transcribe import model as transcribe_model  # noqa: E402


def edits(ref: list[str], hyp: list[str]) -> int:
    """Word-level Levenshtein distance."""
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]


def utterances(n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    texts = {s: all_question_texts(s) for s in ("heldout", "train")}
    out = []
    for i in range(n):
        split = "heldout" if i % 2 == 0 else "train"
        text = str(texts[split][int(rng.integers(len(texts[split])))])
        voice = sample_voice(rng, "heldout")
        clean = to_float(synthesize(text, voice))
        pad = np.zeros(int(0.3 * 16000), np.float32)
        out.append({"text": text, "split": split, "voice": voice.key(), "clean": np.concatenate([pad, clean, pad]),
                    "speech": clean, "noise": random_noise_params(rng), "seed": int(rng.integers(1 << 31))})
    for u in out:  # the world's microphone conditions (babble from the other utterances)
        p, r = u["noise"], np.random.default_rng(u["seed"])
        others = [v["speech"] for v in out if v is not u][:4]
        u["noisy"] = augment(u["speech"], r, p["kind"], p["snr_db"], p["lead_s"], p["tail_s"], p["gain_db"], others)
    return out


def measure(name: str, transcriber, utts: list[dict]) -> dict:
    res: dict = {}
    for cond in ("clean", "noisy"):
        tot = {"all": [0, 0], "heldout": [0, 0], "train": [0, 0]}
        t_dec, t_audio, samples = 0.0, 0.0, []
        for u in utts:
            t0 = time.perf_counter()
            hyp = transcriber.transcribe(u[cond]).lower().split()
            t_dec += time.perf_counter() - t0
            t_audio += len(u[cond]) / 16000
            e, n = edits(u["text"].split(), hyp), len(u["text"].split())
            for k in ("all", u["split"]):
                tot[k][0] += e
                tot[k][1] += n
            if len(samples) < 6:
                samples.append({"ref": u["text"], "hyp": " ".join(hyp), "voice": u["voice"]})
        res[cond] = {"wer": round(tot["all"][0] / tot["all"][1], 4),
                     "wer_heldout_wordings": round(tot["heldout"][0] / max(tot["heldout"][1], 1), 4),
                     "wer_train_wordings": round(tot["train"][0] / max(tot["train"][1], 1), 4),
                     "rtf": round(t_dec / t_audio, 4), "examples": samples}
        print(f"{name:20s} {cond:6s} WER {res[cond]['wer']:.3f} (held-out wordings "
              f"{res[cond]['wer_heldout_wordings']:.3f}, train wordings {res[cond]['wer_train_wordings']:.3f}) "
              f"RTF {res[cond]['rtf']:.3f}", flush=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100, help="utterances (half held-out wordings)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "transcribe_wer_cpu.json"))
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    utts = utterances(args.n, args.seed)
    print(f"{len(utts)} utterances synthesized in {time.perf_counter() - t0:.1f} s", flush=True)
    train_lm = list(dict.fromkeys(all_question_texts("train") + [CAPTION_PROMPT, TRANSCRIBE_PROMPT]))
    transcribers = {
        "world-sphinx": world_sphinx,
        "world-sphinx-train": lambda: SphinxTranscriber(train_lm, name="world-sphinx-train"),
        "sphinx": lambda: SphinxTranscriber(None),
        "ctc-random-mini": lambda: ctc(flavor="mini", seed=0),
    }
    if os.path.isdir(DEFAULT_MODEL_DIR):
        transcribers["ctc-default"] = lambda: ctc(model_dir=str(DEFAULT_MODEL_DIR))
        transcribers["model-default"] = lambda: transcribe_model(model_dir=str(DEFAULT_MODEL_DIR))
    results = {name: measure(name, make(), utts) for name, make in transcribers.items()}
    report = {
        "machine": "2-core CPU",
        "platform": platform.platform(),
        "command": "python bench/transcribe_wer.py" + (f" --n {args.n}" if args.n != 100 else ""),
        "utterances": len(utts),
        "voices": "held-out espeak-ng voices of the default world (omni.synth.voices HELDOUT_VARIANTS x accents)",
        "texts": "default-world questions, half held-out wordings, half train wordings",
        "shipped": "world-sphinx",
        "results": results,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(report, fh, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

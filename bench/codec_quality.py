"""Codec quality judged by an independent recognizer (pocketsphinx + JSGF grammar).

Held-out speech: espeak-ng voices never used in training (speech.synth.EVAL_VOICES)
saying sentences of a confusable grammar (>= 100 sentences "the N C S are in the P"
that differ in single words; the training text generator never produces this form).
Each utterance is recognized as original, as codec reconstruction (encode + decode
with the codec under test), and as a deliberately degraded anchor (original
low-passed at 1 kHz: shows the judge is strict enough to fail bad audio).
Reported: word and sentence accuracy per condition, their ratio to the originals
(target: reconstructions keep >= 90 % of the originals' sentence accuracy), log-mel
L1 distance to the original, and the codec bitrate. Writes
bench/results/codec_quality.json, codec_spectrograms.png and a few before/after WAVs
under bench/results/codec_samples/.

    python bench/codec_quality.py                      # the shipped codec
    python bench/codec_quality.py --codec runs/codec/codec --per-voice 6
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torchaudio.functional as AF  # noqa: E402
from tqdm import tqdm  # noqa: E402

from speech.codec import Codec  # noqa: E402
from speech.audio_io import save_wav  # noqa: E402
from speech.judge import GrammarRecognizer, confusable_sentences, word_errors  # noqa: E402
from speech.losses import mel_distance  # noqa: E402
from speech.synth import EVAL_VOICES, synthesize  # noqa: E402


def lowpass(audio: np.ndarray, cutoff: float, sr: int = 16000) -> np.ndarray:
    x = torch.from_numpy(audio)
    for _ in range(4):  # 4 cascaded biquads: a steep cut
        x = AF.lowpass_biquad(x, sr, cutoff)
    return x.numpy()


def plot_spectrograms(pairs, path: str, sr: int = 16000) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(pairs), 2, figsize=(12, 2.6 * len(pairs)), squeeze=False)
    for row, (title, orig, recon) in enumerate(pairs):
        for col, (name, a) in enumerate((("original", orig), ("codec", recon))):
            spec = torch.stft(torch.from_numpy(a), 512, 128, 512, torch.hann_window(512), return_complex=True).abs()
            db = 20 * torch.log10(spec.clamp_min(1e-5))
            ax = axes[row][col]
            ax.imshow(db.numpy(), origin="lower", aspect="auto", vmin=float(db.max()) - 80, vmax=float(db.max()),
                      extent=(0, len(a) / sr, 0, sr / 2000), cmap="magma")
            ax.set_title(f"{name}: {title}", fontsize=8)
            ax.set_ylabel("kHz")
    axes[-1][0].set_xlabel("s")
    axes[-1][1].set_xlabel("s")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--codec", default=None, help="codec directory (default: the shipped speech/pretrained/default)")
    p.add_argument("--per-voice", type=int, default=12, help="utterances per held-out voice")
    p.add_argument("--seed", type=int, default=1, help="random seed")
    p.add_argument("--results", default=os.path.join("bench", "results"), help="output folder")
    p.add_argument("--samples", type=int, default=3, help="before/after WAV pairs to write")
    a = p.parse_args()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    codec = Codec.from_pretrained(a.codec)
    sentences = confusable_sentences()
    recognizer = GrammarRecognizer(sentences)
    rng = random.Random(a.seed)
    items = [(v, s, rng.randint(140, 180), rng.randint(35, 65)) for v in EVAL_VOICES for s in rng.sample(sentences, a.per_voice)]
    conditions = ("original", "codec", "lowpass_1khz")
    stats = {c: {"word_errors": 0, "words": 0, "sentences_ok": 0, "mel": []} for c in conditions}
    per_utt, pairs = [], []
    sample_dir = os.path.join(a.results, "codec_samples")
    os.makedirs(sample_dir, exist_ok=True)
    t_codec = 0.0
    for i, (voice, text, speed, pitch) in enumerate(tqdm(items, desc="utterances")):
        orig = synthesize(text, voice, speed, pitch, codec.sample_rate)
        t0 = time.perf_counter()
        recon = codec.decode(codec.encode(torch.from_numpy(orig)))[0, : len(orig)].numpy()
        t_codec += time.perf_counter() - t0
        audio = {"original": orig, "codec": recon, "lowpass_1khz": lowpass(orig, 1000.0)}
        row = {"voice": voice, "speed": speed, "pitch": pitch, "text": text}
        for c in conditions:
            hyp = recognizer.recognize(audio[c])
            errs = word_errors(text, hyp)
            st = stats[c]
            st["word_errors"] += errs
            st["words"] += len(text.split())
            st["sentences_ok"] += int(hyp == text)
            if c != "original":
                st["mel"].append(mel_distance(torch.from_numpy(audio[c]), torch.from_numpy(orig)))
            row[c] = hyp
        per_utt.append(row)
        if i % a.per_voice == 0 and len(pairs) < a.samples:
            tag = f"{len(pairs)}_{voice.replace('+', '_')}"
            save_wav(os.path.join(sample_dir, f"{tag}_original.wav"), orig, codec.sample_rate)
            save_wav(os.path.join(sample_dir, f"{tag}_codec.wav"), recon, codec.sample_rate)
            pairs.append((f"{voice} \"{text}\"", orig, recon))
    n = len(items)
    summary = {}
    for c in conditions:
        st = stats[c]
        summary[c] = {
            "word_accuracy": 1 - st["word_errors"] / st["words"],
            "sentence_accuracy": st["sentences_ok"] / n,
            "mel_distance": float(np.mean(st["mel"])) if st["mel"] else 0.0,
        }
    o = summary["original"]
    for c in conditions:
        summary[c]["word_accuracy_ratio"] = summary[c]["word_accuracy"] / max(o["word_accuracy"], 1e-9)
        summary[c]["sentence_accuracy_ratio"] = summary[c]["sentence_accuracy"] / max(o["sentence_accuracy"], 1e-9)
    bits = sum(math.log2(k) for k in codec.codebook_sizes) * codec.frame_rate
    print(f"\ncodec quality: {n} held-out utterances, voices {', '.join(EVAL_VOICES)}, grammar of {len(sentences)} confusable sentences")
    print(f"codec {a.codec or 'speech/pretrained/default'}: {len(codec.codebook_sizes)} books {codec.codebook_sizes}, {bits:.0f} bit/s")
    print(f"{'condition':<16}{'word acc':>10}{'sent acc':>10}{'sent ratio':>12}{'mel dist':>10}")
    for c in conditions:
        s = summary[c]
        print(f"{c:<16}{s['word_accuracy']:>10.3f}{s['sentence_accuracy']:>10.3f}{s['sentence_accuracy_ratio']:>12.3f}{s['mel_distance']:>10.3f}")
    target = summary["codec"]["sentence_accuracy_ratio"] >= 0.9
    print(f"target (codec keeps >= 90% of original sentence accuracy): {'MET' if target else 'NOT MET'}")
    os.makedirs(a.results, exist_ok=True)
    try:
        plot_spectrograms(pairs[:2], os.path.join(a.results, "codec_spectrograms.png"), codec.sample_rate)
    except ImportError:
        print("matplotlib missing: no spectrogram plot")
    out = os.path.join(a.results, "codec_quality.json")
    with open(out, "w") as fh:
        json.dump({
            "codec": a.codec or "speech/pretrained/default", "bitrate_bps": bits, "voices": list(EVAL_VOICES),
            "grammar_sentences": len(sentences), "utterances": n, "summary": summary, "target_met": target,
            "codec_seconds_cpu": t_codec, "per_utterance": per_utt,
        }, fh, indent=2)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

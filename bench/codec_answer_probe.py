"""Where a codec loses the assistant's short answers: splice tests with the pocketsphinx judge.

For each answer (default: the 30 that the judge misses through the codec of training run 5,
bench/results/check_voice_through_codec.json), spoken in the assistant's own rendering, the
judge (omni.synth.recognize, one recognizer per condition) hears:
  plain                codec encode + decode
  orig_onset           the codec output with 20-150 ms after the start replaced by the original
  codec_onset          the original with its first 150 ms replaced by the codec's (level-matched)
  rms_matched          the codec output scaled to the original's RMS
and the codec's mel L1 (512-point STFT, 40 mels) is averaged per 56 ms from the utterance
start. Also: mel L1 of whole-clip decodes on a labelled eval pack (--eval-data, e.g. from
`omni data codec-voice --eval-pack`): every 6th assistant clip and every user clip.

    python bench/codec_answer_probe.py --codec runs/codec_ft/codec --eval-data .codec_data/voice_v3_eval.npz
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from omni.synth.audio import to_float  # noqa: E402
from omni.synth.recognize import AnswerRecognizer  # noqa: E402
from omni.synth.voices import ASSISTANT_VOICE, synthesize  # noqa: E402
from speech.codec import Codec  # noqa: E402
from speech.losses import MelLoss  # noqa: E402

RUN5_MISSES = json.load(open(os.path.join(os.path.dirname(__file__), "results", "check_voice_through_codec.json")))["misses"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--codec", default=None, help="codec directory (default: the shipped codec)")
    p.add_argument("--eval-data", default="", help="labelled eval pack (.npz) for whole-clip mel L1 per label")
    p.add_argument("--out", default=None, help="also write the result as JSON here")
    a = p.parse_args()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    codec = Codec.from_pretrained(a.codec)
    answers = [m["answer"] for m in RUN5_MISSES]
    conds = ("plain", "orig_onset", "codec_onset", "rms_matched")
    judges = {c: AnswerRecognizer() for c in conds}
    heard = {c: 0 for c in conds}
    mel = MelLoss(scales=((512, 40),))
    per_t = []
    for text in answers:
        x = to_float(synthesize(text, ASSISTANT_VOICE))
        n = len(x)
        y = codec.decode(codec.encode(torch.from_numpy(x)))[0].cpu().numpy()[:n]
        g = float(np.sqrt((x**2).mean() / max((y**2).mean(), 1e-12)))
        v = {"plain": y, "rms_matched": np.clip(y * g, -1, 1)}
        t = y.copy(); t[320:2400] = x[320:2400]; v["orig_onset"] = t  # noqa: E702
        t = x.copy(); t[:2400] = np.clip(y[:2400] * g, -1, 1); v["codec_onset"] = t  # noqa: E702
        for c in conds:
            heard[c] += judges[c].recognize(v[c]) == text
        e = (mel.mel(torch.from_numpy(x)[None], 512) - mel.mel(torch.from_numpy(y)[None], 512)).abs()[0].mean(0).numpy()
        per_t.append([float(e[i * 7 : (i + 1) * 7].mean()) for i in range(min(8, len(e) // 7))])
    k = min(map(len, per_t))
    res = {
        "codec": a.codec or "speech/pretrained/default",
        "hardware": f"{platform.machine()} CPU, {os.cpu_count()} cores",
        "answers": len(answers),
        "recognized": heard,
        "mel_l1_per_56ms_from_start": [round(float(np.mean([p_[i] for p_ in per_t])), 4) for i in range(k)],
    }
    if a.eval_data:
        from speech.data import load_clips, load_labels

        clips, labels = load_clips(a.eval_data), load_labels(a.eval_data)
        pick = [i for i, lab in enumerate(labels) if lab != "assistant"] + [i for i, lab in enumerate(labels) if lab == "assistant"][1::6]
        m = MelLoss()
        sums: dict[str, list[float]] = {}
        with torch.no_grad():
            for i in pick:
                x = torch.from_numpy(clips[i])[None]
                y = codec.model(x)[0][..., : x.shape[-1]]
                sums.setdefault(labels[i], []).append(float(m(y, x)))
        res["eval_mel"] = {lab: round(float(np.mean(v_)), 4) for lab, v_ in sorted(sums.items())}
        res["eval_clips"] = {lab: len(v_) for lab, v_ in sorted(sums.items())}
    print(json.dumps(res, indent=2))
    if a.out:
        with open(a.out, "w") as fh:
            json.dump(res, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

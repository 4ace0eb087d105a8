"""`omni train-turn-end`: train a model directory's end-of-turn head (omni/turn_end.py).

The data are the default world's own: questions of its train split spoken by
train voices, either whole (complete, label 1) or cut at a word boundary and
spoken up to there (incomplete, label 0; a cut that is itself a whole question
of the world counts as complete). Each utterance is laid out as the server lays
out a turn: 300 ms of pre-roll, the words, then 100-300 ms of silence (what the
server has heard when it speculates); half of them with the camera on (a scene
of the world at 2 FPS, as the demo streams it), a quarter after an earlier
exchange in the context. The features are computed by the serving code itself:
`RealtimeOmni` packets, prefill and `begin_response`, the reply's first hidden
state read through the head's own hook, so training and serving see the same
numbers. The backbone stays frozen; only the small head learns (seconds).

The held-out split (held-out wordings and unseen voices) measures it; the scores
go into `turn_end.json` beside the weights and, with --results, a JSON file. A third
set of the held-out split, drawn apart from the scored one, calibrates the head's
eagerness thresholds (omni/turn_end.py `CUT_RATE`: the share of cut questions each
eagerness may end at once); the held-out scores then say what those thresholds do
on utterances they were not set on:

    omni train-turn-end                               # the shipped default model, ~9 min on 2 CPU cores
    omni train-turn-end --model DIR --train 400 --heldout 100 --results out.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

SR = 16000
PRE_ROLL_S = 0.3
TAIL_S = (0.1, 0.3)
FRAME_FPS = 2.0


@dataclass
class Example:
    text: str
    complete: bool
    voice: dict
    camera: bool
    history: tuple[str, str] | None  # an earlier (question, answer) in the context
    scene_seed: int
    tail_s: float
    audio: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))


def bank_voice_of(rng: np.random.Generator) -> dict:
    """A train voice from the voice bank's timbres (every shipped human variant but the
    held-out ones and the assistant's), each accent honouring its variant."""
    from omni.synth.voices import ACCENTS, BANK_VARIANTS, PITCH_RANGE, SPEED_RANGE, Voice, variant_voice

    return Voice(name=variant_voice(str(rng.choice(ACCENTS)), str(rng.choice(BANK_VARIANTS))),
                 speed=int(rng.integers(SPEED_RANGE[0], SPEED_RANGE[1] + 1)),
                 pitch=int(rng.integers(PITCH_RANGE[0], PITCH_RANGE[1] + 1)),
                 word_gap=int(rng.choice([0, 0, 0, 1, 2]))).to_dict()


def plan_examples(split: str, n: int, seed: int, voices: str = "split",
                  tail_s: tuple[float, float] = TAIL_S, rewordings: int = 0) -> list[Example]:
    """n examples of `split`, half complete, half cut at a word boundary; `voices`: "split"
    (the split's own voices) or "bank" (the bank's 75 timbres; train only); `tail_s`: the
    range of the silence after the words (what the server has heard when it judges);
    `rewordings` (train only): this many rewordings of every question join its texts
    (`omni.synth.rewording`), whole questions too."""
    from omni.synth.questions import all_question_texts
    from omni.synth.rewording import rewordings as reword_texts
    from omni.synth.voices import sample_voice

    if voices not in ("split", "bank") or (voices == "bank" and split != "train"):
        raise ValueError(f"voices {voices!r} for split {split!r}: 'split', or 'bank' for the train split")
    if rewordings and split != "train":
        raise ValueError("rewordings are drawn for the train split only")

    rng = np.random.default_rng(seed)
    qs = all_question_texts(split)
    reworded = [r for _, r in reword_texts(qs, rewordings, seed)] if rewordings else []
    qs = qs + reworded
    whole = set(all_question_texts("train")) | set(all_question_texts("heldout")) | set(reworded)
    cuttable = [q for q in qs if len(q.split()) >= 2]
    out = []
    for i in range(n):
        if i % 2 == 0:
            text, complete = str(rng.choice(qs)), True
        else:
            words = str(rng.choice(cuttable)).split()
            text = " ".join(words[:int(rng.integers(1, len(words)))])
            complete = text in whole
        hist = None
        if rng.random() < 0.25:
            hist = (str(rng.choice(qs)), str(rng.choice(["red", "two", "a blue circle", "on the left", "hello"])))
        voice = sample_voice(rng, split).to_dict()
        if voices == "bank":  # drawn apart, so the texts, cuts and scenes stay those of the split's voices
            voice = bank_voice_of(np.random.default_rng([seed, 77, i]))
        out.append(Example(text, complete, voice, bool(rng.random() < 0.5), hist,
                           int(rng.integers(1 << 30)), float(rng.uniform(*tail_s))))
    return out


def synthesize_examples(examples: list[Example], threads: int) -> None:
    from omni.synth.voices import Voice, synthesize, trim_silence

    def one(e: Example) -> None:
        speech = trim_silence(synthesize(e.text, Voice(**e.voice)), keep_s=0.0).astype(np.float32) / 32768
        e.audio = np.concatenate([np.zeros(int(PRE_ROLL_S * SR), np.float32), speech,
                                  np.zeros(int(e.tail_s * SR), np.float32)])

    with ThreadPoolExecutor(max(1, threads)) as pool:
        list(pool.map(one, examples))


class _Recorder:
    """Stands in for the head during extraction: keeps the hidden state it is shown."""

    def __init__(self) -> None:
        self.seen: list[torch.Tensor] = []

    def probs(self, hiddens: list[torch.Tensor]) -> list[float]:
        self.seen.extend(h.detach().float().cpu().clone() for h in hiddens)
        return [0.0] * len(hiddens)


def scene_frames(seed: int, split: str, n: int) -> list[np.ndarray]:
    from omni.synth.render import render_frame
    from omni.synth.world import sample_scene

    scene = sample_scene(seed, split, 0)
    return [render_frame(scene, min(i / FRAME_FPS, scene.duration if scene.duration else 0.0), 112)
            for i in range(n)]


def extract_features(model, examples: list[Example], split: str, batch: int, bar=None) -> torch.Tensor:
    """The reply-start hidden state of every example, through RealtimeOmni as served."""
    from omni.realtime import RealtimeOmni
    from omni.realtime_api import UserChunk

    rec = _Recorder()
    rt = RealtimeOmni(model, max_slots=batch, capacity=1024, turn_end=rec)
    feats: list[torch.Tensor] = []
    for b0 in range(0, len(examples), batch):
        group = examples[b0:b0 + batch]
        slots = []
        for e in group:
            slot = rt.open_slot()
            if e.history:
                rt.prefill_text(slot, "user", e.history[0])
                rt.prefill_text(slot, "assistant", e.history[1])
            slots.append(slot)
        packets: dict[int, list[UserChunk]] = {}
        for slot, e in zip(slots, group):
            n_frames = int(len(e.audio) / SR * FRAME_FPS)
            frames = scene_frames(e.scene_seed, split, n_frames) if e.camera and n_frames else []
            times = [i / FRAME_FPS for i in range(len(frames))]
            chunks = []
            for a in range(0, len(e.audio), SR):  # 1 s packets, the last one partial (the speculation flush)
                t0, t1 = a / SR, min(len(e.audio), a + SR) / SR
                idx = [i for i, t in enumerate(times) if t0 <= t < t1]
                chunks.append(UserChunk(e.audio[a:a + SR], [frames[i] for i in idx], t0, True,
                                        frame_times=[times[i] for i in idx]))
            packets[slot] = chunks
        for k in range(max(len(c) for c in packets.values())):
            items = [(slot, c[k]) for slot, c in packets.items() if k < len(c)]
            enc = rt.encode_chunks(items)
            rt.prefill([(slot, x) for (slot, _), x in zip(items, enc)])
        for slot in slots:
            rt.begin_response(slot)
            rt.close_slot(slot)
        if bar is not None:
            bar.update(len(group))
    feats = rec.seen
    assert len(feats) == len(examples), (len(feats), len(examples))
    return torch.stack(feats)


def train_head(x: torch.Tensor, y: torch.Tensor, width: int = 0, steps: int = 300, lr: float = 1e-2,
               weight_decay: float = 1.0, seed: int = 0):
    """Full-batch AdamW on frozen features; returns the head (standardization fitted on x).

    The defaults are the most general of what was tried on the default model (held-out
    AUC at 4,000 training utterances: linear 0.81; an MLP of 64 0.76 unregularized, 0.78-0.80
    with dropout and weight decay; the same from any of the backbone's layers): the
    held-out wordings and voices are what the model itself hears worst, and a bigger head
    only learns the training wordings better."""
    from omni.turn_end import TurnEndHead

    torch.manual_seed(seed)
    head = TurnEndHead(x.shape[1], width)
    with torch.no_grad():
        head.mean.copy_(x.mean(0))
        head.scale.copy_(x.std(0).clamp_min(1e-4))
    opt = torch.optim.AdamW(head.net.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(steps):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(head(x), y.float())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return head.eval(), float(loss.detach())


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (the rank statistic; ties count half)."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    if not len(pos) or not len(neg):
        return float("nan")
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


def probabilities(head, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return torch.sigmoid(head(x)).numpy()


def score(head, x: torch.Tensor, y: torch.Tensor, examples: list[Example],
          thresholds: dict[str, float] | None = None) -> dict:
    p = probabilities(head, x)
    lab = y.numpy().astype(int)
    out = {"n": int(len(lab)), "complete": int(lab.sum()), "auc": auc(p, lab),
           "accuracy_at_0.5": float(((p >= 0.5) == lab).mean())}
    # what the server's eagerness thresholds do (streaming/semantic_turn.py): complete turns
    # ended at once, incomplete ones wrongly ended at once
    for thr in (0.3, 0.5, 0.7):
        out[f"complete_ended_at_{thr}"] = float((p[lab == 1] >= thr).mean())
        out[f"incomplete_ended_at_{thr}"] = float((p[lab == 0] >= thr).mean())
    for eager, thr in (thresholds or {}).items():  # the head's own, set on the calibration set
        out[f"{eager}_complete_ended"] = float((p[lab == 1] >= thr).mean())
        out[f"{eager}_incomplete_ended"] = float((p[lab == 0] >= thr).mean())
    for name, sel in (("camera_on", [e.camera for e in examples]), ("with_history", [bool(e.history) for e in examples])):
        m = np.asarray(sel)
        if m.any():
            out[f"accuracy_{name}"] = float(((p[m] >= 0.5) == lab[m]).mean())
    wrong = [(e.text, float(q)) for e, q, l in zip(examples, p, lab) if (q >= 0.5) != l]
    out["errors"] = wrong[:20]
    return out


def tail_ms_range(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--tail-ms {text!r}: give LO,HI in ms, e.g. 50,300") from None
    if not 0 <= lo <= hi <= 2000:
        raise argparse.ArgumentTypeError(f"--tail-ms {text!r}: need 0 <= LO <= HI <= 2000")
    return lo / 1000, hi / 1000


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None,
                   help="model directory to read and write the head into (default: the shipped default model)")
    p.add_argument("--train", type=int, default=4000, help="training utterances, half complete (default 4000)")
    p.add_argument("--heldout", type=int, default=400, help="held-out utterances for the scores (default 400)")
    p.add_argument("--calibration", type=int, default=600,
                   help="utterances of the held-out split, drawn apart from the scored ones, that set the "
                        "eagerness thresholds (half cut; default 600)")
    p.add_argument("--width", type=int, default=0,
                   help="hidden width of an MLP head; 0 (default): a linear read-out of the hidden state")
    p.add_argument("--batch", type=int, default=8, help="utterances per batched forward (default 8)")
    p.add_argument("--threads", type=int, default=0, help="torch / espeak-ng threads (default: all cores)")
    p.add_argument("--train-voices", choices=("train", "bank"), default="train",
                   help="voices of the training utterances: the train split's 88 (default) or the voice "
                        "bank's 600 (8 accents x 75 timbres)")
    p.add_argument("--tail-ms", type=tail_ms_range, default=None, metavar="LO,HI",
                   help="silence after the words, drawn in this range of ms (default 100,300: the server "
                        "judges after speculative_silence_ms, 128); held-out scores use the same range")
    p.add_argument("--rewordings", type=int, default=0, metavar="N",
                   help="N rewordings of every training question join the training texts (omni.synth.rewording: "
                        "template words dropped, swapped or added, the object phrase kept; default 0)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--results", default=None, help="also write the scores to this JSON file")
    p.add_argument("--dry-run", action="store_true", help="train and score, but do not write the head")


def main(args: argparse.Namespace) -> int:
    from omni.defaults import default_model_dir

    # refusals first, before anything heavy is imported or loaded
    model_dir = args.model or default_model_dir()
    if not model_dir or not os.path.isfile(os.path.join(model_dir, "config.json")):
        raise argparse.ArgumentTypeError(f"--model {model_dir!r}: not a model directory (config.json missing)")
    if args.train < 20 or args.heldout < 10 or args.calibration < 20:
        raise argparse.ArgumentTypeError("--train needs >= 20 utterances, --calibration >= 20 and --heldout >= 10")
    if not 0 <= args.rewordings <= 16:
        raise argparse.ArgumentTypeError(f"--rewordings {args.rewordings}: give 0 to 16")
    from tqdm import tqdm

    from omni.model import OmniModel
    from omni.synth.voices import check_tools
    from omni.turn_end import calibrate_thresholds, save_turn_end
    check_tools()
    threads = args.threads or (os.cpu_count() or 1)
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    model = OmniModel.from_pretrained(model_dir, dtype=torch.float32)
    sets = {}
    for name, split, n, seed in (("train", "train", args.train, args.seed),
                                 ("heldout", "heldout", args.heldout, args.seed + 1),
                                 ("calibration", "heldout", args.calibration, args.seed + 2)):
        ex = plan_examples(split, n, seed, "bank" if split == "train" and args.train_voices == "bank" else "split",
                           args.tail_ms or TAIL_S, args.rewordings if split == "train" else 0)
        synthesize_examples(ex, threads)
        with tqdm(total=len(ex), desc=f"hidden states ({name})", unit="utt") as bar:
            x = extract_features(model, ex, split, args.batch, bar)
        sets[name] = (ex, x, torch.tensor([e.complete for e in ex], dtype=torch.long))
    ex_tr, x_tr, y_tr = sets["train"]
    head, loss = train_head(x_tr, y_tr, width=args.width, seed=args.seed)
    _, x_cal, y_cal = sets["calibration"]
    thresholds = calibrate_thresholds(probabilities(head, x_cal)[y_cal.numpy() == 0])
    result = {
        "command": " ".join(["omni", *sys.argv[1:]]) if sys.argv[1:2] == ["train-turn-end"] else None,
        "hardware": f"{os.cpu_count()}-core CPU",
        "model": Path(model_dir).name if args.model else "the shipped default model",
        "position": "reply_start",
        "train": {"utterances": len(ex_tr), "loss": loss, **{k: v for k, v in score(head, x_tr, y_tr, ex_tr).items()
                                                               if k != "errors"}},
        "heldout": score(head, *sets["heldout"][1:], sets["heldout"][0], thresholds),
        "thresholds": thresholds,
        "calibration": {k: v for k, v in score(head, *sets["calibration"][1:], sets["calibration"][0], thresholds).items()
                        if k != "errors"},
        "data": {"pre_roll_s": PRE_ROLL_S, "tail_s": list(args.tail_ms or TAIL_S), "camera_fps": FRAME_FPS,
                 "rewordings": args.rewordings,
                 "train_split": "train questions + " + ("the voice bank's timbres" if args.train_voices == "bank"
                                                         else "train voices"), "heldout_split": "held-out wordings + unseen voices",
                 "calibration_split": "held-out wordings + unseen voices, drawn apart from the scored ones"},
        "seconds": round(time.perf_counter() - t0, 1), "threads": threads,
    }
    h = result["heldout"]
    print(f"end-of-turn head: held-out AUC {h['auc']:.3f}, accuracy {h['accuracy_at_0.5']:.3f} "
          f"({h['n']} utterances, {h['complete']} complete); complete ended at 0.5: "
          f"{h['complete_ended_at_0.5']:.2f}, incomplete ended at 0.5: {h['incomplete_ended_at_0.5']:.2f}")
    for eager, thr in thresholds.items():
        print(f"  {eager}: threshold {thr:.3f} ends {h[f'{eager}_complete_ended']:.2f} of complete and "
              f"{h[f'{eager}_incomplete_ended']:.2f} of cut held-out questions at once")
    if not args.dry_run:
        meta = {k: v for k, v in result.items() if k in ("position", "train", "data", "thresholds")}
        meta["heldout"] = {k: v for k, v in h.items() if k != "errors"}
        save_turn_end(head, model_dir, meta)
        print(f"wrote {os.path.join(model_dir, 'turn_end.safetensors')}")
    if args.results:
        Path(args.results).parent.mkdir(parents=True, exist_ok=True)
        Path(args.results).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.results}")
    return 0

"""`omni train-backchannel`: train the server's backchannel detector (streaming/backchannel.py).

Backchannels (30 wordings: "uh huh", "yeah", "okay", "mmm hmm", "mhm", "right", "yeah
yeah", "oh okay"...) against interruptions (the synthetic world's train questions, the same
entered one to three words late, and barge-in phrases: "stop", "wait", "hold on", "no"...),
spoken by every train and voice-bank timbre of every accent (espeak-ng, speed and pitch
drawn per clip, wider than the world's). The detector sees what the server has
when it decides: the first `window_ms` of speech from where the VAD put its start (found
by silero-vad and the session's endpointer run on the clip), and for the second look
the whole sound, from there to where the endpointer says it ended (up to
`max_backchannel_ms`). The opening's threshold is chosen on train timbres kept out of its
fit. Scored on held-out voices: the four backchannels of bench/turn_taking.py and
held-out questions (wordings never trained on).

    omni train-backchannel                      # ~5 min on 2 CPU cores; writes streaming/pretrained/backchannel.npz
    omni train-backchannel --results bench/results/backchannel_cpu.json --compare 128@0,96@64
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from streaming.backchannel import DEFAULT_PATH, SR, BackchannelDetector, Classifier, features, opening_features, span

BACKCHANNELS_TRAIN = (
    "uh huh", "yeah", "okay", "mmm hmm", "mhm", "right", "yep", "sure", "i see", "ok", "mm hmm", "uh huh uh huh",
    "yeah yeah", "okay okay", "yes", "yup", "alright", "oh okay", "oh i see", "mm", "hmm", "uh huh yeah",
    "yeah right", "right right", "sure sure", "okay yeah", "ah okay", "mhm mhm", "yeah okay", "uh huh okay")
BACKCHANNELS_HELDOUT = ("uh huh", "yeah", "okay", "mmm hmm")  # bench/turn_taking.py's, as espeak-ng reads them
INTERRUPTIONS = (
    "stop", "wait", "hold on", "sorry", "excuse me", "actually", "no", "no no", "wait wait", "hang on",
    "just a second", "one second", "stop please", "sorry to interrupt", "but", "never mind", "listen",
    "let me ask", "quick question", "another question", "not that", "that is wrong", "and then", "hey",
    "what", "why", "where", "how", "which", "please stop", "stop talking", "wait a moment")
# train timbres kept out of the opening's fit, to choose its threshold
VALIDATION_VARIANTS = ("f5", "klatt2", "Andy", "grandma", "steph", "klatt6", "benjamin", "Diogo")
TRAIN_SPEED, TRAIN_PITCH = (120, 220), (15, 85)  # wider than the world's 140-195 wpm, 30-70


def train_openings() -> tuple[list[str], list[str]]:
    """The world's train questions, and the same questions entered one to three words late
    ("many shapes do you see", "can i see the star"): an interruption opens with any word,
    and the VAD may miss a soft first one."""
    from omni.synth.questions import all_question_texts

    qs = list(all_question_texts("train"))
    late = sorted({" ".join(w[k:]) for w in (q.split() for q in qs) for k in range(1, min(4, len(w) - 1))})
    return qs, late


def plan(split: str, n: int, seed: int) -> list[tuple[str, dict, bool]]:
    """(text, voice, is_backchannel): half backchannels, half interruptions. Train: 30 backchannel
    wordings against the train questions (half), the same entered late (30 %) and barge-in phrases
    (20 %), in every train and voice-bank timbre of every accent at wide speeds and pitches.
    Held-out: the bench's four backchannels against held-out questions, held-out voices."""
    from omni.synth.voices import ACCENTS, BANK_VARIANTS, TRAIN_VARIANTS, Voice, sample_voice

    rng = np.random.default_rng(seed)
    if split != "train":
        starts = list(all_question_texts_of(split))
        return [(str(rng.choice(BACKCHANNELS_HELDOUT)) if i % 2 == 0 else str(rng.choice(starts)),
                 sample_voice(rng, split).to_dict(), i % 2 == 0) for i in range(n)]
    qs, late = train_openings()
    variants = list(dict.fromkeys(TRAIN_VARIANTS + BANK_VARIANTS))  # no held-out timbre among them
    out = []
    for i in range(n):
        v = Voice(f"{rng.choice(ACCENTS)}+{rng.choice(variants)}", int(rng.integers(TRAIN_SPEED[0], TRAIN_SPEED[1] + 1)),
                  int(rng.integers(TRAIN_PITCH[0], TRAIN_PITCH[1] + 1)), int(rng.choice([0, 0, 0, 1, 2])))
        if i % 2 == 0:
            text = rng.choice(BACKCHANNELS_TRAIN)
        else:
            r = rng.random()
            text = rng.choice(qs if r < 0.5 else late if r < 0.8 else INTERRUPTIONS)
        out.append((str(text), v.to_dict(), i % 2 == 0))
    return out


def all_question_texts_of(split: str) -> list[str]:
    from omni.synth.questions import all_question_texts

    return all_question_texts(split)


def render(items: list[tuple[str, dict, bool]], threads: int) -> list[np.ndarray]:
    from omni.synth.voices import Voice, synthesize, trim_silence

    def one(item):
        text, voice, _ = item
        return trim_silence(synthesize(text, Voice(**voice)), keep_s=0.0).astype(np.float32) / 32768

    with ThreadPoolExecutor(max(1, threads)) as pool:
        return list(pool.map(one, items))


LEAD_S = 0.3  # at least this much silence before each clip, as over a reply


def vad_spans(clips: list[np.ndarray], seed: int = 0) -> list[tuple[int, int]]:
    """Where the server's own VAD puts each clip's speech: (start, end) samples in the clip,
    from silero-vad and the endpointer exactly as a session runs them (speech_started's
    sample; end_of_turn's speech_end), so the detector learns from what it will be given.
    The silence before a clip is 0.3 s plus a random part of a VAD window: silero judges
    32 ms windows on the stream's grid, and in a session an onset falls anywhere in one, so
    the VAD's start lands 0-32 ms before or after it (a fixed lead would always put it at
    the same place, and a detector trained so fails on the others). A start before the
    clip stays negative: the window then opens on the silence before it, as in a session."""
    from streaming.vad import WINDOW, Endpointer, SileroVAD, VADState

    vad = SileroVAD()
    rng = np.random.default_rng(seed)
    leads = [int(LEAD_S * SR) + int(rng.integers(0, WINDOW)) for _ in clips]
    padded = [np.concatenate([np.zeros(lead, np.float32), x, np.zeros(SR, np.float32)])
              for x, lead in zip(clips, leads)]
    spans = []
    for k in range(0, len(padded), 64):  # batched over clips, as over sessions
        group = padded[k:k + 64]
        probs = vad.probs([(VADState(), x) for x in group])
        for x, p, lead in zip(group, probs, leads[k:k + 64]):
            ep = Endpointer()
            start, end = lead, len(x) - SR
            for ev in ep.feed(p):
                if ev.kind == "speech_started":
                    start = ev.sample
                elif ev.kind == "end_of_turn":
                    end = ev.speech_end
                    break
            spans.append((start - lead, max(0, end - lead)))
    return spans


def openings(clips: list[np.ndarray], spans: list[tuple[int, int]], window_ms: int, lead_ms: int = 0) -> np.ndarray:
    """The detector's first look: `window_ms` from `lead_ms` before where the VAD put the speech start."""
    w, lead = SR * window_ms // 1000, SR * lead_ms // 1000
    return np.stack([opening_features(span(x, a - lead, a - lead + w)) for x, (a, _) in zip(clips, spans)])


def parse_windows(window_ms: int, lead_ms: int, compare: str) -> list[tuple[int, int]]:
    """[(window_ms, lead_ms)]: the chosen one first, then the --compare entries ("96", "128@64")."""
    out = [(window_ms, lead_ms)]
    for item in (c.strip() for c in compare.split(",")):
        if not item:
            continue
        w, _, lead = item.partition("@")
        try:
            pair = (int(w), int(lead or 0))
        except ValueError:
            raise argparse.ArgumentTypeError(f"--compare entry {item!r}: WINDOW or WINDOW@LEAD in ms") from None
        if not (32 <= pair[0] <= 1000 and 0 <= pair[1] < pair[0]):
            raise argparse.ArgumentTypeError(f"--compare entry {item!r}: window 32..1000 ms, lead 0..window")
        if pair not in out:
            out.append(pair)
    return out


def wholes(clips: list[np.ndarray], spans: list[tuple[int, int]], max_ms: int) -> np.ndarray:
    """The second look: the whole sound, from the VAD's start to its end (at most `max_ms`)."""
    m = SR * max_ms // 1000
    return np.stack([features(span(x, a, min(b, a + m))) for x, (a, b) in zip(clips, spans)])


def fit(x: np.ndarray, y: np.ndarray, hidden: int = 128, weight_decay: float = 0.1, dropout: float = 0.5,
        steps: int = 600, lr: float = 3e-3, seed: int = 0) -> Classifier:
    """One-hidden-layer MLP on standardized features (full-batch AdamW, input dropout).
    A logistic regression on the same features
    underfits (train accuracy 0.90, held-out interruptions taken for backchannels 23 %)."""
    import torch

    torch.manual_seed(seed)
    mean, scale = x.mean(0), x.std(0) + 1e-4
    z = torch.from_numpy((x - mean) / scale)
    t = torch.from_numpy(y.astype(np.float32))
    l1, l2 = torch.nn.Linear(x.shape[1], hidden), torch.nn.Linear(hidden, 1)
    opt = torch.optim.AdamW([*l1.parameters(), *l2.parameters()], lr=lr, weight_decay=weight_decay)
    for _ in range(steps):
        h = torch.nn.functional.gelu(l1(torch.nn.functional.dropout(z, dropout, True)), approximate="tanh")
        loss = torch.nn.functional.binary_cross_entropy_with_logits(l2(h).squeeze(-1), t)
        opt.zero_grad()
        loss.backward()
        opt.step()
    f32 = np.float32
    return Classifier(mean.astype(f32), scale.astype(f32), l1.weight.detach().numpy().T.astype(f32).copy(),
                      l1.bias.detach().numpy().astype(f32), l2.weight.detach().numpy()[0].astype(f32),
                      float(l2.bias.detach()))


def rates(clf: Classifier, x: np.ndarray, y: np.ndarray, threshold: float = 0.5) -> dict:
    bc = clf.probs(x) >= threshold
    return {"n": int(len(y)), "backchannels_let_through": float(bc[y].mean()),
            "interruptions_taken_for_backchannels": float(bc[~y].mean()),
            "accuracy": float((bc == y).mean())}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--train", type=int, default=8000, help="training clips, half backchannels (default 8000)")
    p.add_argument("--heldout", type=int, default=600, help="held-out clips for the scores (default 600)")
    p.add_argument("--window-ms", type=int, default=128,
                   help="audio the detector looks at (default 128, of which the first --lead-ms come before the "
                        "VAD's start: it decides 32 ms after the VAD fires; an interruption should stop the reply "
                        "within 200 ms of its onset)")
    p.add_argument("--lead-ms", type=int, default=32,
                   help="the window opens this long before the VAD's speech start (default 32; the VAD marks a "
                        "start once 64 ms sound like speech, so 64 would complete the window when it fires)")
    p.add_argument("--compare", default="96@64,128@0,128@64",
                   help="other windows to train and score for the record, comma-separated WINDOW or WINDOW@LEAD "
                        "in ms (default 96@64,128@0,128@64; empty: none); the detector written uses "
                        "--window-ms and --lead-ms")
    p.add_argument("--phases", type=int, default=3,
                   help="places on the VAD's 32 ms grid each train clip is seen at (default 3: a session's "
                        "onsets fall anywhere in a VAD window)")
    p.add_argument("--max-passed", type=float, default=0.03,
                   help="the opening's threshold is the lowest that lets at most this share of the validation "
                        "interruptions through as backchannels (default 0.03)")
    p.add_argument("--threads", type=int, default=0, help="espeak-ng threads (default: all cores)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(DEFAULT_PATH), help="detector file to write (default: the shipped one)")
    p.add_argument("--results", default=None, help="also write the scores per window to this JSON file")


def main(args: argparse.Namespace) -> int:
    if args.train < 40 or args.heldout < 20:
        raise argparse.ArgumentTypeError("--train needs >= 40 clips and --heldout >= 20")
    if args.window_ms is not None and not 32 <= args.window_ms <= 1000:
        raise argparse.ArgumentTypeError("--window-ms must be in 32..1000")
    if args.phases < 1 or not 0 < args.max_passed < 1:
        raise argparse.ArgumentTypeError("--phases must be >= 1 and --max-passed in (0, 1)")
    if not 0 <= args.lead_ms < args.window_ms:
        raise argparse.ArgumentTypeError("--lead-ms must be in 0..--window-ms")
    windows = parse_windows(args.window_ms, args.lead_ms, args.compare)
    from omni.synth.voices import check_tools

    check_tools()
    threads = args.threads or (os.cpu_count() or 1)
    t0 = time.perf_counter()
    tr, ho = plan("train", args.train, args.seed), plan("heldout", args.heldout, args.seed + 1)
    clips_tr, clips_ho = render(tr, threads), render(ho, threads)
    y_tr, y_ho = np.array([b for *_, b in tr]), np.array([b for *_, b in ho])
    # each train clip is seen at --phases places on the VAD's 32 ms grid (one VAD pass each)
    sp_tr = [vad_spans(clips_tr, args.seed + 1000 * k) for k in range(args.phases)]
    sp_ho = vad_spans(clips_ho, args.seed + 1)
    y_all = np.tile(y_tr, args.phases)
    # the opening's threshold is chosen on train voices of timbres kept out of its fit: the
    # lowest that takes <= --max-passed of their interruptions for backchannels (a real
    # interruption must stop at once; a backchannel stopped by mistake costs less)
    val = np.tile(np.array([v["name"].split("+")[1] in VALIDATION_VARIANTS for _, v, _ in tr]), args.phases)
    table, chosen = [], None
    for w, lead in windows:
        x_tr = np.concatenate([openings(clips_tr, sp, w, lead) for sp in sp_tr])
        clf = fit(x_tr[~val], y_all[~val], hidden=256, seed=args.seed)
        p_val = clf.probs(x_tr[val])
        thr = next((t for t in np.arange(0.5, 0.99, 0.01)
                    if (p_val[~y_all[val]] >= t).mean() <= args.max_passed), 0.99)
        thr = float(round(thr, 2))
        row = {"window_ms": w, "lead_ms": lead, "threshold": thr,
               "validation": rates(clf, x_tr[val], y_all[val], thr),
               "heldout": rates(clf, openings(clips_ho, sp_ho, w, lead), y_ho, thr)}
        table.append(row)
        h = row["heldout"]
        print(f"window {w:4d} ms from {lead:3d} ms before the VAD's start (threshold {thr:.2f}): held-out backchannels let through {h['backchannels_let_through']:.3f}, "
              f"interruptions taken for backchannels {h['interruptions_taken_for_backchannels']:.3f}", flush=True)
        if (w, lead) == windows[0]:
            chosen = (clf, row)
    clf, row = chosen
    thr = row["threshold"]
    max_ms = BackchannelDetector.max_backchannel_ms
    whole = fit(wholes(clips_tr, sp_tr[0], max_ms), y_tr, seed=args.seed)
    whole_row = {"train": rates(whole, wholes(clips_tr, sp_tr[0], max_ms), y_tr),
                 "heldout": rates(whole, wholes(clips_ho, sp_ho, max_ms), y_ho)}
    # what the server does: the opening decides at once; a sound let through is looked at again whole
    p_open = clf.probs(openings(clips_ho, sp_ho, args.window_ms, args.lead_ms)) >= thr
    p_whole = whole.probs(wholes(clips_ho, sp_ho, max_ms)) >= 0.5
    both = {"backchannels_let_through": float((p_open & p_whole)[y_ho].mean()),
            "interruptions_stopped_at_once": float((~p_open)[~y_ho].mean()),
            "interruptions_stopped_at_their_end": float((p_open & ~p_whole)[~y_ho].mean()),
            "interruptions_lost": float((p_open & p_whole)[~y_ho].mean())}
    h = whole_row["heldout"]
    print(f"whole sound: held-out backchannels let through {h['backchannels_let_through']:.3f}, "
          f"interruptions taken for backchannels {h['interruptions_taken_for_backchannels']:.3f}; "
          f"together: {both}", flush=True)
    det = BackchannelDetector(clf, whole, window_ms=args.window_ms, lead_ms=args.lead_ms, threshold=thr)
    result = {"command": " ".join(["omni", *sys.argv[1:]]) if sys.argv[1:2] == ["train-backchannel"] else None,
              "hardware": f"{os.cpu_count()}-core CPU", "chosen_window_ms": det.window_ms,
              "chosen_lead_ms": det.lead_ms, "windows": table,
              "whole": whole_row, "server_heldout": both,
              "data": {"train": f"{len(tr)} clips, train voices; backchannels {list(BACKCHANNELS_TRAIN)}",
                       "heldout": f"{len(ho)} clips, held-out voices; backchannels {list(BACKCHANNELS_HELDOUT)} "
                                  "against held-out questions",
                       "spans": "speech start and end as the server's silero-vad + endpointer find them, the "
                                "onset at a random place on the VAD's 32 ms grid",
                       "phases": args.phases, "max_passed": args.max_passed},
              "seconds": round(time.perf_counter() - t0, 1)}
    det.save(args.out, meta={"heldout_opening": row["heldout"], "heldout_whole": whole_row["heldout"],
                             "heldout_server": both, "train_clips": len(tr)})
    print(f"wrote {args.out} (window {det.window_ms} ms from {det.lead_ms} ms before the VAD's start)")
    if args.results:
        Path(args.results).parent.mkdir(parents=True, exist_ok=True)
        Path(args.results).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.results}")
    return 0

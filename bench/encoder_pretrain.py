"""Encoder pre-training of the default model, measured on held-out scenes and voices.

    python bench/encoder_pretrain.py                       # CPU, ~8 min on 2 cores

Trains fresh `mini` encoders with the curriculum's own functions
(`mdp/curriculum/pretrain.py`) on the train pack and checks them on the held-out pack:

- vision: slot classification of each still (empty, or color x shape, for 5 slots), on
  the stills as they are or (`--vision-augment`) on jittered views of them;
  held-out slot accuracy, exact objects, color and shape accuracy of occupied slots;
- audio: CTC of the questions' words in three arms: features normalized by the pack's
  statistics (`pack_cmvn`) with every question re-drawn through speed / gain / noise
  perturbation and time masking (recipe `pretrain.augment=audio`), the same without
  augmentation (the recipe's default), and neither (identity CMVN, what earlier runs
  did); training loss and held-out token error rate (greedy CTC).

Prints a table, writes JSON and a loss plot (default bench/results/encoder_pretrain_cpu.*).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time

sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402


def vision_run(args, train, heldout, cfg) -> dict:
    from encoders.vision import VisionEncoder
    from mdp.curriculum.pretrain import pretrain_vision, slot_logits, slot_targets, still_patches

    torch.manual_seed(args.seed)
    vis = VisionEncoder(cfg.vision)
    t0 = time.time()
    losses, head = pretrain_vision(vis, train, args.vision_steps, args.vision_batch, args.lr, args.seed,
                                   contextlib.nullcontext, augment=args.vision_augment)
    secs = time.time() - t0
    vis.eval()
    patches, grid, _ = still_patches(heldout, cfg.vision)
    y = torch.tensor([slot_targets(heldout.scene(k)) for k in range(heldout.num_scenes)])
    with torch.no_grad():
        pred = torch.cat([slot_logits(vis, head, patches[k : k + 50], grid).argmax(-1) for k in range(0, len(patches), 50)])
    occ = y > 0
    return {"augment": args.vision_augment, "steps": args.vision_steps, "batch": args.vision_batch,
            "seconds": round(secs, 1), "losses": losses,
            "heldout_stills": int(len(y)),
            "slot_accuracy": round(float((pred == y).float().mean()), 4),
            "object_exact": round(float((pred == y)[occ].float().mean()), 4),
            "color_accuracy": round(float(((pred - 1) // 4 == (y - 1) // 4)[occ].float().mean()), 4),
            "shape_accuracy": round(float(((pred - 1) % 4 == (y - 1) % 4)[occ].float().mean()), 4)}


def _edit_distance(a: list, b: list) -> int:
    d = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, d[0] = d[0], i
        for j, y in enumerate(b, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (x != y))
    return d[len(b)]


AUDIO_KEYS = {"cmvn": str, "augment": int, "speaker": float, "steps": int, "bank": int, "sentences": int,
              "rewordings": int}
DEFAULT_ARMS = ("pack statistics + augmentation: cmvn=pack; augment=1",
                "pack statistics: cmvn=pack",
                "identity (raw log-mel): cmvn=identity")


def parse_arm(text: str) -> dict:
    """'NAME: key=value; ...' -> {"arm": NAME, cmvn, augment, speaker, steps, bank}. Keys: cmvn (pack or
    identity), augment (0/1: speed, gain, noise, time masks), speaker (the mel-domain speaker warp,
    encoders.speaker_augment; 0 off), steps (0: --audio-steps), bank (0/1: the --bank clips in the pool),
    sentences (0/1: the bank's random sentences too, `omni data voice-bank --sentences`), rewordings
    (0/1: the bank's rewordings of the questions too, `omni data voice-bank --rewordings`)."""
    name, _, rest = text.partition(":")
    if not name.strip():
        raise ValueError(f"audio arm {text!r}: give it a name, 'NAME: key=value; ...'")
    arm = {"arm": name.strip(), "cmvn": "pack", "augment": 0, "speaker": 0.0, "steps": 0, "bank": 1, "sentences": 1,
           "rewordings": 1}
    for item in filter(None, (x.strip() for x in rest.split(";"))):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or key not in AUDIO_KEYS:
            raise ValueError(f"audio arm {text!r}: {item!r} is not one of {', '.join(AUDIO_KEYS)}=VALUE")
        arm[key] = AUDIO_KEYS[key](value.strip())
    if arm["cmvn"] not in ("pack", "identity"):
        raise ValueError(f"audio arm {text!r}: cmvn must be pack or identity")
    return arm


def token_error(enc, clips: list[tuple[np.ndarray, str]], tok, device) -> float:
    """Greedy CTC token error rate of `enc` on (float32 16 kHz audio, text) pairs."""
    errors = words = 0
    with torch.no_grad():
        for audio, text in clips:
            wav = torch.from_numpy(audio)[None].to(device)
            feats, fl = enc.features(wav, torch.tensor([wav.shape[1]]))
            best = enc.encoder.ctc_logits(enc.encoder(feats, fl.to(device)))[0, : int(fl[0])].argmax(-1).tolist()
            hyp = [p for p, q in zip(best, [0] + best[:-1]) if p != q and p != 0]
            ref = tok.encode(text)
            errors += _edit_distance(ref, hyp)
            words += len(ref)
    return errors / max(1, words)


def scoring_sets(args, train, heldout) -> dict[str, list[tuple[np.ndarray, str]]]:
    """What every arm is scored on: held-out questions in the held-out pack's recordings, clips of
    the arm's own training pool and, with --split-questions, the two halves of "held-out" apart:
    held-out texts re-spoken in fresh train-split voices and train texts in fresh held-out voices
    (`omni.synth.heldout.rerender`, espeak-ng)."""
    picks = np.linspace(0, len(heldout) - 1, min(args.heldout_questions, len(heldout))).round().astype(int)
    seen = np.random.default_rng([args.seed, 11]).choice(len(train), size=min(args.audio_pool, len(train)),
                                                         replace=False)[: len(picks)]  # clips of the pool itself
    sets = {"heldout": [(heldout.question_audio(int(i)), heldout.question_text(int(i))) for i in picks],
            "train_pool": [(train.question_audio(int(i)), train.question_text(int(i))) for i in seen]}
    if args.split_questions:
        from omni.synth.heldout import items_from_pack, rerender

        for name, path, voices in (("heldout_texts_train_voices", args.heldout_pack, "train"),
                                   ("train_texts_heldout_voices", args.train_pack, "heldout")):
            items = rerender(items_from_pack(path, limit=args.split_questions), path, voices, args.seed)
            sets[name] = [(it["audio"], it["question_text"]) for it in items]
    return sets


def audio_run(args, train, cfg, tok, arm: dict, bank, sets: dict) -> dict:
    from encoders.audio import StreamingAudioEncoder
    from encoders.speaker_augment import SpeakerAugment
    from mdp.curriculum.data import pack_cmvn
    from mdp.curriculum.pretrain import pretrain_audio

    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    enc = StreamingAudioEncoder(cfg.audio).to(device)
    if arm["cmvn"] == "pack":
        mean, istd = pack_cmvn(train, enc.frontend, seed=args.seed)
        enc.frontend.cmvn.mean.copy_(mean)
        enc.frontend.cmvn.istd.copy_(istd)
    if arm["speaker"] > 0:  # the same augmentation the recipe's curriculum.speaker_augment attaches
        gen = torch.Generator(device=device).manual_seed(args.seed * 7 + 3)
        enc.frontend.augment = SpeakerAugment(warp=arm["speaker"], generator=gen)
    steps = arm["steps"] or args.audio_steps
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if device.type == "cuda" else contextlib.nullcontext
    if bank is not None and arm["bank"]:
        bank = bank if arm["sentences"] else bank.without_sentences()
        bank = bank if arm["rewordings"] else bank.without_rewordings()
    t0 = time.time()
    losses = pretrain_audio(enc, train, tok, steps, args.audio_batch, args.lr, args.seed, autocast,
                            pool=args.audio_pool, augment=bool(arm["augment"]),
                            bank=bank if arm["bank"] else None, bank_pool=args.bank_pool)
    secs = time.time() - t0
    enc.eval()
    return {**arm, "augment": bool(arm["augment"]), "steps": steps, "batch": args.audio_batch,
            "seconds": round(secs, 1), "losses": losses,
            "train_loss_last20": round(float(np.mean(losses[-20:])), 4),
            "heldout_questions": len(sets["heldout"]),
            **{f"{name}_token_error_rate": round(token_error(enc, clips, tok, device), 4) for name, clips in sets.items()}}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--train-pack", default="runs/data/train.pack.npz", help="pack the encoders train on")
    p.add_argument("--heldout-pack", default="runs/data/heldout.pack.npz",
                   help="pack of held-out scenes and voices they are checked on")
    p.add_argument("--vision-steps", type=int, default=600, help="ViT slot-classification steps (0: audio only)")
    p.add_argument("--vision-batch", type=int, default=64, help="stills per vision step")
    p.add_argument("--vision-augment", action="store_true",
                   help="pre-train the ViT on jittered stills (recipe pretrain.augment=vision)")
    p.add_argument("--audio-steps", type=int, default=300, help="CTC steps of each audio arm (0: vision only)")
    p.add_argument("--audio-batch", type=int, default=32, help="questions per audio step")
    p.add_argument("--audio-pool", type=int, default=2048, help="train questions (stored microphones) drawn from")
    p.add_argument("--heldout-questions", type=int, default=100, help="held-out spoken questions scored")
    p.add_argument("--split-questions", type=int, default=0,
                   help="also score this many held-out texts in fresh train voices and train texts in fresh held-out "
                        "voices (needs espeak-ng): is a held-out miss the voice or the wording? (0: off)")
    p.add_argument("--arm", action="append", metavar="'NAME: key=value; ...'",
                   help="an audio arm (repeatable; keys cmvn=pack|identity, augment=0|1, speaker=WARP, "
                        "steps=N, bank=0|1); default: the three arms above")
    p.add_argument("--bank", help="a voice bank (omni data voice-bank) whose clips join the audio pool, "
                                  "as the recipe's curriculum.voice_bank")
    p.add_argument("--bank-pool", type=int, default=16384, help="bank clips in the pool (the recipe's 16,384)")
    p.add_argument("--device", default="cpu", help="torch device (cuda: bf16 autocast, as the recipe)")
    p.add_argument("--lr", type=float, default=2e-3, help="learning rate (the recipe's encoder_lr)")
    p.add_argument("--seed", type=int, default=0, help="initialization and sampling seed")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--out", default="bench/results/encoder_pretrain_cpu.json", help="JSON report (plot beside it)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from omni.config import get_omni_config
    from omni.synth.pack import Pack
    from omni.tokenizer import load_tokenizer

    cfg, tok = get_omni_config("mini"), load_tokenizer()
    train, heldout = Pack(args.train_pack), Pack(args.heldout_pack)
    vision = None
    if args.vision_steps > 0:
        print(f"vision: {args.vision_steps} steps x {args.vision_batch} stills ...", file=sys.stderr)
        vision = vision_run(args, train, heldout, cfg)
    try:
        arms = [parse_arm(a) for a in (args.arm or DEFAULT_ARMS)]
    except ValueError as e:
        p.error(str(e))
    bank = None
    if args.bank:
        from mdp.curriculum.tables import load_bank

        bank = load_bank(args.bank)
    audio = []
    sets = scoring_sets(args, train, heldout) if args.audio_steps > 0 else {}
    for arm in arms if args.audio_steps > 0 else ():
        print(f"audio arm {arm['arm']!r}: {arm['steps'] or args.audio_steps} steps x {args.audio_batch} ...",
              file=sys.stderr)
        audio.append(audio_run(args, train, cfg, tok, arm, bank, sets))
        write_report(args, vision, audio, bank)  # each finished arm survives a time limit
    report = write_report(args, vision, audio, bank)
    print_report(report, args)
    return 0


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return "1x " + torch.cuda.get_device_name()
    return f"{platform.machine()} CPU, {os.cpu_count()} cores"


def write_report(args, vision, audio, bank) -> dict:
    report = {"device": device_name(args.device), "threads": args.threads,
              "bank_clips": len(bank) if bank is not None else 0,
              "command": "python bench/encoder_pretrain.py " + " ".join(sys.argv[1:]), "vision": vision, "audio": audio}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(report, fh, indent=1)
    return report


def print_report(report: dict, args) -> None:
    vision, audio = report["vision"], report["audio"]
    print(f"encoder pre-training on {report['device']} ({args.threads} threads), held-out pack scenes and voices")
    if vision:
        print(f"vision{' (augmented)' if args.vision_augment else ''}  {vision['steps']} steps x {vision['batch']}, "
              f"{vision['seconds']} s: slot accuracy "
              f"{vision['slot_accuracy']:.1%}, objects exact {vision['object_exact']:.1%}, color {vision['color_accuracy']:.1%}, "
              f"shape {vision['shape_accuracy']:.1%} ({vision['heldout_stills']} stills)")
    split = bool(audio) and "heldout_texts_train_voices_token_error_rate" in audio[0]
    if audio:
        print(f"{'audio arm':40} {'steps':>6} {'seconds':>8} {'train loss (last 20)':>21} "
              f"{'train-pool token error':>23} {'held-out token error':>21}"
              + (f" {'held-out texts, train voices':>29} {'train texts, held-out voices':>29}" if split else ""))
    for a in audio:
        print(f"{a['arm']:40} {a['steps']:6d} {a['seconds']:8.1f} {a['train_loss_last20']:21.3f} "
              f"{a.get('train_pool_token_error_rate', float('nan')):23.1%} {a['heldout_token_error_rate']:21.1%}"
              + (f" {a['heldout_texts_train_voices_token_error_rate']:29.1%}"
                 f" {a['train_texts_heldout_voices_token_error_rate']:29.1%}" if split else ""))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(1, 2, figsize=(10, 3.5))
        if vision:
            ax[0].plot(vision["losses"])
        ax[0].set(title="ViT slot classification", xlabel="step", ylabel="loss", yscale="log")
        for a in audio:
            ax[1].plot(a["losses"], label=a["arm"])
        ax[1].set(title="audio encoder CTC (words)", xlabel="step", ylabel="loss")
        if audio:
            ax[1].legend()
        fig.tight_layout()
        fig.savefig(os.path.splitext(args.out)[0] + ".png", dpi=100)
    except ImportError:
        print("matplotlib missing: no plot", file=sys.stderr)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    raise SystemExit(main())

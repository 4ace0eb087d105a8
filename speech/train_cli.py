"""`omni train-codec`: train the speech codec on a folder of WAVs or generated speech.

Examples:
    omni train-codec --generate-minutes 15 --data runs/codec_data --out runs/codec --steps 2000
    omni train-codec --data my_wavs/ --resample --out runs/codec --device cuda --time-budget 600
    omni train-codec --data runs/codec_data --out runs/codec --resume --steps 4000
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    p.description = (
        "Train the speech codec (encoder, semantic + acoustic quantizers, streaming decoder) with "
        "multi-resolution STFT + mel reconstruction losses and multi-period / multi-scale-STFT "
        "discriminators. Writes ckpt.pt, codec/ (config.json + model.safetensors, loadable with "
        "speech.Codec.from_pretrained), log.csv, log.json and loss.png into --out."
    )
    d = p.add_argument_group("data")
    d.add_argument("--data", help="folder of WAV files (searched recursively), one WAV, or a packed .npz corpus")
    d.add_argument("--resample", action="store_true", help="resample WAVs whose rate differs from 16 kHz (default: refuse them)")
    d.add_argument("--generate-minutes", type=float, default=0.0,
                   help="first synthesize this many minutes of random speech with espeak-ng (several voices, "
                        "speeds, pitches) into --data (a folder)")
    d.add_argument("--generate-only", action="store_true", help="stop after generating / packing the data")
    d.add_argument("--pack", metavar="FILE.npz", help="also write the loaded audio as one compressed int16 .npz")
    d.add_argument("--data-seed", type=int, default=0, help="seed of the sentence / voice generator")
    d.add_argument("--voice-share", default="", metavar="VOICE=FRACTION[,...]",
                   help="with --generate-minutes: give these espeak-ng voices a fixed share of the utterances, "
                        "e.g. en-us+klatt5=0.35 (the default model's assistant voice) for a codec that must "
                        "reproduce that speaker")
    t = p.add_argument_group("training")
    t.add_argument("--out", default="runs/codec", help="output directory")
    t.add_argument("--flavor", default="default", help="codec config flavor (omni.config: debug, default, longcat)")
    t.add_argument("--steps", type=int, default=2000, help="training steps (0 = only --time-budget)")
    t.add_argument("--time-budget", type=float, default=0.0, help="stop after this many seconds (0 = no limit)")
    t.add_argument("--batch-size", type=int, default=16)
    t.add_argument("--segment-seconds", type=float, default=1.92, help="training crop length")
    t.add_argument("--lr", type=float, default=1e-4, help="generator learning rate (cosine schedule)")
    t.add_argument("--lr-disc", type=float, default=2e-4, help="discriminator learning rate")
    t.add_argument("--adv-start", type=float, default=0.5, help="fraction of the run after which adversarial training starts")
    t.add_argument("--device", default="cuda" if _cuda() else "cpu", help="cpu or cuda")
    t.add_argument("--no-bf16", action="store_true", help="train in float32 on CUDA")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--log-every", type=int, default=10, help="steps between loss log rows")
    t.add_argument("--ckpt-seconds", type=float, default=300.0, help="seconds between checkpoints")
    t.add_argument("--resume", action="store_true", help="continue from --out/ckpt.pt")
    t.add_argument("--init-from", default="", metavar="CKPT", help="start a fresh run (new optimizers and schedule) from these weights")
    t.add_argument("--warmup-steps", type=int, default=100)
    t.add_argument("--no-progress", action="store_true", help="no progress bar")


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def main(args: argparse.Namespace) -> int:
    import os

    from speech.data import load_clips, pack_npz
    from speech.train import Trainer, TrainOptions

    if args.generate_minutes > 0:
        if not args.data:
            raise SystemExit("train-codec: --generate-minutes needs --data FOLDER to write the WAVs into")
        from speech.synth import generate_corpus, parse_voice_shares

        try:
            shares = parse_voice_shares(args.voice_share)
        except ValueError as e:
            raise SystemExit(f"train-codec: --voice-share: {e}")
        generate_corpus(args.data, args.generate_minutes, seed=args.data_seed, progress=not args.no_progress,
                        voice_shares=shares)
    if not args.data:
        raise SystemExit("train-codec: give --data (a folder of WAVs or a .npz), or --generate-minutes with --data")
    if not os.path.exists(args.data):
        raise SystemExit(f"train-codec: --data {args.data}: no such file or folder")
    clips = load_clips(args.data, 16000, args.resample)
    print(f"data: {len(clips)} clips, {sum(len(c) for c in clips) / 16000 / 60:.1f} min from {args.data}")
    if args.pack:
        pack_npz(clips, args.pack)
        print(f"packed into {args.pack} ({os.path.getsize(args.pack) / 1e6:.1f} MB)")
    if args.generate_only:
        return 0
    opts = TrainOptions(
        out_dir=args.out, flavor=args.flavor, steps=args.steps, time_budget=args.time_budget,
        batch_size=args.batch_size, segment_seconds=args.segment_seconds, lr=args.lr, lr_disc=args.lr_disc,
        adv_start=args.adv_start, device=args.device, bf16=not args.no_bf16, seed=args.seed,
        log_every=args.log_every, ckpt_seconds=args.ckpt_seconds, resume=args.resume, init_from=args.init_from,
        warmup_steps=args.warmup_steps, progress=not args.no_progress,
    )
    history = Trainer(opts, clips).run()
    if history:
        first, last = history[0], history[-1]
        print(f"step {last['step']}: mel {first['mel']:.3f} -> {last['mel']:.3f}, stft {first['stft']:.3f} -> {last['stft']:.3f}")
    print(f"codec written to {os.path.join(args.out, 'codec')}")
    return 0

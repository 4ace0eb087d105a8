"""`omni train-codec`: train the speech codec on a folder of WAVs or generated speech.

Examples:
    omni train-codec --generate-minutes 15 --data runs/codec_data --out runs/codec --steps 2000
    omni train-codec --data my_wavs/ --resample --out runs/codec --device cuda --time-budget 600
    omni train-codec --data runs/codec_data --out runs/codec --resume --steps 4000
    # the decoder alone, from the shipped codec: its tokens stay exactly the same
    omni train-codec --data .codec_data/voice_v3.npz --init-from speech/pretrained/default \
        --finetune-decoder --out runs/codec_ft --device cuda --time-budget 450

Also runnable as `python -m speech.train_cli ...` (imports nothing of the omni CLI).
"""

from __future__ import annotations

import argparse

from omni.config import flavor_names


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
    t.add_argument("--flavor", default="default", choices=flavor_names("codec"), help="codec config flavor")
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
    t.add_argument("--init-from", default="", metavar="CKPT|CODEC_DIR",
                   help="start a fresh run (new optimizers and schedule) from these weights: a ckpt.pt, or a codec "
                        "directory such as speech/pretrained/default (its config replaces --flavor; the "
                        "discriminator starts afresh)")
    t.add_argument("--freeze", default="", metavar="PARTS",
                   help="keep these parts fixed, comma-separated: encoder (with the latent BatchNorm), quantizer "
                        "(every codebook); both together keep the codec's tokens exactly as they were")
    t.add_argument("--finetune-decoder", action="store_true",
                   help="train the decoder alone: --freeze encoder,quantizer (needs --init-from or --resume)")
    t.add_argument("--mel-band-weights", default="", metavar="LO-HI:W[,...]",
                   help="weight the mel loss per frequency band in Hz, e.g. 2000-8000:2 (weights are scaled to mean 1)")
    t.add_argument("--mel-onset-weight", type=float, default=0.0,
                   help="weigh the mel loss of the ~150 ms after a speech onset up to 1 + this (scaled to mean 1); "
                        "there the shipped codec's mel error is twice the rest's")
    t.add_argument("--aligned-share", type=float, default=0.0,
                   help="share of the training crops that start where a clip starts (as an utterance decoded alone)")
    t.add_argument("--eval-data", default="", metavar="FILE.npz",
                   help="held-out clips (e.g. from `omni data codec-voice --eval-pack`), each decoded whole and scored (mel L1) before and "
                        "after the run: eval.json")
    t.add_argument("--warmup-steps", type=int, default=100)
    t.add_argument("--no-progress", action="store_true", help="no progress bar")


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def check_arguments(args: argparse.Namespace) -> None:
    """Refuse impossible values before any speech is generated or read."""
    import os

    numbers = (("--batch-size", args.batch_size, 1), ("--steps", args.steps, 0), ("--time-budget", args.time_budget, 0),
               ("--generate-minutes", args.generate_minutes, 0), ("--log-every", args.log_every, 1),
               ("--warmup-steps", args.warmup_steps, 0), ("--ckpt-seconds", args.ckpt_seconds, 0))
    for option, value, lo in numbers:
        if value < lo:
            raise argparse.ArgumentTypeError(f"argument {option}: must be >= {lo}, got {value:g}")
    for option, value in (("--segment-seconds", args.segment_seconds), ("--lr", args.lr), ("--lr-disc", args.lr_disc)):
        if not value > 0:
            raise argparse.ArgumentTypeError(f"argument {option}: must be > 0, got {value:g}")
    if not 0 <= args.adv_start <= 1:
        raise argparse.ArgumentTypeError(f"argument --adv-start: must be in [0, 1], got {args.adv_start:g}")
    if args.steps == 0 and args.time_budget == 0:
        raise argparse.ArgumentTypeError("--steps 0 trains until --time-budget, which is 0 (no limit): give one of them")
    if args.device.startswith("cuda") and not _cuda():
        raise argparse.ArgumentTypeError(f"argument --device: {args.device}: this machine has no CUDA GPU that torch "
                                         "can use; use --device cpu")
    if args.init_from and not (os.path.isfile(args.init_from) or os.path.isdir(args.init_from)):
        raise argparse.ArgumentTypeError(f"argument --init-from: no such file or codec directory: {args.init_from}")
    if args.finetune_decoder and not (args.init_from or args.resume or args.generate_only):
        raise argparse.ArgumentTypeError("--finetune-decoder keeps a trained codec's tokens: give --init-from "
                                         "(e.g. speech/pretrained/default) or --resume")
    for option, value in (("--aligned-share", args.aligned_share), ("--mel-onset-weight", args.mel_onset_weight)):
        if value < 0:
            raise argparse.ArgumentTypeError(f"argument {option}: must be >= 0, got {value:g}")
    if args.aligned_share > 1:
        raise argparse.ArgumentTypeError(f"argument --aligned-share: must be in [0, 1], got {args.aligned_share:g}")
    try:
        from speech.losses import parse_band_weights
        from speech.train import parse_freeze

        parse_freeze(args.freeze)
        parse_band_weights(args.mel_band_weights)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if args.eval_data and not os.path.isfile(args.eval_data):
        raise argparse.ArgumentTypeError(f"argument --eval-data: no such file: {args.eval_data}")
    if args.data and not args.generate_minutes and not os.path.exists(args.data):
        raise argparse.ArgumentTypeError(f"argument --data: {args.data}: no such file or folder")


def main(args: argparse.Namespace) -> int:
    import os

    check_arguments(args)
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
        freeze=("encoder", "quantizer") if args.finetune_decoder else tuple(filter(None, args.freeze.split(","))),
        mel_band_weights=args.mel_band_weights, mel_onset_weight=args.mel_onset_weight,
        aligned_share=args.aligned_share, eval_data=args.eval_data,
    )
    history = Trainer(opts, clips).run()
    if history:
        first, last = history[0], history[-1]
        print(f"step {last['step']}: mel {first['mel']:.3f} -> {last['mel']:.3f}, stft {first['stft']:.3f} -> {last['stft']:.3f}")
    print(f"codec written to {os.path.join(args.out, 'codec')}")
    return 0


if __name__ == "__main__":
    import sys

    parser = argparse.ArgumentParser(prog="python -m speech.train_cli")
    add_arguments(parser)
    try:
        sys.exit(main(parser.parse_args()))
    except argparse.ArgumentTypeError as e:
        parser.error(str(e))

"""`omni chat`: answer one multimodal question from files, in text and speech.

    omni chat --model DIR --video clip.mp4 --audio question.wav --out reply.wav
    omni chat --text "what color is the star?" --image scene.png

The text reply is printed as it streams; the spoken reply is written to --out.
`--think` switches on the thinking mode of checkpoints whose chat template has
one (` /think_on`, omni/sequence.py); the thinking section is printed to stderr
as `[thinking] ...`, apart from the answer, and never spoken (and a tool-call block as
`[tool call] ...`).
Without --model a randomly initialized model of --flavor (default `debug`) is
used, and the command says so: its answers are noise until a trained model is
given.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from omni.commands.argtypes import existing_file, flavor_choices, model_dir, output_file, positive_int
from omni.commands.options import add_sampling_and_device_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = """examples:
  omni chat --model MODEL_DIR --video clip.mp4 --audio question.wav --out reply.wav
  omni chat --text "what color is the star?" --image scene.png   (random debug model)"""
    p.add_argument("--model", type=model_dir, help="model directory (from save_pretrained or `omni convert`)")
    p.add_argument("--flavor", default=None, choices=flavor_choices("omni"),
                   help="build a randomly initialized model of this flavor instead of the default model")
    p.add_argument("--text", help="the question as text")
    p.add_argument("--audio", type=existing_file, help="the question as speech (wav/mp3/flac/...)")
    p.add_argument("--image", type=existing_file, help="an image file")
    p.add_argument("--video", type=existing_file, help="a video file (frames at 2 FPS and its audio track)")
    p.add_argument("--system", help="system prompt")
    p.add_argument("--out", type=output_file, help="write the spoken reply to this WAV file")
    p.add_argument("--no-speech", action="store_true", help="text-only reply (ASSISTANT: prompt)")
    p.add_argument("--think", action="store_true",
                   help="ask for a thinking section first (models whose chat template has the thinking mode)")
    p.add_argument("--max-new-tokens", type=positive_int, default=256, help="LLM steps (default 256)")
    add_sampling_and_device_arguments(p)


def load_model(args):
    import torch

    from omni.config import get_omni_config
    from omni.model import OmniModel

    from omni.defaults import resolve_model

    dtype = torch.bfloat16 if args.dtype == "bfloat16" else None
    model_dir, flavor = resolve_model(args.model, args.flavor)
    if model_dir:
        return OmniModel.from_pretrained(model_dir, device=args.device, dtype=dtype)
    print(
        f"[omni] no --model given and no trained default model shipped: using a randomly initialized "
        f"'{flavor}' model; its replies are noise (pass --model DIR for a trained one)",
        file=sys.stderr,
    )
    torch.manual_seed(args.seed)
    model = OmniModel(get_omni_config(flavor)).eval()
    if dtype is not None:
        model.to_dtype(dtype)
    return model.to(args.device)


def model_config(args):
    """The OmniConfig `load_model(args)` will build, read without loading any weights."""
    from omni.checkpoint import read_omni_config
    from omni.config import get_omni_config
    from omni.defaults import resolve_model

    model_dir, flavor = resolve_model(args.model, args.flavor)
    return read_omni_config(model_dir) if model_dir else get_omni_config(flavor)


def main(args) -> int:
    if not any([args.text, args.audio, args.image, args.video]):
        raise argparse.ArgumentTypeError("give at least one of --text, --audio, --image, --video")
    if args.out and args.no_speech:
        raise argparse.ArgumentTypeError("--out writes the spoken reply, and --no-speech asks for none; drop one")
    import numpy as np
    import torch

    from encoders.media import MediaError
    from omni.generation import GenerationOptions, OmniRequest, stream
    from omni.segments import TextSampling

    try:
        config = model_config(args)
    except (FileNotFoundError, ValueError, KeyError) as e:
        print(f"omni chat: error: cannot load the model: {e}", file=sys.stderr)
        return 2
    if args.think and not config.template.thinking:
        raise argparse.ArgumentTypeError("argument --think: this model's chat template has no thinking mode "
                                         "(its config's template.thinking is false)")
    try:  # read the media before the model: a bad file is refused at once
        req = OmniRequest.from_files(args.text, args.image, args.video, args.audio, args.system, config.vision)
        req.think = True if args.think else None
    except MediaError as e:
        given = {k: getattr(args, k) for k in ("audio", "image", "video") if getattr(args, k)}
        option = next((f"--{k}" for k, v in given.items() if str(Path(v)) == e.path), None)
        raise argparse.ArgumentTypeError(f"argument {option}: {e}" if option else str(e)) from None
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    try:
        model = load_model(args)
    except (FileNotFoundError, ValueError, KeyError) as e:
        print(f"omni chat: error: cannot load the model: {e}", file=sys.stderr)
        return 2
    opts = GenerationOptions(
        max_new_tokens=args.max_new_tokens,
        speech=not args.no_speech,
        text=TextSampling(args.temperature, args.top_k, args.top_p, args.repetition_penalty, seed=args.seed),
        decode_audio=bool(args.out) and not args.no_speech,
    )
    gen = torch.Generator(device=model.device).manual_seed(args.seed) if args.temperature > 0 else None
    t0 = time.perf_counter()
    first = None
    pieces, frames = [], 0
    from omni.reply_stream import SpeechGate

    gate = SpeechGate()  # thinking and tool calls apart from the answer, and never spoken
    for ev in stream(model, req, opts, gen):
        if ev.text:
            first = first or time.perf_counter() - t0
        speech = [(ev.frame, ev.audio)] if ev.frame is not None or (ev.audio is not None and len(ev.audio)) else []
        shown, spoken = gate.step(ev.text, speech, ev.done)
        for piece in shown:
            if piece.kind == "text":
                print(piece.text, end="", flush=True)
            else:
                label = "thinking" if piece.kind == "think" else "tool call"
                print(f"[{label}] {piece.text}" + ("" if piece.complete else " (cut off)"), file=sys.stderr)
        for frame, audio in spoken:
            frames += frame is not None
            if audio is not None and len(audio):
                pieces.append(audio)
    print()
    took = time.perf_counter() - t0
    info = f"[omni] {took:.2f} s, {frames} speech frames ({frames * model.config.codec.hop_length / model.output_sample_rate:.2f} s of audio)"
    if first is not None:
        info += f", first text after {first:.2f} s"
    print(info, file=sys.stderr)
    if args.out and not args.no_speech:
        from speech import save_wav

        wav = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
        save_wav(args.out, wav, model.output_sample_rate)
        print(f"[omni] wrote {args.out} ({len(wav) / model.output_sample_rate:.2f} s)", file=sys.stderr)
    return 0

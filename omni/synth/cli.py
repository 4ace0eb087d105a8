"""`omni data`: generate the synthetic audio-visual world (train / held-out splits,
eval-format sets, tokenizer corpus, GPU training packs, answer codec tokens).

    omni data default --out runs/data            # everything the default model needs
    omni data build --split heldout --out runs/data/heldout --scenes 200 --eval-sets
    omni data pack --data runs/data/train --out runs/data/train.pack.npz --max-mb 30
    omni data validate --data runs/data/heldout
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from omni.commands.argtypes import (existing_dir, existing_file, float_between, int_at_least, int_between,
                                    non_negative_float, output_dir, output_file, positive_float, positive_int)

# Sizes of the default model's data (README "default model" explains the choice).
DEFAULTS = {
    "train": {"scenes": 3000, "renderings": 2},
    "heldout": {"scenes": 200, "renderings": 4},
}
# `omni data default`: the default model's train split (8,000 scenes: 28,800 samples,
# 1,171 question texts in 2,308 recordings, of which the pack keeps 1,221: every text once,
# a 34 MB pack that travels to a GPU machine with the held-out pack, the portable
# espeak-ng and the code under its 64 MB limit; the voice bank adds the other voices there)
DEFAULT_TRAIN_SCENES = 8000
DEFAULT_PACK_MB = 36.0
QUESTIONS_PER_SCENE = 3
SPEECH_RATIO = 0.2
HELDOUT_PACK_SAMPLES = 360


def _focus_spec(spec: str) -> dict[str, int]:
    from .codec_voice import parse_focus

    try:
        return parse_focus(spec)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = __doc__
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    p = sub.add_parser("default", help="write train + held-out splits, eval sets, corpus and packs")
    p.add_argument("--out", type=output_dir, default="runs/data", help="output root (default: runs/data)")
    p.add_argument("--seed", type=int, default=0, help="world seed (default 0)")
    p.add_argument("--train-scenes", type=positive_int, default=DEFAULT_TRAIN_SCENES,
                   help=f"train scenes (default {DEFAULT_TRAIN_SCENES})")
    p.add_argument("--heldout-scenes", type=positive_int, default=DEFAULTS["heldout"]["scenes"], help="held-out scenes (default 200)")
    p.add_argument("--max-mb", type=positive_float, default=DEFAULT_PACK_MB,
                   help=f"size budget of the train pack in MB (default {DEFAULT_PACK_MB:g})")
    p.add_argument("--codec", type=existing_dir, default=None, help="codec directory for answer tokens (default: the shipped codec, if any)")
    _tool_ratio(p)
    _common(p)

    p = sub.add_parser("build", help="write one split: media, spoken questions/answers, manifest")
    p.add_argument("--split", choices=("train", "heldout"), required=True, help="which split")
    p.add_argument("--out", required=True, type=output_dir, help="split directory to write")
    p.add_argument("--seed", type=int, default=0, help="world seed (default 0)")
    p.add_argument("--scenes", type=positive_int, default=None, help="scenes (default: 3000 train, 200 held-out)")
    p.add_argument("--questions-per-scene", type=positive_int, default=QUESTIONS_PER_SCENE, help="visual questions per scene (3)")
    p.add_argument("--speech-ratio", type=non_negative_float, default=SPEECH_RATIO, help="speech-task samples per visual one (0.2)")
    p.add_argument("--renderings", type=positive_int, default=None, help="spoken renderings per question text (2 train, 4 held-out)")
    p.add_argument("--video-fraction", type=float_between(0.0, 1.0), default=0.4, help="share of video scenes (0.4)")
    _tool_ratio(p)
    p.add_argument("--eval-sets", action="store_true", help="also write av_mcq.jsonl and spoken_qa.jsonl")
    _common(p)

    p = sub.add_parser("eval-sets", help="write av_mcq.jsonl + spoken_qa.jsonl (omni eval formats) for a split")
    p.add_argument("--data", required=True, type=existing_dir, help="split directory (holds manifest.jsonl)")

    p = sub.add_parser("corpus", help="write the tokenizer text corpus (one string per line)")
    p.add_argument("--out", required=True, type=output_file, help="output text file")
    p.add_argument("--include-heldout", action="store_true", help="also include held-out wordings")

    p = sub.add_parser("pack", help="pack a split into one compact .npz for GPU training")
    p.add_argument("--data", required=True, type=existing_dir, help="split directory")
    p.add_argument("--out", required=True, type=output_file, help="output .npz")
    p.add_argument("--size", type=positive_int, default=112, help="frame side in pixels (default 112)")
    p.add_argument("--fps", type=positive_float, default=2.0, help="video frames per second in the pack (default 2)")
    p.add_argument("--max-mb", type=non_negative_float, default=30.0, help="size budget in MB; 0 = no limit (default 30)")
    p.add_argument("--limit", type=positive_int, default=None, help="keep N samples, evenly spread (default: all)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")

    p = sub.add_parser("codes", help="tokenize the assistant's spoken answers with the project's codec")
    p.add_argument("--data", required=True, type=existing_dir, help="split directory")
    p.add_argument("--codec", type=existing_dir, default=None, help="codec directory (default: the shipped codec)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")

    p = sub.add_parser("check-voice", help="how well pocketsphinx (answer grammar) hears a voice saying every answer")
    p.add_argument("--voice", default=None, help="espeak-ng voice, e.g. en-us+klatt5 (default: the assistant's)")
    p.add_argument("--speed", type=positive_int, default=None, help="words per minute (default: the assistant's)")
    p.add_argument("--pitch", type=int_between(0, 99), default=None, help="pitch 0-99 (default: the assistant's)")
    p.add_argument("--through-codec", nargs="?", const="", default=None, metavar="CODEC_DIR",
                   help="judge the answers after a codec encode/decode round trip (default codec if no dir)")
    p.add_argument("--renderings", type=int_between(1, 9), default=1, metavar="N",
                   help="judge every answer in N renderings of the voice: its own speed and pitch first, then "
                        "the speed/pitch offsets of omni/synth/recognize.py RENDERING_OFFSETS (default 1)")
    p.add_argument("--min-share", type=float_between(0.0, 1.0), default=0.8,
                   help="with --renderings: an answer passes when heard in at least this share of them (default 0.8)")
    p.add_argument("--with-original", action="store_true",
                   help="with --through-codec: also judge the original speech (tells the codec's misses from the judge's)")
    p.add_argument("--out", type=output_file, default=None, help="also write the result as JSON here")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")

    p = sub.add_parser("codec-voice", help="the assistant's voice saying the world's answers and questions, for "
                       "a codec fine-tune (WAVs + transcripts.tsv; optionally a held-out pack for --eval-data)")
    p.add_argument("--out", required=True, type=output_dir, help="folder for the WAVs (e.g. DATA/world under the "
                   "folder that `omni train-codec --data` reads)")
    p.add_argument("--minutes", type=positive_float, default=14.5, help="minutes of speech (default 14.5)")
    p.add_argument("--answer-share", type=float_between(0.0, 1.0), default=0.9,
                   help="share of the utterances that are answers, every answer in turn; the rest are the "
                        "world's train questions (default 0.9)")
    p.add_argument("--seed", type=int, default=0, help="seed of the speeds, pitches and order (default 0)")
    p.add_argument("--focus", type=_focus_spec, default={}, metavar="ANSWER:TIMES[,...]",
                   help="say these answers that many times a round instead of once, e.g. 'one:8,good morning:4' "
                        "(the answers the codec loses; default: none)")
    p.add_argument("--eval-pack", type=output_file, default=None, metavar="FILE.npz",
                   help="also write a held-out pack for `omni train-codec --eval-data`: label 'assistant' = every "
                        "answer at the voice's own speed and pitch (what check-voice judges), label 'users' = the "
                        "held-out voices of bench/codec_quality.py saying random sentences")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")

    p = sub.add_parser("voice-bank", help="many more spoken renderings of a pack's questions, in voices of their "
                       "own, for training (recipe voice_bank; written where training runs, e.g. the GPU machine)")
    p.add_argument("--pack", required=True, type=existing_file, help="the train pack whose question texts to render")
    p.add_argument("--out", required=True, type=output_file, help="output .npz")
    p.add_argument("--renderings", type=positive_int, default=24, help="renderings per question text (default 24)")
    p.add_argument("--seed", type=int, default=0, help="seed of the voices (default 0)")
    p.add_argument("--timbres", type=int_at_least(0), default=0,
                   help="also speak in this many generated espeak-ng timbres (omni.synth.timbres; default 0: "
                        "the shipped human variants only)")
    p.add_argument("--sentences", type=int_at_least(0), default=0,
                   help="also speak this many random sentences of the pack's words, one clip each (omni.synth.sentences; "
                        "the audio pre-training hears words rather than whole questions; default 0)")
    p.add_argument("--rewordings", type=int_at_least(0), default=0,
                   help="also speak up to this many rewordings of every question text, one clip each "
                        "(omni.synth.rewording: template words dropped, swapped or added, the object phrase kept; "
                        "training hears them as renderings of the question; default 0)")
    from .rewording import STYLES  # light: the world's words, no model
    p.add_argument("--rewording-style", choices=tuple(STYLES), default="neighbour",
                   help="neighbour: words dropped, two neighbours swapped, a prefix or suffix (default); "
                        "wide: also the object phrase said first, a word traded for its synonym, or every "
                        "template word shuffled, so that questions are read by their content words")
    p.add_argument("--workers", type=int_at_least(0), default=0, help="parallel espeak-ng processes (default: all cores)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")

    p = sub.add_parser("demo-scenes", help="held-out stills and spoken questions for the live demo's virtual "
                       "camera (a model directory's demo/ folder)")
    p.add_argument("--data", required=True, type=existing_dir, help="a written held-out split (runs/data/heldout)")
    p.add_argument("--out", required=True, type=output_dir, help="output folder (e.g. omni/pretrained/default/demo)")
    p.add_argument("--model", type=existing_dir, default=None,
                   help="ask every candidate question offline first: right answers come first, and a scene "
                        "needs one (default: no model, questions in split order)")
    p.add_argument("--scenes", type=positive_int, default=10, help="scenes to keep (default 10; write more for "
                   "`python -m demo.check_scenes` to choose from)")
    p.add_argument("--per-scene", type=positive_int, default=3, help="questions per scene (default 3)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")

    p = sub.add_parser("validate", help="check a split: schema, files, decodability, answers vs scenes")
    p.add_argument("--data", required=True, type=existing_dir, help="split directory")
    p.add_argument("--no-decode", action="store_true", help="skip decoding every image/video (faster)")


def _tool_ratio(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tool-ratio", type=non_negative_float, default=0.0,
                   help="requests served by the world's tool (set_light) per visual sample (default 0: none)")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=positive_int, default=2, help="parallel workers for synthesis/rendering (default 2)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _build(out: Path, split: str, seed: int, scenes: int, renderings: int, args, eval_sets: bool) -> dict:
    from .build import build_split
    from .evalsets import write_eval_sets
    from .plan import build_plan

    t0 = time.perf_counter()
    plan = build_plan(
        seed,
        split,
        scenes,
        questions_per_scene=getattr(args, "questions_per_scene", QUESTIONS_PER_SCENE),
        speech_ratio=getattr(args, "speech_ratio", SPEECH_RATIO),
        renderings_per_text=renderings,
        video_fraction=getattr(args, "video_fraction", 0.4),
        tool_ratio=getattr(args, "tool_ratio", 0.0),
    )
    info = build_split(out, plan, workers=args.workers, progress=not args.no_progress)
    if eval_sets:
        info["eval_sets"] = write_eval_sets(out)
    info["wall_s"] = round(time.perf_counter() - t0, 1)
    (out / "info.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def _print_info(name: str, info: dict) -> None:
    print(f"{name}: {info['num_samples']} samples from {info['num_scenes']} scenes, {info['num_clips']} question clips "
          f"({info['audio_seconds']} s), {info['num_answers']} answers, {info.get('wall_s', '?')} s")
    print("  families: " + ", ".join(f"{k} {v}" for k, v in info["families"].items()))


def main(args: argparse.Namespace) -> int:
    try:
        return _main(args)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"omni data {args.data_command}: error: {exc}", file=sys.stderr)
        return 2


def _main(args: argparse.Namespace) -> int:
    cmd = args.data_command
    if cmd == "build":
        split = args.split
        scenes = args.scenes or DEFAULTS[split]["scenes"]
        renderings = args.renderings or DEFAULTS[split]["renderings"]
        _print_info(split, _build(Path(args.out), split, args.seed, scenes, renderings, args, args.eval_sets))
        return 0
    if cmd == "eval-sets":
        from .evalsets import write_eval_sets

        print(json.dumps(write_eval_sets(args.data)))
        return 0
    if cmd == "corpus":
        from .corpus import write_corpus

        print(f"{write_corpus(args.out, args.include_heldout)} lines -> {args.out}")
        return 0
    if cmd == "pack":
        from .packing import write_pack

        s = write_pack(args.data, args.out, args.size, args.fps, args.max_mb or None, not args.no_progress, args.limit)
        print(json.dumps(s))
        return 0
    if cmd == "codes":
        from .codes import encode_answers, load_codec

        print(json.dumps(encode_answers(args.data, load_codec(args.codec), not args.no_progress)))
        return 0
    if cmd == "validate":
        from .validate import validate_split

        problems = validate_split(args.data, decode=not args.no_decode)
        for p in problems:
            print(p)
        print(f"{args.data}: {'OK' if not problems else f'{len(problems)} problems'}")
        return 0 if not problems else 1
    if cmd == "check-voice":
        return _check_voice(args)
    if cmd == "codec-voice":
        from .codec_voice import generate_world_corpus, write_eval_pack

        paths = generate_world_corpus(args.out, args.minutes, seed=args.seed, answer_share=args.answer_share,
                                      progress=not args.no_progress, focus=args.focus)
        print(f"{len(paths)} utterances -> {args.out}")
        if args.eval_pack:
            print(f"eval pack {args.eval_pack}: {json.dumps(write_eval_pack(args.eval_pack, seed=args.seed + 1000))}")
        return 0
    if cmd == "voice-bank":
        return _voice_bank(args)
    if cmd == "demo-scenes":
        from .demo_scenes import write_demo_scenes

        s = write_demo_scenes(args.data, args.out, args.model, args.scenes, args.per_scene,
                              progress=not args.no_progress)
        print(f"demo scenes: {json.dumps(s)} -> {args.out}")
        return 0
    if cmd == "default":
        return _default(args)
    raise ValueError(f"unknown action {cmd!r}")


def _check_voice(args: argparse.Namespace) -> int:
    from .recognize import check_voice
    from .voices import ASSISTANT_VOICE, Voice

    voice = Voice(
        args.voice or ASSISTANT_VOICE.name,
        args.speed or ASSISTANT_VOICE.speed,
        args.pitch if args.pitch is not None else ASSISTANT_VOICE.pitch,
    )
    codec = None
    if args.through_codec is not None:
        from .codes import load_codec

        codec = load_codec(args.through_codec or None)
    res = check_voice(voice, progress=not args.no_progress, codec=codec, renderings=args.renderings,
                      min_share=args.min_share, with_original=args.with_original)
    how = " through the codec" if codec is not None else ""
    if codec is not None:
        res["codec"] = args.through_codec or "speech/pretrained/default"
    import os
    import platform

    res["hardware"] = f"{platform.machine()} CPU, {os.cpu_count()} cores"
    print(f"{voice.key()}{how}: {res['correct']}/{res['answers']} answers recognized ({100 * res['accuracy']:.1f}%)")
    for m in res["misses"]:
        print(f"  said {m['answer']!r}, heard {m['heard']!r}")
    for cond, s in res.get("conditions", {}).items():
        bar = res["bar"]
        rend = ", ".join(f"s{r['speed']}/p{r['pitch']}" for r in res["renderings"])
        print(f"{cond}, {bar['of']} renderings ({rend}): correct per rendering {s['per_rendering_correct']}; "
              f"{res['answers'] - len(s['answers_below_bar'])}/{res['answers']} answers heard >= {bar['min_times']} "
              f"of {bar['of']} times")
        for a in s["answers_below_bar"]:
            print(f"  {a!r}: {s['heard_correct_times'][a]}/{bar['of']}, heard {s['heard'][a]}")
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    return 0


def _voice_bank(args: argparse.Namespace) -> int:
    from .pack import Pack
    from .sentences import random_sentences, vocabulary
    from .voice_bank import VoiceBank, build_voice_bank, write_voice_bank

    t0 = time.perf_counter()
    meta = Pack(args.pack).meta
    texts = sorted(set(meta["clip_texts"]))
    sentences = random_sentences(vocabulary(texts + list(meta["answer_texts"])), args.sentences, args.seed,
                                 exclude=set(texts))
    write_voice_bank(args.out, build_voice_bank(texts, args.renderings, args.seed, args.workers, not args.no_progress,
                                                timbres=args.timbres, sentences=sentences, rewordings=args.rewordings,
                                                rewording_style=args.rewording_style))
    bank = VoiceBank.load(args.out)
    reworded = bank.reworded_clips
    reworded_texts = len(set(bank.meta.get("reworded_of", [])))
    print(f"voice bank: {len(bank)} clips ({len(bank.clip_mulaw) / 16000:.0f} s) of {len(texts)} question texts"
          f"{f', {reworded} rewordings ({args.rewording_style}) of {reworded_texts} of them' if reworded else ''}"
          f"{f' and {bank.sentence_clips} random sentences' if sentences else ''}, "
          f"{len({v.split('/')[0] for v in bank.meta['voices']})} voices, {bank.meta['espeak']}, "
          f"{time.perf_counter() - t0:.1f} s -> {args.out}")
    return 0


def _default(args: argparse.Namespace) -> int:
    from .codes import codec_available, encode_answers, load_codec
    from .corpus import write_corpus
    from .packing import write_pack

    root = Path(args.out)
    summary: dict = {}
    for split, scenes in (("train", args.train_scenes), ("heldout", args.heldout_scenes)):
        info = _build(root / split, split, args.seed, scenes, DEFAULTS[split]["renderings"], args, split == "heldout")
        _print_info(split, info)
        summary[split] = info
    codec = None
    if codec_available():
        try:
            codec = load_codec(args.codec)
        except (FileNotFoundError, ValueError) as exc:
            print(f"answer codec tokens skipped: {exc}")
    else:
        print("answer codec tokens skipped: speech.Codec is not available")
    if codec is not None:
        for split in ("train", "heldout"):
            summary[f"{split}_codes"] = encode_answers(root / split, codec, not args.no_progress)
    print(f"corpus: {write_corpus(root / 'corpus.txt')} lines -> {root / 'corpus.txt'}")
    # The held-out pack is a validation subset for the GPU side; the full held-out
    # set is evaluated from its files (omni eval) on the CPU.
    for split, budget, limit in (("train", args.max_mb, None), ("heldout", None, HELDOUT_PACK_SAMPLES)):
        s = write_pack(root / split, root / f"{split}.pack.npz", max_mb=budget, progress=not args.no_progress, limit=limit)
        print(f"{split} pack: {s['size_mb']} MB, {s['samples']} samples, {s['clips_stored']} clips "
              f"({s['clips_dropped']} dropped for size), codec tokens: {s['answer_codes']}")
        summary[f"{split}_pack"] = s
    (root / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0

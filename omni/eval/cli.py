"""`omni eval`: offline evaluation of a model on a task manifest.

    omni eval --task av-mcq --data DIR --model MODEL_DIR --out REPORT_DIR
    omni eval --task asr --data librispeech-mini --out runs/asr --batch-size 16

Tasks: asr (WER), av-mcq (accuracy overall and per category), spoken-qa
(rule-based: mcq letter / exact match / refusal), speech-out (the model's own
speech transcribed by pocketsphinx vs its text answer: WER). Writes
REPORT_DIR/samples.jsonl (per sample, resumable), summary.json, report.md and
report.png. Manifest formats: see omni/eval/manifest.py or the README.
"""

from __future__ import annotations

import argparse
import json
import sys

from omni.commands.argtypes import device, existing_dir, flavor_choices, model_dir, output_dir, positive_int
from omni.eval.manifest import TASKS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = """examples:
  omni eval --task av-mcq --data runs/data/heldout --model MODEL_DIR --out runs/eval/av-mcq
  omni eval --task asr --data librispeech-mini --out runs/asr --batch-size 16
outputs (in --out): samples.jsonl (per sample; a rerun resumes), summary.json, report.md, report.png"""
    p.add_argument("--task", required=True, choices=TASKS, help="what to evaluate")
    p.add_argument("--data", required=True, type=existing_dir,
                   help="data directory holding <task>.jsonl (or manifest.jsonl) and the media")
    p.add_argument("--model", type=model_dir,
                   help="model directory (default: the shipped default model, else a random `debug` model)")
    p.add_argument("--flavor", default=None, choices=flavor_choices("omni"),
                   help="evaluate a randomly initialized model of this flavor instead")
    p.add_argument("--out", required=True, type=output_dir, help="report directory (rerun with the same --out to resume)")
    p.add_argument("--batch-size", type=positive_int, default=8, help="samples per batched generation (default 8)")
    p.add_argument("--max-new-tokens", type=positive_int, default=64, help="LLM steps per answer (default 64)")
    p.add_argument("--limit", type=positive_int, help="only the first N samples")
    p.add_argument("--retry-failed", action="store_true", help="run samples that failed before again")
    p.add_argument("--device", type=device(), default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--seed", type=int, default=0)


def main(args) -> int:
    from omni.commands.chat import load_model
    from omni.eval.manifest import ManifestError, load_manifest
    from omni.eval.runner import run_eval

    try:  # a missing or broken manifest is refused before the model loads
        load_manifest(args.data, args.task)
    except ManifestError as e:
        raise argparse.ArgumentTypeError(f"argument --data: {e}") from None
    try:
        model = load_model(args)
    except (FileNotFoundError, ValueError, KeyError) as e:
        print(f"omni eval: error: cannot load the model: {e}", file=sys.stderr)
        return 2
    from omni.defaults import resolve_model

    model_dir, flavor = resolve_model(args.model, args.flavor)
    name = model_dir or f"random:{flavor}:seed{args.seed}"
    try:
        summary = run_eval(
            args.task, args.data, model, args.out, model_name=name, batch_size=args.batch_size,
            max_new_tokens=args.max_new_tokens, limit=args.limit, retry_failed=args.retry_failed,
        )
    except (ManifestError, ValueError) as e:
        print(f"omni eval: error: {e}", file=sys.stderr)
        return 2
    keys = ("task", "num_samples", "num_scored", "num_failed", "wer", "accuracy")
    print(json.dumps({k: summary.get(k) for k in keys if k in summary}, indent=2))
    print(f"report: {args.out}/report.md", file=sys.stderr)
    return 0

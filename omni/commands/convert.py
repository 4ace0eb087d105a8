"""`omni convert --from longcat-omni SRC DST`: official release -> one OmniModel directory.

    omni convert --from longcat-omni ./LongCat-Flash-Omni ./omni-longcat --dtype bfloat16
    omni chat --model ./omni-longcat --text "hello"

SRC is the official layout (config.json + LLM safetensors, vision/*.pt,
audio/*.pt, audio/audio_embeddings.pt, audio/audio_output_layers.pt,
audio_codec/config.yaml + decoder weights, tokenizer files). Missing files or
keys are reported by name. The converted model runs at any size the machine can
hold: the real 560B model needs a multi-GPU machine to run, not to convert
(conversion needs the weights in host memory once).
"""

from __future__ import annotations

import argparse
import sys

from omni.commands.argtypes import existing_dir, output_dir

FORMATS = ("longcat-omni",)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = """examples:
  omni convert --from longcat-omni ./LongCat-Flash-Omni ./omni-longcat --dtype bfloat16
  omni chat --model ./omni-longcat --text hello"""
    p.add_argument("--from", dest="source_format", required=True, choices=FORMATS, help="layout of SRC")
    p.add_argument("src", type=existing_dir, help="official checkpoint directory")
    p.add_argument("dst", type=output_dir, help="output model directory")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None,
                   help="store the weights in this dtype (default: as loaded)")


def main(args) -> int:
    import torch

    from omni.convert import convert_longcat_omni

    dtype = None if args.dtype is None else getattr(torch, args.dtype)
    try:
        cfg = convert_longcat_omni(args.src, args.dst, dtype=dtype)
    except (FileNotFoundError, KeyError, ValueError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"omni convert: error: {msg}", file=sys.stderr)
        return 2
    print(
        f"converted {args.src} -> {args.dst}: LLM {cfg.llm.num_layers} layers x {cfg.llm.hidden_size}, "
        f"vision {cfg.vision.num_layers} layers, audio encoder {cfg.audio.num_layers} layers, "
        f"codec {cfg.codec.semantic_codebook_size} semantic + {cfg.codec.acoustic_codebooks} acoustic books"
    )
    return 0

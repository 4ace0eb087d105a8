"""`omni generate`: text generation with the LongCat-Flash backbone alone.

    omni generate --flavor debug --prompt "Hello"            # random weights, seeded
    omni generate --checkpoint DIR --prompt "Hello" --max-new-tokens 64 --temperature 0.7 --top-p 0.9

DIR is a backbone saved by `omni.llm.save_pretrained` or a transformers
`LongcatFlashForCausalLM.save_pretrained` directory. Text is tokenized with
`--tokenizer DIR` (a local Hugging Face tokenizer; nothing is downloaded), else
with a byte-level fallback (token id = byte + 4, ids 0-3 reserved for
unk/bos/eos/pad) that needs a vocabulary of at least 260.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from omni.commands.argtypes import existing_dir, flavor_choices, positive_int
from omni.commands.options import add_sampling_and_device_arguments

BYTE_OFFSET = 4


class ByteTokenizer:
    """UTF-8 bytes as tokens: id = byte + 4; bos 1, eos 2."""

    bos_token_id = 1
    eos_token_id = 2

    def __init__(self, vocab_size: int) -> None:
        if vocab_size < 256 + BYTE_OFFSET:
            raise ValueError(
                f"the byte-level fallback tokenizer needs vocab_size >= {256 + BYTE_OFFSET}, the model has "
                f"{vocab_size}; pass --tokenizer DIR"
            )

    def encode(self, text: str) -> list[int]:
        return [self.bos_token_id] + [b + BYTE_OFFSET for b in text.encode("utf-8")]

    def decode(self, ids: list[int]) -> str:
        data = bytes(i - BYTE_OFFSET for i in ids if BYTE_OFFSET <= i < 256 + BYTE_OFFSET)
        return data.decode("utf-8", errors="replace")


class HFTokenizer:
    def __init__(self, path: str) -> None:
        from transformers import AutoTokenizer

        try:
            self.tok = AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=False)
        except Exception as e:  # transformers raises many kinds here
            raise ValueError(f"--tokenizer {path!r}: cannot load a tokenizer from it ({e})") from e
        self.eos_token_id = self.tok.eos_token_id

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text)

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids, skip_special_tokens=True)


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument("--flavor", default=None, choices=flavor_choices("llm"),
                     help="backbone flavor with random (seeded) weights, e.g. debug, a1b")
    src.add_argument("--checkpoint", type=existing_dir, default=None,
                     help="backbone directory (ours or transformers' save_pretrained)")
    p.add_argument("--prompt", required=True, help="text to continue")
    p.add_argument("--tokenizer", type=existing_dir, default=None,
                   help="local Hugging Face tokenizer directory (default: bytes)")
    p.add_argument("--max-new-tokens", type=positive_int, default=32, help="tokens to generate (default 32)")
    add_sampling_and_device_arguments(p)
    p.add_argument("--decode", choices=DECODE_MODES, default="auto",
                   help="the decode step: eager; graph (replayed as a CUDA graph, cuda only); compiled (the "
                        "decoder layers compiled with torch.compile, then replayed as a CUDA graph on cuda; "
                        "the first step compiles, ~10 s on a GPU); auto (default): compiled on cuda, eager on cpu")
    p.add_argument("--cuda-graph", action="store_true", help="the same as --decode graph")
    p.add_argument("--ids", action="store_true", help="also print the generated token ids")


DECODE_MODES = ("auto", "eager", "graph", "compiled")


def decode_mode(requested: str, device: str) -> str:
    """The decode path for a device: "auto" is the fastest measured one, compiled layers
    replayed in a CUDA graph on a GPU (bench/gpu_backbone.sh), the eager step on a CPU."""
    on_cuda = torch.device(device).type == "cuda"
    if requested == "auto":
        return "compiled" if on_cuda else "eager"
    if requested == "graph" and not on_cuda:
        raise argparse.ArgumentTypeError("--decode graph (--cuda-graph) needs --device cuda")
    return requested


def check_compiled(device: str, dtype: str) -> None:
    """On a CPU the compiled step's experts are torch's grouped matmul, which compiles for
    bf16 only (the fp32 fallback sizes its buffers from the routing, on the host)."""
    if torch.device(device).type != "cuda" and dtype != "bfloat16":
        raise argparse.ArgumentTypeError("--decode compiled on a CPU needs --dtype bfloat16")


def main(args: argparse.Namespace) -> int:
    mode = decode_mode("graph" if args.cuda_graph else args.decode, args.device)
    if mode == "compiled":
        check_compiled(args.device, args.dtype)
    from omni.config import get_llm_config
    from omni.llm import LongcatFlashForCausalLM, from_pretrained
    from omni.llm.generation import generate
    from omni.llm.sampling import SamplingConfig

    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[args.dtype]
    try:
        sampling = SamplingConfig(args.temperature, args.top_k, args.top_p, args.repetition_penalty)
        if args.checkpoint:
            model = from_pretrained(args.checkpoint, dtype=dtype, device=args.device)
        else:
            torch.manual_seed(args.seed)
            model = LongcatFlashForCausalLM(get_llm_config(args.flavor or "debug")).eval()
            model.to_dtype(dtype).to(args.device)
        cfg = model.config
        tok = HFTokenizer(args.tokenizer) if args.tokenizer else ByteTokenizer(cfg.vocab_size)
        ids = tok.encode(args.prompt)
        if not ids:
            raise ValueError("--prompt encodes to no tokens")
        if max(ids) >= cfg.vocab_size:
            raise ValueError(f"the tokenizer produced id {max(ids)} but the model's vocab_size is {cfg.vocab_size}")
    except (ValueError, KeyError, FileNotFoundError) as e:
        print(f"omni generate: error: {e}", file=sys.stderr)
        return 2
    on_cuda = torch.device(args.device).type == "cuda"

    def run(mode: str) -> list[int]:
        gen = torch.Generator(device=args.device).manual_seed(args.seed)
        return generate(
            model, [ids], args.max_new_tokens, sampling, eos_token_id=tok.eos_token_id,
            use_graph=mode == "graph" or (mode == "compiled" and on_cuda), generator=gen,
            progress=sys.stderr.isatty(), eager_prefill=mode == "compiled",
        )[0]

    from omni.llm.runner import compile_layers, uncompile_layers

    compile_failed: tuple = ()
    if mode == "compiled":
        from torch._dynamo.exc import TorchDynamoException

        # only the default falls back: a compiled decode asked for by name fails with its error
        compile_failed = (TorchDynamoException,) if args.decode == "auto" and not args.cuda_graph else ()
        compile_layers(model)  # one layer body, compiled at the first decode step (its one shape)
    t0 = time.perf_counter()
    try:
        out = run(mode)
    except compile_failed as e:
        # the default's compile failed on this machine (no compiler, an unsupported GPU, ...):
        # the same decode uncompiled rather than no answer
        mode = "graph" if on_cuda else "eager"
        root = e  # the compiler's own error, under torch's wrappers
        while getattr(root, "inner_exception", None) is not None or root.__cause__ is not None:
            root = getattr(root, "inner_exception", None) or root.__cause__
        first = (str(root).strip().splitlines() or [""])[0][:200]
        print(f"omni generate: compiling the decoder layers failed ({type(root).__name__}: {first}); "
              f"decoding uncompiled (--decode {mode})", file=sys.stderr)
        uncompile_layers(model)
        torch._dynamo.reset()
        t0 = time.perf_counter()
        out = run(mode)
    dt = time.perf_counter() - t0
    print(tok.decode(out))
    if args.ids:
        print("ids:", out)
    print(f"[{len(ids)} prompt + {len(out)} new tokens in {dt:.2f} s, decode {mode}]", file=sys.stderr)
    return 0

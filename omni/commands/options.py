"""Command-line options shared by the generating subcommands (`generate`, `chat`)."""

from __future__ import annotations

import argparse

from omni.commands.argtypes import device, float_at_least, float_between, non_negative_float, non_negative_int


def add_sampling_and_device_arguments(p: argparse.ArgumentParser) -> None:
    """Text sampling (greedy by default), seed, device and dtype."""
    p.add_argument("--temperature", type=non_negative_float, default=0.0,
                   help="text sampling temperature (0 = greedy, default)")
    p.add_argument("--top-k", type=non_negative_int, default=0, help="keep the k most likely tokens (0 = off)")
    p.add_argument("--top-p", type=float_between(0.0, 1.0, lo_open=True), default=1.0,
                   help="nucleus sampling mass, in (0, 1] (1 = off)")
    p.add_argument("--repetition-penalty", type=float_at_least(0.0, strict=True), default=1.0,
                   help="exponential penalty for recently seen text tokens (1 = off)")
    p.add_argument("--seed", type=int, default=0, help="seed for random weights and sampling")
    p.add_argument("--device", type=device(), default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="weight / inference dtype")

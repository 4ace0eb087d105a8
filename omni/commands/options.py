"""Command-line options shared by the generating subcommands (`generate`, `chat`)."""

from __future__ import annotations

import argparse


def add_sampling_and_device_arguments(p: argparse.ArgumentParser) -> None:
    """Text sampling (greedy by default), seed, device and dtype."""
    p.add_argument("--temperature", type=float, default=0.0, help="text sampling temperature (0 = greedy, default)")
    p.add_argument("--top-k", type=int, default=0, help="keep the k most likely tokens (0 = off)")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (1 = off)")
    p.add_argument("--repetition-penalty", type=float, default=1.0,
                   help="exponential penalty for recently seen text tokens (1 = off)")
    p.add_argument("--seed", type=int, default=0, help="seed for random weights and sampling")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="weight / inference dtype")

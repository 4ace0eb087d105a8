"""What the tests of many streams through one codec decoder share: random codes, each
stream decoded alone (the reference), and the decoders they run on."""

from __future__ import annotations

import torch

from omni.config import get_flavor
from speech import DEFAULT_DIR, Codec
from speech.decoder import CodecDecoder

ATOL = 1e-5  # fp32: a batched matmul may round differently from a batch-1 one
DECODERS = ["shipped", "random"]


def stream_codes(cfg, frames: int, seed: int) -> torch.Tensor:
    """[4, frames] valid codes of `cfg`'s codebooks."""
    g = torch.Generator().manual_seed(seed)
    sizes = [cfg.semantic_codebook_size] + [cfg.acoustic_codebook_size] * cfg.acoustic_codebooks
    return torch.stack([torch.randint(0, n, (frames,), generator=g) for n in sizes], 0)


def decode_alone(dec: CodecDecoder, codes: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The stream decoded by itself, frame by frame: (each step's audio, the flushed tail)."""
    state = dec.init_state(1)
    steps = [dec.step(codes[None, :, t], state)[0] for t in range(codes.shape[-1])]
    return steps, dec.flush(state)[0]


def make_decoder(kind: str) -> CodecDecoder:
    """"shipped": the shipped codec's inference decoder; "random": a debug-sized decoder in
    training form (weights not snapshotted)."""
    if kind == "shipped":
        return Codec.from_pretrained(DEFAULT_DIR).streaming_decoder()
    torch.manual_seed(0)
    return CodecDecoder(get_flavor("codec", "debug")).eval()

"""The whole codec: encoder + semantic and acoustic quantizers + streaming decoder.

Token layout per 60 ms frame: codes[:, 0] is the semantic book (values
0 .. semantic_codebook_size - 1), codes[:, 1:4] the three acoustic residual books
(0 .. S*S - 1, written a * S + b). Values carry no offset (the LLM adds its own).

For our own codecs the semantic book is the FIRST residual stage over the
encoder latent (`SemanticQuantizer`), trained jointly with the acoustic stages;
its embedding table is folded into the decoder's `semantic_dequantizer` before
any decode from indices (`sync_semantic_table`). Why not a semantic tokenizer
distilled from an ASR model, as the official codec does: none ships with this
repository and a few GPU minutes do not train one; the first RVQ stage carries
the coarse spectral envelope (and with it most of the phonetic content), which
is what the LLM's first audio head should predict.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from omni.config import CodecConfig
from speech.decoder import CodecDecoder
from speech.encoder import Encoder
from speech.quantizer import SemanticQuantizer


class CodecModel(nn.Module):
    def __init__(self, cfg: CodecConfig) -> None:
        super().__init__()
        if math.prod(cfg.enc_ratios) != cfg.hop_length:
            raise ValueError(f"CodecConfig.enc_ratios {cfg.enc_ratios} multiply to {math.prod(cfg.enc_ratios)}, not hop_length {cfg.hop_length}")
        if cfg.num_codebooks != 1 + cfg.acoustic_codebooks:
            raise ValueError(f"CodecConfig.num_codebooks ({cfg.num_codebooks}) must be 1 + acoustic_codebooks ({cfg.acoustic_codebooks})")
        self.cfg = cfg
        self.encoder = Encoder(cfg.encoder_dim, tuple(cfg.enc_ratios), cfg.codec_dimension)
        # The encoder's Snake activations (x + sin^2) add a positive offset per
        # channel that grows with depth until it dwarfs the frame-to-frame
        # variation; a cosine search then maps every frame to the same row
        # (observed in a GPU run: 5 of 1024 rows used). Batch-normalizing the
        # latent (running statistics at inference) removes the offset.
        self.latent_norm = nn.BatchNorm1d(cfg.codec_dimension)
        self.semantic_quantizer = SemanticQuantizer(
            cfg.codec_dimension, cfg.semantic_dim, cfg.semantic_codebook_size, cfg.semantic_codebook_dim
        )
        self.decoder = CodecDecoder(cfg)
        self.sync_semantic_table()

    @property
    def hop_length(self) -> int:
        return self.cfg.hop_length

    def pad(self, wav: torch.Tensor) -> torch.Tensor:
        """Right-pad [B, N] with zeros to a whole number of frames."""
        extra = (-wav.shape[-1]) % self.hop_length
        return F.pad(wav, (0, extra)) if extra else wav

    def quantize(self, wav: torch.Tensor):
        """wav [B, N] -> (decoder latents [B, Ds + D, T], codes [B, 4, T], commitment, codebook loss)."""
        z = self.latent_norm(self.encoder(self.pad(wav)))
        sem_emb, sem_latent, sem_idx, c0, b0 = self.semantic_quantizer(z)
        ac_q, ac_codes, c1, b1 = self.decoder.acoustic_quantizer(z - sem_latent)
        latents = torch.cat([sem_emb, ac_q], dim=1)
        codes = torch.cat([sem_idx.unsqueeze(1), ac_codes], dim=1)
        return latents, codes, c0 + c1, b0 + b1

    def forward(self, wav: torch.Tensor):
        """Training pass: wav [B, N] -> (reconstruction [B, N'], codes, commitment, codebook loss)."""
        latents, codes, commit, cbl = self.quantize(wav)
        return self.decoder.decode_latents(latents), codes, commit, cbl

    @torch.no_grad()
    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        """wav [B, N] float in [-1, 1] -> codes [B, 4, ceil(N / hop)] int64."""
        return self.quantize(wav)[1].long()

    @torch.no_grad()
    def sync_semantic_table(self) -> None:
        """Copy out_proj(codebook) into the decoder's semantic embedding table."""
        self.decoder.semantic_dequantizer.dequant.weight.copy_(self.semantic_quantizer.embedding_table())

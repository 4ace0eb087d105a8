"""The training model is the serving model: `OmniTrainModel` is `omni.model.OmniModel`
(its construction, initialization, checks and submodule names, so a trained state
dict is a serving checkpoint by construction) plus the calls of a training step.

Those calls are shaped for modality-decoupled training: the encoders, the input
embedding, the decoder layers and the heads are separate calls so that the trainer
can run each phase on the ranks that own it (encoders everywhere, embedding on
pipeline stage 0, layers per stage, heads and loss on the last stage).

Input embedding of a position (spec 1.5): TextEmb(id) (zero for the text pad)
plus the four codec embeddings (zero for codec pad); positions holding
`<|image_pad|>` / `<|audio_pad|>` are replaced by the encoder outputs, in order.
Audio heads (`omni.heads.AudioHead`) are teacher-forced with depth conditioning:
head k+1 sees h + sum_{j<=k} E_j(code_j of the target frame).

No torch.distributed here; parallelism is applied from outside (`mdp.parallelize`,
`mdp.ep`, `mdp.pipeline`), and so is what only training needs: encoders the
recipe's data never uses are dropped, pipeline stages replace what they do not
own with `Absent`.
"""

from __future__ import annotations

import torch
import torch.utils.checkpoint
from torch import nn

from mdp.loss import stage1_loss
from omni.config import OmniConfig
from omni.embedding import embed_rows
from omni.llm.context import build_context
from omni.model import OmniModel


class Absent(nn.Module):
    """Stands in for a submodule another pipeline stage owns (keeps indices / names stable)."""

    def forward(self, *a, **k):  # pragma: no cover - never called
        raise RuntimeError("this submodule lives on another pipeline stage")


class OmniTrainModel(OmniModel):
    """OmniModel with the training step's calls; `modalities` names the data kinds
    the run sees: an encoder none of them needs is not kept (no memory, no
    collectives for it)."""

    def __init__(self, cfg: OmniConfig, modalities: tuple[str, ...] = ("image", "video", "audio")) -> None:
        super().__init__(cfg)
        if not any(m in modalities for m in ("image", "video")):
            del self.vision
        if "audio" not in modalities:
            del self.audio_encoder

    @property
    def cfg(self) -> OmniConfig:
        return self.config

    @property
    def encoders(self) -> dict[str, nn.Module]:
        """The encoders this model has, by name, in a fixed order."""
        out = {}
        if hasattr(self, "vision"):
            out["vision"] = self.vision
        if hasattr(self, "audio_encoder"):
            out["audio"] = self.audio_encoder
        return out

    # --- encoders --------------------------------------------------------------

    @staticmethod
    def encoder_for(kind: str) -> str:
        return "vision" if kind in ("image", "video") else "audio"

    def num_tokens(self, kind: str, data: dict) -> int:
        if kind == "image":
            h, w = data["grid"]
            return int(h) * int(w) // 2
        if kind == "video":
            return sum(int(h) * int(w) // 2 for h, w in data["grids"])
        if kind == "audio":
            return int(self.encoders["audio"].num_frames(int(data["pcm"].shape[-1])))
        raise ValueError(f"unknown modality {kind!r}")

    @staticmethod
    def cost(kind: str, data: dict) -> float:
        """Encoder work estimate for BalanceData: quadratic in patches for the ViT, linear for audio."""
        if kind in ("image", "video"):
            n = data["patches"].shape[0]
            return float(n) + n * n / 256.0
        return float(data["pcm"].shape[-1]) / 160.0

    def encode(self, kind: str, items: list[dict]) -> list[torch.Tensor]:
        """Encode items of one encoder; returns [tokens_i, H] per item (same order)."""
        if kind == "vision":
            enc = self.encoders["vision"]
            grids: list[tuple[int, int]] = []
            for d in items:
                grids += [tuple(d["grid"])] if "grid" in d else [tuple(g) for g in d["grids"]]
            patches = torch.cat([d["patches"] for d in items]).to(enc.device, enc.dtype)
            out = enc(patches, grids)
            sizes = [self.num_tokens("image" if "grid" in d else "video", d) for d in items]
            return list(out.split(sizes))
        enc = self.encoders["audio"]
        # one padded call per step: every rank makes the same number of encoder calls
        # (HSDP collectives), and bucketed lengths limit distinct kernel shapes
        lens = [int(d["pcm"].shape[-1]) for d in items]
        bucket = self.cfg.audio.samples_per_frame * 4
        width = -(-max(lens) // bucket) * bucket
        pcm = torch.zeros(len(items), width, device=items[0]["pcm"].device)  # where the clips are
        for i, d in enumerate(items):
            pcm[i, : lens[i]] = d["pcm"].to(torch.float32)
        y, frames = enc(pcm, torch.tensor(lens))
        return [y[i, : int(frames[i])] for i in range(len(items))]

    def dummy_item(self, kind: str) -> dict:
        """Smallest valid input of an encoder: ranks without data still run the encoder
        so that its sharded parameters' collectives happen on every rank."""
        if kind == "vision":
            c = self.cfg.vision
            return {"patches": torch.zeros(4, c.patch_dim), "grid": (2, 2)}
        c = self.cfg.audio
        return {"pcm": torch.zeros(c.samples_per_frame * 2)}

    # --- LLM pieces ------------------------------------------------------------

    def embed_placeholders(self, ids: torch.Tensor, codec: torch.Tensor, modality: torch.Tensor | None,
                           placeholder: torch.Tensor) -> torch.Tensor:
        """ids [B, T], codec [B, T, 4], modality [P, H] for the P placeholder positions
        (`OmniModel.embed` takes features per item; a pipeline stage gets them packed)."""
        pad = self.cfg.llm.pad_token_id
        # one call per embedding module: FSDP2 units expect one forward per step
        e = embed_rows(self.llm.model.embed_tokens, self.audio_embedding, ids, codec, pad)
        n = int(placeholder.sum())
        if n:
            if modality is None or modality.shape[0] != n:
                got = 0 if modality is None else modality.shape[0]
                raise ValueError(f"{n} placeholder positions but {got} encoder embeddings")
            b, t = placeholder.nonzero(as_tuple=True)
            e = e.index_put((b, t), modality.to(e.dtype))
        return e

    def layer_ids(self) -> list[int]:
        return [i for i, l in enumerate(self.llm.model.layers) if not isinstance(l, Absent)]

    def run_layers(self, x: torch.Tensor, final_norm: bool, recompute: bool = False) -> torch.Tensor:
        """The decoder layers this module holds (all, or one pipeline stage's). `recompute`:
        each layer keeps only its input for the backward and runs its forward again there
        (activation checkpointing: a mini layer keeps ~50x its input's bytes, bench/train_memory.py)."""
        c = self.cfg.llm
        ctx = build_context(x.shape[0], x.shape[1], c.qk_rope_head_dim, c.rope_theta, x.device)
        for i in self.layer_ids():
            layer = self.llm.model.layers[i]
            if recompute and torch.is_grad_enabled():
                x = torch.utils.checkpoint.checkpoint(layer, x, ctx, use_reentrant=False)
            else:
                x = layer(x, ctx)
        return self.llm.model.norm(x) if final_norm else x

    def loss_from_hidden(self, h: torch.Tensor, labels: torch.Tensor, counts: torch.Tensor,
                         stats: list | None = None, word_weight: float = 1.0,
                         answer_weight: float = 1.0, audio_rows: torch.Tensor | None = None) -> torch.Tensor:
        """h [B, T, H] after the final norm; labels [B, T, 8] (`mdp.loss.pack_labels`);
        `stats`, `word_weight` and `answer_weight` as in `mdp.loss.stage1_loss`. `audio_rows`
        (flat positions b * T + t holding every audio label): the audio heads run on those
        only (the same loss; the others' logits would be computed and ignored)."""
        text_logits = self.llm.lm_head(h)
        # teacher forcing: head k sees the target codes of heads < k (ignored labels are skipped)
        if audio_rows is None:
            audio_logits = self.audio_head(h, labels[..., 2:6])
        else:
            spoken = labels.flatten(0, 1).index_select(0, audio_rows)
            audio_logits = self.audio_head(h.flatten(0, 1).index_select(0, audio_rows), spoken[..., 2:6])
        return stage1_loss(text_logits, audio_logits, labels, counts, stats, self.cfg.llm.pad_token_id, word_weight,
                           answer_weight, audio_rows)

    def moe_layers(self) -> list[nn.Module]:
        return [self.llm.model.layers[i].mlp for i in self.layer_ids()]

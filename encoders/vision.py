"""The vision encoder as the rest of the system uses it: LongCat-ViT + projector,
one call from a list of images / frame pairs to a list of LLM-width embeddings.

    enc = VisionEncoder(get_flavor("vision", "debug"))
    embs = enc.encode([pil_image, np_frame, *preprocess_video(frames, cfg)])
    # embs[i]: [num_tokens_i, cfg.out_dim]

All units of one call run as a single packed sequence (variable-length
attention, no padding), which gives the same features as encoding each alone.
"""

from __future__ import annotations

from typing import Sequence, Union

import torch
from torch import nn

from encoders.image_processing import ImageLike, VisualUnit, preprocess_image
from encoders.vision_projector import VisionProjector, cap_tokens, token_grid
from encoders.vit import LongCatViT
from omni.config import VisionConfig

VisualItem = Union[VisualUnit, ImageLike]


class VisionEncoder(nn.Module):
    """Holds `vit` (keys of vision_model.pt) and `projector` (keys of vision_projector.pt)."""

    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.vit = LongCatViT(cfg)
        self.projector = VisionProjector(cfg)

    @property
    def device(self) -> torch.device:
        return self.projector.proj.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.projector.proj.weight.dtype

    def prepare(self, items: Sequence[VisualItem]) -> list[VisualUnit]:
        """Images (PIL / HxWx3 uint8) become units; units pass through."""
        if not items:
            raise ValueError("no images or frames to encode")
        return [it if isinstance(it, VisualUnit) else preprocess_image(it, self.cfg) for it in items]

    def forward(self, patches: torch.Tensor, grids: list[tuple[int, int]]) -> torch.Tensor:
        """Packed patches [total, patch_dim] -> packed embeddings [total / 2, out_dim]."""
        return self.projector(self.vit(patches, grids), grids)

    def forward_padded(self, patches: torch.Tensor, grids: list[tuple[int, int]]) -> torch.Tensor:
        """Same result as `forward`, batching by padding to the longest (benchmark baseline)."""
        return self.projector(self.vit.forward_padded(patches, grids), grids)

    @torch.no_grad()
    def encode(
        self, items: Sequence[VisualItem], max_tokens: int | None = None, padded: bool = False
    ) -> list[torch.Tensor]:
        """Encode a list of images / frame pairs in one packed pass.

        max_tokens: optional budget over all items (e.g. cfg.max_video_tokens for
        a video): token grids are shrunk by bilinear interpolation to fit.
        Returns one [num_tokens_i, out_dim] tensor per item.
        """
        units = self.prepare(items)
        grids = [u.grid for u in units]
        patches = torch.cat([u.patches for u in units]).to(self.device, self.dtype)
        out = (self.forward_padded if padded else self.forward)(patches, grids)
        embeds = list(out.split([u.num_tokens for u in units]))
        if max_tokens is not None:
            embeds, _ = cap_tokens(embeds, [token_grid(g) for g in grids], max_tokens)
        return embeds

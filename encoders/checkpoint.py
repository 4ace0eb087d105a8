"""Loading the official LongCat-Flash-Omni encoder files.

Module parameter names equal the release's keys, so loading is a strict
``load_state_dict`` per file (no renaming):

    vision/vision_model.pt      -> VisionEncoder.vit
    vision/vision_projector.pt  -> VisionEncoder.projector
    audio/audio_encoder.pt      -> StreamingAudioEncoder.encoder
    audio/audio_projector.pt    -> StreamingAudioEncoder.projector
    audio/global_cmvn           -> StreamingAudioEncoder.frontend.cmvn (Kaldi stats)

The config readers map the release's ``vision/config.json`` / ``audio/config.json``
field names onto our dataclasses.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from torch import nn

from omni.config import AudioEncoderConfig, VisionConfig

VISION_FILES = {"vit": "vision/vision_model.pt", "projector": "vision/vision_projector.pt"}
AUDIO_FILES = {"encoder": "audio/audio_encoder.pt", "projector": "audio/audio_projector.pt"}
AUDIO_CMVN = "audio/global_cmvn"

# release field name -> our field name
_VISION_FIELDS = {
    "hidden_size": "hidden_size",
    "intermediate_size": "intermediate_size",
    "num_hidden_layers": "num_layers",
    "num_attention_heads": "num_heads",
    "patch_size": "patch_size",
    "temporal_patch_size": "temporal_patch_size",
    "num_channels": "num_channels",
    "rope_theta": "rope_theta",
    "layer_norm_eps": "norm_eps",
    "initializer_factor": "layerscale_init",
    "qk_normalization": "qk_normalization",
    "resize_factor": "resize_factor",
    "min_tokens": "min_tokens",
    "max_tokens": "max_tokens",
    "image_mean": "image_mean",
    "image_std": "image_std",
    "adaptor_dim": "adaptor_dim",
    "max_tokens_video": "max_video_tokens",
}
_AUDIO_FIELDS = {
    "hidden_size": "hidden_size",
    "proj_size": "proj_size",
    "vocab_size": "ctc_vocab_size",
    "nlayer": "num_layers",
    "num_right_layers": "num_right_layers",
    "left_order": "left_order",
    "right_order": "right_order",
    "left_stride": "memory_dilation",
    "dropout": "dropout",
}


def load_state_file(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint file not found")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for bad pickles / zip files
        raise ValueError(f"{path}: not a readable torch state dict ({type(e).__name__}: {e})") from None
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError(f"{path}: expected a flat dict of tensors")
    return sd


def load_into(module: nn.Module, path: str | Path) -> None:
    """Strict load of one file; mismatches name the file and the keys."""
    sd = load_state_file(path)
    try:
        module.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise ValueError(f"{path}: does not match {type(module).__name__}: {e}") from None


def load_vision(encoder: nn.Module, model_dir: str | Path) -> None:
    """Load vision_model.pt and vision_projector.pt into a VisionEncoder."""
    for attr, rel in VISION_FILES.items():
        load_into(getattr(encoder, attr), Path(model_dir) / rel)


def load_audio(encoder: nn.Module, model_dir: str | Path) -> None:
    """Load audio_encoder.pt, audio_projector.pt and global_cmvn into a StreamingAudioEncoder."""
    for attr, rel in AUDIO_FILES.items():
        load_into(getattr(encoder, attr), Path(model_dir) / rel)
    encoder.frontend.cmvn.load(Path(model_dir) / AUDIO_CMVN)


def _read_json(path: str | Path) -> dict:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: config file not found") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: invalid JSON ({e})") from None


def _map(cls, base, data: dict, fields: dict[str, str]):
    kwargs = {}
    for src, dst in fields.items():
        if src in data:
            v = data[src]
            kwargs[dst] = tuple(v) if isinstance(v, list) else v
    return dataclasses.replace(base, **kwargs)


def vision_config_from_release(path: str | Path, base: VisionConfig | None = None) -> VisionConfig:
    """vision/config.json of the release -> VisionConfig (unknown fields ignored)."""
    data = _read_json(path)
    cfg = _map(VisionConfig, base or VisionConfig(), data, _VISION_FIELDS)
    if data.get("spatial_merge_size", 1) != 1:
        raise ValueError(f"{path}: spatial_merge_size {data['spatial_merge_size']} is not supported (only 1)")
    return cfg


def audio_config_from_release(path: str | Path, base: AudioEncoderConfig | None = None) -> AudioEncoderConfig:
    """audio/config.json of the release -> AudioEncoderConfig."""
    data = _read_json(path)
    cfg = _map(AudioEncoderConfig, base or AudioEncoderConfig(), data, _AUDIO_FIELDS)
    if "input_size" in data and data["input_size"] != cfg.input_size:
        raise ValueError(f"{path}: input_size {data['input_size']} != mel bins x splice context {cfg.input_size}")
    if data.get("right_stride", cfg.memory_dilation) != cfg.memory_dilation:
        raise ValueError(f"{path}: left_stride != right_stride is not supported")
    return cfg

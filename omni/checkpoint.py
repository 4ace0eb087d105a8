"""One checkpoint directory for the whole omni model.

    DIR/config.json          {"format": "omni-model", "version": 1, "omni": OmniConfig fields}
    DIR/model.safetensors    every parameter but the codec's (prefixes llm., vision., audio_encoder.,
                             audio_embedding., audio_head.)
    DIR/tokenizer/           a Hugging Face tokenizer directory
    DIR/codec/               speech.Codec.save_pretrained

`OmniModel.from_pretrained(dir)` / `model.save_pretrained(dir)` call these.
Missing files, unknown fields and missing / unexpected / mis-shaped keys raise
errors that name the file and the key.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from omni.config import OmniConfig, from_dict, to_dict

FORMAT = "omni-model"
VERSION = 1
CONFIG = "config.json"
WEIGHTS = "model.safetensors"


def read_omni_config(path: str | os.PathLike) -> OmniConfig:
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"model directory {path} does not exist")
    cfg_path = path / CONFIG
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{cfg_path}: missing (an omni model directory holds {CONFIG}, {WEIGHTS}, tokenizer/, codec/)")
    try:
        meta = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{cfg_path}: not valid JSON ({e.msg})") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"{cfg_path}: field 'format' is {meta.get('format')!r}, expected {FORMAT!r}")
    try:
        return from_dict(OmniConfig, meta["omni"])
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{cfg_path}: field 'omni' is not a valid OmniConfig ({e})") from None


def save_pretrained(model, path: str | os.PathLike, dtype: torch.dtype | None = None) -> None:
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {}
    for k, v in model.state_dict().items():
        v = v.detach().to("cpu")
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        state[k] = v.contiguous()
    save_file(state, str(path / WEIGHTS), metadata={"format": "pt"})
    (path / CONFIG).write_text(json.dumps({"format": FORMAT, "version": VERSION, "omni": to_dict(model.config)}, indent=2) + "\n")
    model.tokenizer.save_pretrained(path / "tokenizer")
    save_codec(model.codec, path / "codec")


def save_codec(codec, path: Path) -> None:
    """Codec.save_pretrained, except for a decoder-only (converted) codec: its
    semantic table comes from the release, not from our semantic quantizer, so it
    is written as is instead of re-derived (`sync_semantic_table`)."""
    if not getattr(codec, "decoder_only", False):
        codec.save_pretrained(path)
        return
    from safetensors.torch import save_file

    from speech.codec import FORMAT as CODEC_FORMAT

    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in codec.model.state_dict().items()}
    save_file(state, str(path / "model.safetensors"))
    meta = {"format": CODEC_FORMAT, "codec": to_dict(codec.cfg), "decoder_only": True}
    (path / "config.json").write_text(json.dumps(meta, indent=2) + "\n")


def load_state(model, path: str | os.PathLike) -> None:
    """Strict load of DIR/model.safetensors into `model`, naming bad keys."""
    from safetensors.torch import load_file

    from omni.llm.loading import load_checked

    w = Path(path) / WEIGHTS
    if not w.is_file():
        raise FileNotFoundError(f"{w}: missing")
    load_checked(model, load_file(str(w)), source=str(w))


def from_pretrained(cls, path: str | os.PathLike, device: str | torch.device = "cpu", dtype: torch.dtype | None = None):
    from omni.tokenizer import load_tokenizer
    from speech import Codec

    path = Path(path)
    cfg = read_omni_config(path)
    tok_dir = path / "tokenizer"
    tokenizer = load_tokenizer(tok_dir) if tok_dir.is_dir() else load_tokenizer()
    codec_dir = path / "codec"
    if not codec_dir.is_dir():
        raise FileNotFoundError(f"{codec_dir}: missing (the speech codec of this model)")
    codec = Codec.from_pretrained(codec_dir)
    codec.decoder_only = bool(json.loads((codec_dir / "config.json").read_text()).get("decoder_only", False))
    if codec.cfg != cfg.codec:
        raise ValueError(f"{codec_dir}/config.json: codec configuration differs from {path / CONFIG} field 'omni.codec'")
    model = cls(cfg, tokenizer=tokenizer, codec=codec, init=False)
    load_state(model, path)
    if dtype is not None:
        model.to_dtype(dtype)
    return model.to(device).eval()

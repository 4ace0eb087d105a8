"""The one adapter from the official LongCat-Flash-Omni release layout to ours.

Official layout (spec section 5)               ours (one OmniModel directory)
--------------------------------------------   ----------------------------------------------
config.json, *.safetensors (+ index)            llm.*  (per-expert keys fused by omni.llm.hf_compat)
language_model_embedding.pt                     checked equal to model.embed_tokens, not kept
vision/config.json, vision_model.pt,            vision.vit.*, vision.projector.*
  vision_projector.pt
audio/config.json, preprocessor_config.json,    audio_encoder.{encoder,projector}.*,
  global_cmvn, audio_encoder.pt,                audio_encoder.frontend.cmvn (Kaldi stats)
  audio_projector.pt
audio/audio_embeddings.pt                       audio_embedding.audio_embeddings.{0..3}.weight
audio/audio_output_layers.pt                    audio_head.audio_output_layers.{0..3}.weight,
                                                audio_head.embedding.{0..2}.weight
audio_codec/config.yaml + its ckpt_path         codec/ (decoder keys as released; the release has
                                                no codec encoder, so ours stays untrained)
tokenizer files                                 tokenizer/

Every missing file and every missing / unexpected / mis-shaped key raises an
error that names the file and the key.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import torch

from omni.config import CodecConfig, OmniConfig

LLM_CONFIG = "config.json"
AUDIO_EMBED = "audio/audio_embeddings.pt"
AUDIO_HEADS = "audio/audio_output_layers.pt"
CODEC_YAML = "audio_codec/config.yaml"
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
    "vocab.json", "merges.txt", "added_tokens.json", "vocab.txt",
)
# official text id that ends a segment's text during a spoken reply (sgl-omni CHAT_TEXT_FREE_END)
OFFICIAL_TEXT_FREE_END = 137


class ConversionError(ValueError):
    pass


def _need(src: Path, rel: str) -> Path:
    p = src / rel
    if not p.exists():
        raise FileNotFoundError(f"{p}: missing from the official checkpoint layout")
    return p


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConversionError(f"{path}: invalid JSON ({e.msg})") from None


def _flatten(d: Any, out: dict | None = None) -> dict:
    """Nested yaml/json -> {leaf key: value} (first occurrence wins)."""
    out = {} if out is None else out
    if isinstance(d, dict):
        for k, v in d.items():
            if isinstance(v, dict):
                _flatten(v, out)
            else:
                out.setdefault(str(k), v)
    return out


def codec_config_from_yaml(path: Path) -> tuple[CodecConfig, Path]:
    """audio_codec/config.yaml -> (CodecConfig, decoder checkpoint path)."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConversionError(f"{path}: invalid YAML ({e})") from None
    f = _flatten(data)
    if "ckpt_path" not in f:
        raise ConversionError(f"{path}: no 'ckpt_path' naming the decoder weights")
    base = CodecConfig()
    fields = {
        "codec_dimension": "codec_dimension", "decoder_dim": "decoder_dim", "semantic_dim": "semantic_dim",
        "codec_codebook_size": "acoustic_subcodebook_size", "codec_codebook_search_dim": "acoustic_codebook_dim",
        "semantic_token_nums": "semantic_codebook_size", "codec_codebooks": "acoustic_codebooks",
        "encoder_dim": "encoder_dim", "lookahead_frame": "lookahead_frames",
    }
    kw = {dst: f[src] for src, dst in fields.items() if src in f}
    if "codec_dec_ratios" in f:
        kw["dec_ratios"] = tuple(int(x) for x in f["codec_dec_ratios"])
    if "codec_enc_ratios" in f:
        kw["enc_ratios"] = tuple(int(x) for x in f["codec_enc_ratios"])
    rate = f.get("output_rate", f.get("output_sample_rate", f.get("input_sample_rate")))
    if rate is not None:
        kw["sample_rate"] = int(rate)
    cfg = dataclasses.replace(base, **kw)
    hop = 1
    for r in cfg.dec_ratios:
        hop *= r
    cfg = dataclasses.replace(cfg, hop_length=hop, num_codebooks=1 + cfg.acoustic_codebooks)
    ckpt = Path(f["ckpt_path"])
    if not ckpt.is_absolute():
        ckpt = path.parent / ckpt.name if not (path.parent / ckpt).exists() else path.parent / ckpt
    return cfg, ckpt


def read_release_config(src: Path) -> tuple[OmniConfig, Path]:
    """All configs of the release -> (OmniConfig, codec decoder checkpoint)."""
    from encoders.checkpoint import audio_config_from_release, vision_config_from_release
    from omni.llm.hf_compat import llm_config_from_hf

    llm_path = _need(src, LLM_CONFIG)
    llm_dict = _json(llm_path)
    if str(llm_dict.get("model_type", "longcat_flash")).startswith("longcat_flash"):
        llm_dict = {**llm_dict, "model_type": "longcat_flash"}
    llm = llm_config_from_hf(llm_dict, source=str(llm_path))
    vision = vision_config_from_release(_need(src, "vision/config.json"))
    audio = audio_config_from_release(_need(src, "audio/config.json"))
    vision = dataclasses.replace(vision, out_dim=llm.hidden_size)
    audio = dataclasses.replace(audio, out_dim=llm.hidden_size)
    pre = src / "audio/preprocessor_config.json"
    if pre.exists():
        audio = _apply_preprocessor(audio, _json(pre), pre)
    codec, ckpt = codec_config_from_yaml(_need(src, CODEC_YAML))
    extra = llm_dict.get("onmi_extra_info") or llm_dict.get("omni_extra_info") or {}
    cfg = OmniConfig(llm=llm, vision=vision, audio=audio, codec=codec, text_end_ids=(OFFICIAL_TEXT_FREE_END,))
    for src_key, dst in (
        ("audio_head_num", "num_audio_heads"), ("audio_id_offset", "audio_id_offset"),
        ("audio_repetition_penalty", "audio_repetition_penalty"), ("audio_rep_penalty_window", "audio_rep_penalty_window"),
    ):
        if src_key in extra:
            cfg = dataclasses.replace(cfg, **{dst: extra[src_key]})
    if extra.get("has_proj"):
        raise ConversionError(f"{llm_path}: onmi_extra_info.has_proj=true (an extra audio-head projection) is not supported")
    if "audio_vocab_size" in extra and int(extra["audio_vocab_size"]) != cfg.audio_vocab_size:
        raise ConversionError(
            f"{llm_path}: onmi_extra_info.audio_vocab_size {extra['audio_vocab_size']} != "
            f"semantic codebook {codec.semantic_codebook_size} + offset {cfg.audio_id_offset}"
        )
    return cfg, ckpt


def _apply_preprocessor(audio, data: dict, path: Path):
    fb, sp = data.get("fbank", {}), data.get("splice", {})
    kw = {}
    for src, dst in (("num_mel_bins", "num_mel_bins"), ("frame_length", "frame_length_ms"), ("frame_shift", "frame_shift_ms"),
                     ("preemphasis", "preemphasis"), ("low_freq", "low_freq"), ("high_freq", "high_freq")):
        if src in fb:
            kw[dst] = fb[src]
    for src, dst in (("left", "splice_left"), ("right", "splice_right"), ("stride", "splice_stride")):
        if src in sp:
            kw[dst] = sp[src]
    if data.get("delta", {}).get("delta_order", 0):
        raise ConversionError(f"{path}: delta features (delta_order > 0) are not supported")
    return dataclasses.replace(audio, **kw)


def _torch_file(path: Path) -> dict[str, torch.Tensor]:
    from encoders.checkpoint import load_state_file

    return load_state_file(path)


def _take(sd: dict, key: str, path: Path, shape: tuple[int, ...]) -> torch.Tensor:
    if key not in sd:
        raise KeyError(f"{path}: missing key {key!r}")
    t = sd[key]
    if tuple(t.shape) != shape:
        raise ConversionError(f"{path}: {key} has shape {list(t.shape)}, expected {list(shape)}")
    return t


def head_state(src: Path, cfg: OmniConfig) -> dict[str, torch.Tensor]:
    """audio_embeddings.pt + audio_output_layers.pt -> our keys, every key checked."""
    H, V, K = cfg.llm.hidden_size, cfg.audio_vocab_size, cfg.num_audio_heads
    out = {}
    p = _need(src, AUDIO_EMBED)
    emb = _torch_file(p)
    for k in range(K):
        out[f"audio_embedding.audio_embeddings.{k}.weight"] = _take(emb, f"audio_embeddings.{k}.weight", p, (V, H))
    p = _need(src, AUDIO_HEADS)
    heads = _torch_file(p)
    if "linear.weight" in heads:
        raise ConversionError(f"{p}: holds 'linear.weight' (has_proj=true), which is not supported")
    for k in range(K):
        out[f"audio_head.audio_output_layers.{k}.weight"] = _take(heads, f"audio_output_layers.{k}.weight", p, (V, H))
    for k in range(K - 1):
        out[f"audio_head.embedding.{k}.weight"] = _take(heads, f"embedding.{k}.weight", p, (V, H))
    extra = sorted(set(emb) - {f"audio_embeddings.{k}.weight" for k in range(K)})
    extra += sorted(set(heads) - {f"audio_output_layers.{k}.weight" for k in range(K)} - {f"embedding.{k}.weight" for k in range(K - 1)})
    if extra:
        raise KeyError(f"unexpected keys in {AUDIO_EMBED} / {AUDIO_HEADS}: {extra[:5]}")
    return out


def load_codec_decoder(codec, ckpt: Path) -> None:
    if not ckpt.exists():
        raise FileNotFoundError(f"{ckpt}: codec decoder checkpoint named by {CODEC_YAML} is missing")
    raw = torch.load(ckpt, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "generator"):
        if isinstance(raw, dict) and isinstance(raw.get(key), dict):
            raw = raw[key]
    try:
        codec.model.decoder.load_state_dict(raw, strict=True)
    except RuntimeError as e:
        raise ConversionError(f"{ckpt}: does not match the codec decoder: {e}") from None
    codec._stream_decoder = None
    codec.decoder_only = True  # no codec encoder in the release: keep the decoder's own tables


def copy_tokenizer(src: Path, dst: Path) -> None:
    found = [n for n in TOKENIZER_FILES if (src / n).exists()]
    if not found:
        raise FileNotFoundError(f"{src}: no tokenizer files (expected one of {', '.join(TOKENIZER_FILES[:4])})")
    dst.mkdir(parents=True, exist_ok=True)
    for n in found:
        shutil.copy2(src / n, dst / n)


def convert_longcat_omni(src: str | Path, dst: str | Path, dtype: torch.dtype | None = None, progress: bool = True) -> OmniConfig:
    """Convert an official release directory into an OmniModel directory."""
    from tqdm import tqdm

    from encoders.checkpoint import load_audio, load_vision
    from omni.llm.hf_compat import from_hf_state_dict
    from omni.llm.loading import load_checked, read_safetensors
    from omni.model import OmniModel
    from omni.tokenizer import load_tokenizer
    from speech import Codec, CodecModel

    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise FileNotFoundError(f"source checkpoint directory {src} does not exist")
    steps = tqdm(total=6, desc="convert", disable=not progress)
    cfg, codec_ckpt = read_release_config(src)
    steps.update()
    dst.mkdir(parents=True, exist_ok=True)
    copy_tokenizer(src, dst / "tokenizer")
    tokenizer = load_tokenizer(dst / "tokenizer")
    codec = Codec(CodecModel(cfg.codec))
    load_codec_decoder(codec, codec_ckpt)
    steps.update()
    model = OmniModel(cfg, tokenizer=tokenizer, codec=codec, init=False)
    llm_sd = from_hf_state_dict(read_safetensors(str(src)), cfg.llm)
    load_checked(model.llm, llm_sd, source=f"{src} (LLM safetensors)")
    steps.update()
    emb_file = src / "language_model_embedding.pt"
    if emb_file.exists():
        word = _torch_file(emb_file).get("word_embeddings.weight")
        if word is None or not torch.equal(word.to(model.llm.model.embed_tokens.weight.dtype), model.llm.model.embed_tokens.weight):
            raise ConversionError(f"{emb_file}: word_embeddings.weight differs from model.embed_tokens.weight")
    load_vision(model.vision, src)
    load_audio(model.audio_encoder, src)
    steps.update()
    heads = head_state(src, cfg)
    own = model.state_dict()
    with torch.no_grad():
        for k, v in heads.items():
            own[k].copy_(v.to(own[k].dtype))
    steps.update()
    model.save_pretrained(dst, dtype=dtype)
    steps.update()
    steps.close()
    return cfg

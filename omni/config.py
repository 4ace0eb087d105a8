"""Typed configuration for every component, plus the registry of named flavors.

Config is nested like the model: each module receives only its own sub-config.
Derived fields are properties, computed from the stored fields, so there is one
source of truth. Flavors are plain functions returning fresh dataclass instances
(no YAML). `to_dict` / `from_dict` round-trip through JSON for checkpoints.

This module imports nothing but the standard library so that every package may
depend on it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

T = TypeVar("T")


# ---------------------------------------------------------------------------
# LLM backbone (LongCat-Flash)
# ---------------------------------------------------------------------------


@dataclass
class LLMConfig:
    """LongCat-Flash decoder. Field names follow transformers' LongcatFlashConfig."""

    vocab_size: int = 131072
    hidden_size: int = 6144
    num_layers: int = 28  # each layer = 2 MLA sublayers + 2 dense MLPs + 1 shortcut MoE
    num_attention_heads: int = 64
    ffn_hidden_size: int = 12288  # dense SwiGLU MLPs
    expert_ffn_hidden_size: int = 2048
    n_routed_experts: int = 512  # real (FFN) experts
    zero_expert_num: int = 256  # zero-computation (identity) experts
    moe_topk: int = 12
    routed_scaling_factor: float = 6.0
    q_lora_rank: int = 1536
    kv_lora_rank: int = 512
    qk_nope_head_dim: int = 128
    qk_rope_head_dim: int = 64
    v_head_dim: int = 128
    mla_scale_q_lora: bool = True
    mla_scale_kv_lora: bool = True
    rms_norm_eps: float = 1e-5
    rope_theta: float = 1e7
    max_position_embeddings: int = 131072
    bos_token_id: int = 1
    eos_token_id: int = 2
    pad_token_id: int = 3
    initializer_range: float = 0.02

    @property
    def qk_head_dim(self) -> int:
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    @property
    def num_experts_total(self) -> int:
        """Router width: real experts followed by zero experts."""
        return self.n_routed_experts + self.zero_expert_num


# ---------------------------------------------------------------------------
# Encoders
# ---------------------------------------------------------------------------


@dataclass
class VisionConfig:
    """LongCat-ViT (native resolution, 2D RoPE, Conv3d patches in time) + projector."""

    hidden_size: int = 1280
    intermediate_size: int = 5184  # SwiGLU inner width is int(2/3 of this)
    num_layers: int = 32
    num_heads: int = 16
    patch_size: int = 14
    temporal_patch_size: int = 2
    num_channels: int = 3
    rope_theta: float = 10000.0
    norm_eps: float = 1e-6
    layerscale_init: float = 0.1
    qk_normalization: bool = True
    resize_factor: int = 8  # sides rounded to multiples of patch * resize_factor = 112
    min_tokens: int = 576  # patches per image (before the 2x merge)
    max_tokens: int = 5832
    image_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    image_std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    adaptor_dim: int = 7168  # projector hidden width
    out_dim: int = 6144  # LLM width
    video_fps: float = 2.0
    min_video_frames: int = 16
    max_video_frames: int = 256
    max_video_tokens: int = 16384  # after the projector, over all frames of a request
    min_video_pair_tokens: int = 64  # patches per frame pair never shrink below this
    attention_backend: str = "auto"  # packed attention: "auto" | "varlen" (flash, CUDA) | "sdpa"
    # Learned absolute 2D position embedding, added to the patch embeddings: a table of
    # abs_pos_grid x abs_pos_grid vectors over the image, bilinearly resampled to each
    # unit's patch grid (any size; every frame pair of a video gets the same one).
    # 0 = none: the official LongCat-ViT (2D RoPE only) and its checkpoint keys.
    abs_pos_grid: int = 0
    abs_pos_init_std: float = 0.02  # normal init of that table

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def mlp_inner_size(self) -> int:
        """SwiGLU inner width of the checkpoint: int(2/3 of intermediate_size)."""
        return int(self.intermediate_size * 2 / 3)

    @property
    def patch_dim(self) -> int:
        """Length of one flattened patch row: channels x time x patch x patch."""
        return self.num_channels * self.temporal_patch_size * self.patch_size**2

    @property
    def resize_multiple(self) -> int:
        return self.patch_size * self.resize_factor


@dataclass
class AudioEncoderConfig:
    """Streaming DFSMN audio encoder with its Kaldi fbank front end + projector."""

    sample_rate: int = 16000
    num_mel_bins: int = 80
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    splice_left: int = 7
    splice_right: int = 7
    splice_stride: int = 8  # 8 x 10 ms = one 80 ms encoder frame
    hidden_size: int = 6144
    proj_size: int = 1536
    num_layers: int = 22
    num_right_layers: int = 6  # the last layers see one frame of look-ahead
    left_order: int = 10
    right_order: int = 1
    memory_dilation: int = 1  # FSMN memory conv dilation (left_stride = right_stride)
    dropout: float = 0.1  # inside FSMN layers, training only
    ctc_vocab_size: int = 5252
    out_dim: int = 6144  # LLM width
    # Kaldi fbank options (audio/preprocessor_config.json of a release may override)
    preemphasis: float = 0.97
    low_freq: float = 40.0
    high_freq: float = -200.0  # <= 0 means nyquist + high_freq
    remove_dc_offset: bool = False

    @property
    def input_size(self) -> int:
        return self.num_mel_bins * (self.splice_left + self.splice_right + 1)

    @property
    def window_samples(self) -> int:
        return int(self.sample_rate * self.frame_length_ms / 1000)

    @property
    def hop_samples(self) -> int:
        return int(self.sample_rate * self.frame_shift_ms / 1000)

    @property
    def samples_per_frame(self) -> int:
        """Samples per encoder frame (80 ms = 1280 at 16 kHz)."""
        return self.hop_samples * self.splice_stride

    @property
    def lookahead_frames(self) -> int:
        """Encoder frames of look-ahead accumulated by the right-context FSMN layers."""
        return self.num_right_layers * self.right_order * self.memory_dilation


# ---------------------------------------------------------------------------
# Speech codec
# ---------------------------------------------------------------------------


@dataclass
class CodecConfig:
    """Audio codec: 1 semantic + 3 acoustic residual codebooks at 16.67 Hz."""

    sample_rate: int = 16000
    hop_length: int = 960  # samples per codec frame (60 ms)
    num_codebooks: int = 4
    semantic_codebook_size: int = 8192
    semantic_dim: int = 1280
    acoustic_codebooks: int = 3
    acoustic_subcodebook_size: int = 90  # each acoustic index = a * 90 + b
    acoustic_codebook_dim: int = 8
    codec_dimension: int = 1024
    encoder_dim: int = 64
    enc_ratios: tuple[int, ...] = (4, 5, 6, 8)
    dec_ratios: tuple[int, ...] = (8, 6, 5, 4)
    decoder_dim: int = 1536
    lookahead_frames: int = 3
    lstm_layers: int = 1
    # Our own trained codecs take the "semantic" book as the first residual
    # stage over the acoustic latent, searched by cosine in this many dims
    # (the official codec instead k-means-quantizes a 26-layer ASR transformer).
    semantic_codebook_dim: int = 8

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    @property
    def acoustic_codebook_size(self) -> int:
        return self.acoustic_subcodebook_size**2


# ---------------------------------------------------------------------------
# The whole model
# ---------------------------------------------------------------------------


@dataclass
class TemplateConfig:
    """Modes of the chat template a checkpoint was trained with (omni/sequence.py).
    All off: the original release's voice-chat layout."""

    rounds: bool = False  # user turns are numbered: "[Round N] USER:"
    thinking: bool = False  # understands " /think_on" / " /think_off" and writes <longcat_think> sections


@dataclass
class OmniConfig:
    """Encoders -> LLM -> text head + four audio heads -> codec decoder."""

    llm: LLMConfig = field(default_factory=LLMConfig)
    vision: VisionConfig = field(default_factory=VisionConfig)
    audio: AudioEncoderConfig = field(default_factory=AudioEncoderConfig)
    codec: CodecConfig = field(default_factory=CodecConfig)
    num_audio_heads: int = 4
    audio_id_offset: int = 32  # codec value v is stored as v + 32
    audio_eos_id: int = 2  # end of a speech segment (semantic head)
    audio_pad_id: int = 3
    audio_repetition_penalty: float = 1.1
    audio_rep_penalty_window: int = 30
    # the codec's tokens of a silent frame (raw values, no offset), exempt from the audio repetition
    # penalty: silence held for many frames (a pause, a tool call's unspoken rows) is not a loop to
    # break. () for none (the original release's behaviour)
    codec_silence_frame: tuple[int, ...] = ()
    chunk_seconds: float = 1.0
    text_end_ids: tuple[int, ...] = ()  # extra text ids that end a segment's text (original release: 137)
    # steps the speech of a segment waits behind its text: the first `text_audio_delay` codec rows
    # of a segment are pads, so the voice's first frame is predicted after it has read that many
    # text tokens (`omni.segments.SegmentMachine`, `mdp.curriculum.data.speech_rows`). 0: text and
    # speech start in the same step (the original release's layout)
    text_audio_delay: int = 0
    template: TemplateConfig = field(default_factory=TemplateConfig)

    @property
    def audio_vocab_size(self) -> int:
        return self.codec.semantic_codebook_size + self.audio_id_offset


# ---------------------------------------------------------------------------
# Flavor registry
# ---------------------------------------------------------------------------

_REGISTRY: dict[str, dict[str, Callable[[], Any]]] = {
    "llm": {},
    "vision": {},
    "audio": {},
    "codec": {},
    "omni": {},
}


def register(kind: str, name: str) -> Callable[[Callable[[], T]], Callable[[], T]]:
    def deco(fn: Callable[[], T]) -> Callable[[], T]:
        _REGISTRY[kind][name] = fn
        return fn

    return deco


def flavor_names(kind: str) -> list[str]:
    return sorted(_REGISTRY[kind])


def get_flavor(kind: str, name: str) -> Any:
    """Fresh config instance of flavor `name` for component `kind`."""
    if kind not in _REGISTRY:
        raise KeyError(f"unknown config kind {kind!r}; known: {sorted(_REGISTRY)}")
    try:
        return _REGISTRY[kind][name]()
    except KeyError:
        raise KeyError(
            f"unknown {kind} flavor {name!r}; known: {flavor_names(kind)}"
        ) from None


def get_llm_config(name: str) -> LLMConfig:
    return get_flavor("llm", name)


def get_omni_config(name: str) -> OmniConfig:
    return get_flavor("omni", name)


# --- LLM flavors -----------------------------------------------------------


@register("llm", "debug")
def _llm_debug() -> LLMConfig:
    return LLMConfig(
        vocab_size=512,
        hidden_size=64,
        num_layers=2,
        num_attention_heads=4,
        ffn_hidden_size=128,
        expert_ffn_hidden_size=32,
        n_routed_experts=8,
        zero_expert_num=4,
        moe_topk=3,
        routed_scaling_factor=6.0,
        q_lora_rank=48,
        kv_lora_rank=32,
        qk_nope_head_dim=16,
        qk_rope_head_dim=8,
        v_head_dim=16,
        rope_theta=10000.0,
        max_position_embeddings=4096,
    )


@register("llm", "a1b")
def _llm_a1b() -> LLMConfig:
    return LLMConfig(
        vocab_size=32000,
        hidden_size=2048,
        num_layers=12,
        num_attention_heads=16,
        ffn_hidden_size=5632,
        expert_ffn_hidden_size=1024,
        n_routed_experts=64,
        zero_expert_num=32,
        moe_topk=8,
        routed_scaling_factor=6.0,
        q_lora_rank=768,
        kv_lora_rank=256,
        qk_nope_head_dim=128,
        qk_rope_head_dim=64,
        v_head_dim=128,
        rope_theta=1e7,
        max_position_embeddings=32768,
    )


@register("llm", "longcat-flash")
def _llm_longcat() -> LLMConfig:
    return LLMConfig()


@register("llm", "mini")
def _llm_mini() -> LLMConfig:
    """The default model's backbone: ~10M parameters, the shipped 512-token
    tokenizer; decodes well above 16.67 steps/s on a 2-core CPU."""
    return LLMConfig(
        vocab_size=512,
        hidden_size=256,
        num_layers=4,
        num_attention_heads=4,
        ffn_hidden_size=512,
        expert_ffn_hidden_size=256,
        n_routed_experts=8,
        zero_expert_num=4,
        moe_topk=2,
        routed_scaling_factor=2.0,
        q_lora_rank=128,
        kv_lora_rank=64,
        qk_nope_head_dim=32,
        qk_rope_head_dim=16,
        v_head_dim=32,
        rope_theta=10000.0,
        max_position_embeddings=4096,
    )


# --- encoder flavors -------------------------------------------------------


@register("vision", "debug")
def _vision_debug() -> VisionConfig:
    return VisionConfig(
        hidden_size=32,
        intermediate_size=96,
        num_layers=2,
        num_heads=2,
        min_tokens=16,
        max_tokens=1024,
        adaptor_dim=64,
        out_dim=64,
        max_video_tokens=2048,
    )


@register("vision", "a1b")
def _vision_a1b() -> VisionConfig:
    return VisionConfig(
        hidden_size=768,
        intermediate_size=3072,
        num_layers=12,
        num_heads=12,
        adaptor_dim=2048,
        out_dim=2048,
    )


@register("vision", "longcat")
def _vision_longcat() -> VisionConfig:
    return VisionConfig()


@register("vision", "mini")
def _vision_mini() -> VisionConfig:
    """112 px frames -> 8 x 8 patches -> 32 tokens per image or frame pair."""
    return VisionConfig(
        hidden_size=192,
        intermediate_size=576,
        num_layers=4,
        num_heads=3,
        # the world is rendered at 112 px and the model is trained on nothing else: any
        # picture (a 224 px file, a 640x480 webcam) is resized to those 8 x 8 patches, where
        # a larger grid would be one the model never saw (held-out files: 11.7 % -> 19.2 %)
        min_tokens=64,
        max_tokens=64,
        adaptor_dim=512,
        out_dim=256,
        min_video_frames=1,
        max_video_frames=64,
        max_video_tokens=2048,
        min_video_pair_tokens=64,
        # uniform backgrounds leave 2D RoPE alone blind to where an object is; the
        # table matches the world's 112 px frames (8 x 8 patches) one entry per patch
        abs_pos_grid=8,
    )


@register("audio", "debug")
def _audio_debug() -> AudioEncoderConfig:
    return AudioEncoderConfig(
        hidden_size=128,
        proj_size=64,
        num_layers=4,
        num_right_layers=2,
        left_order=4,
        ctc_vocab_size=64,
        out_dim=64,
    )


@register("audio", "a1b")
def _audio_a1b() -> AudioEncoderConfig:
    return AudioEncoderConfig(
        hidden_size=2048,
        proj_size=768,
        num_layers=12,
        num_right_layers=4,
        ctc_vocab_size=5252,
        out_dim=2048,
    )


@register("audio", "longcat")
def _audio_longcat() -> AudioEncoderConfig:
    return AudioEncoderConfig()


@register("audio", "mini")
def _audio_mini() -> AudioEncoderConfig:
    return AudioEncoderConfig(
        hidden_size=512,
        proj_size=128,
        num_layers=6,
        num_right_layers=2,
        left_order=10,
        ctc_vocab_size=512,  # the LLM tokenizer's ids: CTC pre-training on the questions' words
        out_dim=256,
    )


# --- codec flavors ---------------------------------------------------------


@register("codec", "debug")
def _codec_debug() -> CodecConfig:
    return CodecConfig(
        semantic_codebook_size=64,
        semantic_dim=32,
        acoustic_subcodebook_size=8,
        acoustic_codebook_dim=4,
        codec_dimension=32,
        encoder_dim=8,
        decoder_dim=64,
    )


@register("codec", "default")
def _codec_default() -> CodecConfig:
    """The shipped codec (speech/pretrained/default): small enough to decode
    one stream in real time on a 2-core CPU; 1024-entry books keep the LLM's
    four audio heads small (acoustic 32 x 32 = 1024 <= semantic 1024)."""
    return CodecConfig(
        semantic_codebook_size=1024,
        semantic_dim=128,
        acoustic_subcodebook_size=32,
        acoustic_codebook_dim=8,
        codec_dimension=128,
        encoder_dim=16,
        decoder_dim=256,
    )


@register("codec", "longcat")
def _codec_longcat() -> CodecConfig:
    return CodecConfig()


# --- whole-model flavors ---------------------------------------------------


@register("omni", "debug")
def _omni_debug() -> OmniConfig:
    return OmniConfig(
        llm=_llm_debug(),
        vision=_vision_debug(),
        audio=_audio_debug(),
        codec=_codec_debug(),
    )


@register("omni", "a1b")
def _omni_a1b() -> OmniConfig:
    return OmniConfig(
        llm=_llm_a1b(),
        vision=_vision_a1b(),
        audio=_audio_a1b(),
        codec=_codec_debug(),
    )


@register("omni", "longcat-flash-omni")
def _omni_longcat() -> OmniConfig:
    return OmniConfig()


@register("omni", "mini")
def _omni_mini() -> OmniConfig:
    """The default model: trained on the synthetic world (`omni train --recipe
    omni-mini`), speaks through the shipped codec (codec flavor `default`)."""
    return OmniConfig(llm=_llm_mini(), vision=_vision_mini(), audio=_audio_mini(), codec=_codec_default())


# ---------------------------------------------------------------------------
# Serialization
# ---------------------------------------------------------------------------


def to_dict(cfg: Any) -> dict[str, Any]:
    """Dataclass -> plain JSON-able dict (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Inverse of `to_dict`. Unknown keys raise, so a typo never passes silently."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls} is not a dataclass")
    hints = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(hints)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        f = hints[name]
        sub = _nested_type(cls, f)
        if sub is not None and isinstance(value, dict):
            kwargs[name] = from_dict(sub, value)
        elif isinstance(value, list) and isinstance(f.default, tuple):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)


def _nested_type(cls: type, f: dataclasses.Field) -> type | None:
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        proto = f.default_factory()  # type: ignore[misc]
        if dataclasses.is_dataclass(proto):
            return type(proto)
    return None


def save_json(cfg: Any, path: str) -> None:
    with open(path, "w") as fh:
        json.dump(to_dict(cfg), fh, indent=2)


def load_json(cls: type[T], path: str) -> T:
    with open(path) as fh:
        return from_dict(cls, json.load(fh))

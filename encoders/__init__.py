"""Perception encoders: LongCat-ViT (+ projector) and the streaming DFSMN audio
encoder (+ fbank front end, projector, CTC head). Media decoding lives in
`encoders.media` (imported on demand: it needs PyAV).
"""

from encoders.audio import (
    AudioProjector,
    StreamingAudioEncoder,
    ctc_loss,
    ctc_training_step,
    lookahead_ms,
    num_encoder_frames,
    samples_needed,
)
from encoders.fsmn import DFSMNEncoder
from encoders.image_processing import (
    VisualUnit,
    image_num_tokens,
    pair_timestamps,
    preprocess_image,
    preprocess_video,
    video_num_tokens,
    video_sample_times,
)
from encoders.vision import VisionEncoder
from encoders.vision_projector import VisionProjector, cap_tokens
from encoders.vit import LongCatViT

__all__ = [
    "AudioProjector",
    "DFSMNEncoder",
    "LongCatViT",
    "StreamingAudioEncoder",
    "VisionEncoder",
    "VisionProjector",
    "VisualUnit",
    "cap_tokens",
    "ctc_loss",
    "ctc_training_step",
    "image_num_tokens",
    "lookahead_ms",
    "num_encoder_frames",
    "pair_timestamps",
    "preprocess_image",
    "preprocess_video",
    "samples_needed",
    "video_num_tokens",
    "video_sample_times",
]

"""Speech codec: tokenizer (encoder + 1 semantic and 3 acoustic residual codebooks at
16.67 Hz), the streaming speech decoder (3-frame look-ahead), and codec training.

Public API: `Codec` (from_pretrained / save_pretrained / encode / decode /
streaming_decoder), `CodecDecoder` + `DecoderState` (streaming), `load_wav` /
`save_wav` / `AudioFileError`, `synthesize` (espeak-ng).
"""

from speech.audio_io import AudioFileError, load_wav, save_wav
from speech.codec import DEFAULT_DIR, Codec
from speech.decoder import CodecDecoder, DecoderState
from speech.model import CodecModel
from speech.synth import synthesize

__all__ = [
    "AudioFileError",
    "Codec",
    "CodecDecoder",
    "CodecModel",
    "DEFAULT_DIR",
    "DecoderState",
    "load_wav",
    "save_wav",
    "synthesize",
]

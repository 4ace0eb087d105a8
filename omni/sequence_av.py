"""Audio-visual interleaving in 1 s chunks: the layout and the offline builder.

Layout of a streamed user turn (one `second{t}:` per chunk, t = chunk start):

    USER:[second{s}:<img>]...            sparse frames buffered while the assistant spoke
         second{0.0}:<img><|audio|><pad>*a0
         second{1.0}:<img><pad>*a1 ...   a_k = audio frames that became ready in chunk k
         <pad>*tail<|/audio|>\\n         tail = frames released by the encoder flush
    VOICE ASSISTANT:

`a_k` follows the streaming audio encoder: the frames whose look-ahead has
arrived by the end of chunk k. With 80 ms frames and no look-ahead that is the
original's 12, 13, 12, 13, ... pattern; the offline builder takes the counts from
the same `frames_ready(num_samples)` rule, so both paths agree exactly.

Sparse-dense rule: while the user speaks, every chunk is dense (2 FPS: one frame
pair per 1 s chunk). While the assistant answers, frames arrive sparse (0.5 FPS,
one frame per 2 s); they are buffered, not prefilled, and prepended to the
next user turn.

The incremental (streaming) builder is in `sequence_stream.py`; it derives the
same layout from stream time, whatever the packet boundaries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from omni.sequence import ChatFormat, Tokens

FramesReady = Callable[[int], int]


def default_frames_ready(num_samples: int, sample_rate: int = 16000, frame_seconds: float = 0.08) -> int:
    """Frames of a look-ahead-free 80 ms encoder after `num_samples` samples."""
    return int(num_samples // round(sample_rate * frame_seconds))


@dataclass
class EncodedChunk:
    """One encoded client packet (the output of `RealtimeOmni.encode_chunk`)."""

    start_time: float
    audio: torch.Tensor  # [k, D] audio frames released by the streaming encoder in this chunk
    images: list[torch.Tensor] = field(default_factory=list)  # [m_j, D] per visual unit
    image_times: list[float] = field(default_factory=list)
    num_samples: int = 0  # audio samples carried by the chunk
    speaking: bool = True
    # position of the chunk in the slot's continuous encoder stream (samples fed
    # and frames released before it); None: right after the builder's previous chunk
    stream_samples: int | None = None
    stream_frames: int | None = None


def build_av_user_turn(
    fmt: ChatFormat,
    audio: torch.Tensor | None,
    num_samples: int,
    video: Sequence[tuple[float, torch.Tensor]] = (),
    sparse: Sequence[tuple[float, torch.Tensor]] = (),
    frames_ready: FramesReady = default_frames_ready,
    sample_rate: int = 16000,
    chunk_seconds: float = 1.0,
    time_offset: float = 0.0,
    text: str | None = None,
    header: bool = True,
    think: bool | None = None,
) -> Tokens:
    """The offline path: one user turn from whole-file features.

    `audio` [N, D] are all encoder frames of the clip (streaming frames followed
    by the flushed tail), `video` the (time, features) of each frame pair,
    `sparse` earlier buffered frames. Returns `USER:` ... `\\n` (no generation
    prompt; without the `USER:` header when `header` is False). `think` ends the
    turn with the thinking switch (templates with a thinking mode, omni/sequence.py).
    """
    n_audio = 0 if audio is None else int(audio.shape[0])
    chunk_samples = int(round(sample_rate * chunk_seconds))
    n_chunks = math.ceil(num_samples / chunk_samples) if num_samples else 0
    if video:
        n_chunks = max(n_chunks, int((max(t for t, _ in video) - time_offset) // chunk_seconds) + 1)
    runs = [fmt.header("user")] if header else []
    for t, feats in sparse:
        runs += [fmt.timestamp(t), fmt.image_pads(feats)]
    done = 0  # audio frames placed so far
    for k in range(n_chunks):
        t0 = time_offset + k * chunk_seconds
        runs.append(fmt.timestamp(t0))
        runs += [fmt.image_pads(f) for t, f in video if t0 - 1e-6 <= t < t0 + chunk_seconds - 1e-6]
        lo, hi = k * chunk_samples, min((k + 1) * chunk_samples, num_samples)
        if hi <= lo:
            continue
        if lo == 0:
            runs.append(fmt.audio_open())
        ready = min(frames_ready(hi), n_audio)
        if ready > done:
            runs.append(fmt.audio_pads(audio[done:ready]))
            done = ready
    if num_samples:
        if done < n_audio:
            runs.append(fmt.audio_pads(audio[done:]))
        runs.append(fmt.audio_close())
    if text:
        runs.append(fmt.text(text))
    runs += [fmt.think_switch(think), fmt.newline()]
    return Tokens.cat(runs)

"""Audio-visual interleaving in 1 s chunks: the offline and the incremental builder.

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
one frame per 2 s); they are buffered here, not prefilled, and prepended to the
next user turn.
"""

from __future__ import annotations

import copy
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


@dataclass
class TurnState:
    """Everything the incremental builder carries (cheap to snapshot)."""

    in_user_turn: bool = False
    audio_open: bool = False
    in_response: bool = False
    sparse: list[tuple[float, torch.Tensor]] = field(default_factory=list)
    last_sparse_time: float | None = None


class IncrementalBuilder:
    """Builds the sequence one chunk at a time (the streaming path)."""

    def __init__(self, fmt: ChatFormat, sparse_interval: float = 2.0, max_sparse_units: int = 8) -> None:
        self.fmt = fmt
        self.sparse_interval = sparse_interval
        self.max_sparse_units = max_sparse_units
        self.state = TurnState()

    def snapshot(self) -> TurnState:
        s = self.state
        return TurnState(s.in_user_turn, s.audio_open, s.in_response, list(s.sparse), s.last_sparse_time)

    def restore(self, state: TurnState) -> None:
        self.state = copy.copy(state)
        self.state.sparse = list(state.sparse)

    # -------------------------------------------------------------- user side
    def buffer_sparse(self, chunk: EncodedChunk) -> None:
        """Keep at most one frame per `sparse_interval` seconds, newest last."""
        s = self.state
        for t, feats in zip(chunk.image_times, chunk.images):
            if s.last_sparse_time is None or t - s.last_sparse_time >= self.sparse_interval - 1e-6:
                s.sparse.append((float(t), feats))
                s.last_sparse_time = float(t)
        del s.sparse[: max(0, len(s.sparse) - self.max_sparse_units)]

    def open_user_turn(self) -> Tokens:
        s = self.state
        runs = [self.fmt.header("user")]
        for t, feats in s.sparse:
            runs += [self.fmt.timestamp(t), self.fmt.image_pads(feats)]
        s.sparse, s.last_sparse_time = [], None
        s.in_user_turn, s.audio_open = True, False
        return Tokens.cat(runs)

    def add_chunk(self, chunk: EncodedChunk) -> Tokens:
        """Tokens to prefill for this chunk (empty when it was only buffered)."""
        s = self.state
        if not s.in_user_turn and (not chunk.speaking or s.in_response):
            self.buffer_sparse(chunk)
            return Tokens.empty(self.fmt.codec_pad)
        runs = [self.open_user_turn()] if not s.in_user_turn else []
        runs.append(self.fmt.timestamp(chunk.start_time))
        runs += [self.fmt.image_pads(f) for f in chunk.images]
        if chunk.num_samples > 0 and not s.audio_open:
            runs.append(self.fmt.audio_open())
            s.audio_open = True
        if chunk.audio.shape[0]:
            if not s.audio_open:
                raise ValueError("audio frames arrived in a chunk that carries no samples")
            runs.append(self.fmt.audio_pads(chunk.audio))
        return Tokens.cat(runs)

    def close_user_turn(self, tail_audio: torch.Tensor | None = None) -> Tokens:
        """Close an open user turn: remaining audio frames, `<|/audio|>`, newline."""
        s = self.state
        if not s.in_user_turn:
            return Tokens.empty(self.fmt.codec_pad)
        runs = []
        if s.audio_open:
            if tail_audio is not None and tail_audio.shape[0]:
                runs.append(self.fmt.audio_pads(tail_audio))
            runs.append(self.fmt.audio_close())
        runs.append(self.fmt.newline())
        s.in_user_turn = s.audio_open = False
        return Tokens.cat(runs)

    # -------------------------------------------------------------- turns
    def add_text_turn(self, role: str, text: str) -> Tokens:
        return Tokens.cat([self.close_user_turn(), self.fmt.text_turn(role, text)])

    def begin_response(self, tail_audio: torch.Tensor | None = None, voice: bool = True) -> Tokens:
        runs = [self.close_user_turn(tail_audio), self.fmt.generation_prompt(voice)]
        self.state.in_response = True
        return Tokens.cat(runs)

    def end_response(self, needs_eos: bool) -> Tokens:
        """Close the assistant turn (`</longcat_s>` if the reply was cut, then newline)."""
        self.state.in_response = False
        return Tokens.cat(([self.fmt.eos()] if needs_eos else []) + [self.fmt.newline()])


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
) -> Tokens:
    """The offline path: one user turn from whole-file features.

    `audio` [N, D] are all encoder frames of the clip (streaming frames followed
    by the flushed tail), `video` the (time, features) of each frame pair,
    `sparse` earlier buffered frames. Returns `USER:` ... `\\n` (no generation
    prompt; without the `USER:` header when `header` is False).
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
    runs.append(fmt.newline())
    return Tokens.cat(runs)

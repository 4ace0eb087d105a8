"""The incremental (streaming) builder of the audio-visual user turn.

It emits, packet by packet, the layout that `sequence_av.build_av_user_turn`
builds from whole files. The layout never depends on where packets are split:
it is derived from stream time alone.

- Second k of a user turn covers the turn's audio samples [k, k+1) * 16000
  (counted from the turn's first packet) and is stamped `second{T0 + k}:`,
  T0 = the start time of that first packet.
- The audio frames of second k are those the streaming encoder has released
  by the end of second k: `frames_ready(p)` of the absolute encoder position p
  (the slot's encoder is one continuous stream over the session), hence the
  12/13 alternation of a look-ahead-free 80 ms encoder.
- A visual unit belongs to the second its time falls into.

A second is prefilled as one block (timestamp, its images, its audio) once the
audio has passed its end; a packet that stops inside a second leaves that
second pending in the builder state (which snapshots carry). 1 s packets that
start the turn are therefore prefilled at once, and a partial packet flushed at
a speculative point is prefilled with the response prompt by `begin_response`
(`close_user_turn`). A rollback to the mark taken before `begin_response`
restores the pending second, and the rest of the audio completes it exactly as
in a session that never speculated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from omni.sequence import ChatFormat, Tokens
from omni.sequence_av import EncodedChunk, FramesReady, default_frames_ready


@dataclass
class PendingSecond:
    """Material of one second of the user turn that is not prefilled yet."""

    images: list[torch.Tensor] = field(default_factory=list)
    audio: list[torch.Tensor] = field(default_factory=list)
    samples: int = 0

    def copy(self) -> "PendingSecond":
        return PendingSecond(list(self.images), list(self.audio), self.samples)


@dataclass
class TurnState:
    """Everything the incremental builder carries (cheap to snapshot)."""

    in_user_turn: bool = False
    audio_open: bool = False
    in_response: bool = False
    sparse: list[tuple[float, torch.Tensor]] = field(default_factory=list)
    last_sparse_time: float | None = None
    stream_samples: int = 0  # encoder samples fed so far (the whole session)
    stream_frames: int = 0  # encoder frames released so far
    turn_origin: int = 0  # encoder position of the user turn's first sample
    turn_time: float = 0.0  # stream time of the turn's second 0
    next_second: int = 0  # first second of the turn not yet prefilled
    pending: dict[int, PendingSecond] = field(default_factory=dict)
    # a timed dense frame (time, RGB) waiting for the other frame of its pair;
    # RealtimeOmni fills it, it lives here so that snapshots carry it
    lone_frame: tuple[float, Any] | None = None
    rounds: int = 0  # user turns opened so far (the round number of templates with rounds)

    def copy(self) -> "TurnState":
        return TurnState(
            self.in_user_turn, self.audio_open, self.in_response, list(self.sparse), self.last_sparse_time,
            self.stream_samples, self.stream_frames, self.turn_origin, self.turn_time, self.next_second,
            {k: v.copy() for k, v in self.pending.items()}, self.lone_frame, self.rounds,
        )


class IncrementalBuilder:
    """Builds the sequence one chunk at a time (the streaming path)."""

    def __init__(
        self,
        fmt: ChatFormat,
        sparse_interval: float = 2.0,
        max_sparse_units: int = 8,
        max_sparse_tokens: int | None = None,
        frames_ready: FramesReady = default_frames_ready,
        sample_rate: int = 16000,
        chunk_seconds: float = 1.0,
    ) -> None:
        self.fmt = fmt
        self.sparse_interval = sparse_interval
        self.max_sparse_units = max_sparse_units
        # a token budget too: a long answer watched by a large camera frame must not
        # buffer more than the next turn's context can take
        self.max_sparse_tokens = max_sparse_tokens
        self.frames_ready = frames_ready
        self.chunk_seconds = chunk_seconds
        self.chunk_samples = int(round(sample_rate * chunk_seconds))
        self.state = TurnState()

    def snapshot(self) -> TurnState:
        return self.state.copy()

    def restore(self, state: TurnState) -> None:
        self.state = state.copy()

    # -------------------------------------------------------------- user side
    def buffer_sparse(self, chunk: EncodedChunk) -> None:
        """Keep at most one frame per `sparse_interval` seconds, newest last."""
        s = self.state
        for t, feats in zip(chunk.image_times, chunk.images):
            if s.last_sparse_time is None or t - s.last_sparse_time >= self.sparse_interval - 1e-6:
                s.sparse.append((float(t), feats))
                s.last_sparse_time = float(t)
        del s.sparse[: max(0, len(s.sparse) - self.max_sparse_units)]
        if self.max_sparse_tokens is not None:
            while s.sparse and sum(int(f.shape[0]) for _, f in s.sparse) > self.max_sparse_tokens:
                del s.sparse[0]  # the oldest goes first

    def open_user_turn(self, origin: int | None = None, time: float = 0.0) -> Tokens:
        """`USER:` and the buffered sparse frames; the turn's second 0 starts at
        encoder position `origin` (default: the current one) and stream time `time`."""
        s = self.state
        runs = [self.fmt.user_header(s.rounds)]
        s.rounds += 1
        for t, feats in s.sparse:
            runs += [self.fmt.timestamp(t), self.fmt.image_pads(feats)]
        s.sparse, s.last_sparse_time = [], None
        s.in_user_turn, s.audio_open = True, False
        s.turn_origin = s.stream_samples if origin is None else origin
        s.turn_time, s.next_second, s.pending = float(time), 0, {}
        return Tokens.cat(runs)

    def add_images(self, items: list[tuple[float, torch.Tensor]]) -> None:
        """Visual units (time, features) of the open user turn, placed by their
        time (prefilled with their second)."""
        if not self.state.in_user_turn:
            raise RuntimeError("add_images needs an open user turn")
        for t, feats in items:
            self._second(max(self._second_of(t), self.state.next_second)).images.append(feats)

    def _second(self, k: int) -> PendingSecond:
        return self.state.pending.setdefault(k, PendingSecond())

    def _second_of(self, t: float) -> int:
        # the offline rule: unit at t belongs to [t0, t0 + 1) with 1 us slack
        return math.floor((t - self.state.turn_time + 1e-6) / self.chunk_seconds)

    def add_chunk(self, chunk: EncodedChunk) -> Tokens:
        """Tokens to prefill for this chunk (empty when it was only buffered or
        stops inside a second that later audio completes)."""
        s = self.state
        pos = s.stream_samples if chunk.stream_samples is None else int(chunk.stream_samples)
        fpos = s.stream_frames if chunk.stream_frames is None else int(chunk.stream_frames)
        n, m = int(chunk.num_samples), int(chunk.audio.shape[0])
        if m and n <= 0:
            raise ValueError("audio frames arrived in a chunk that carries no samples")
        s.stream_samples, s.stream_frames = pos + n, fpos + m
        if not s.in_user_turn and (not chunk.speaking or s.in_response):
            self.buffer_sparse(chunk)
            return Tokens.empty(self.fmt.codec_pad)
        runs = [] if s.in_user_turn else [self.open_user_turn(pos, chunk.start_time)]
        for t, feats in zip(chunk.image_times, chunk.images):
            # a unit for a second already prefilled (out of order) joins the oldest open one
            self._second(max(self._second_of(t), s.next_second)).images.append(feats)
        # split the chunk's audio at the turn's second boundaries
        lo, hi, i = pos - s.turn_origin, pos - s.turn_origin + n, 0
        while lo < hi:
            k = lo // self.chunk_samples
            end = min((k + 1) * self.chunk_samples, hi)
            sec = self._second(k)
            sec.samples += end - lo
            # frames released by the end of this piece (the last piece takes the rest)
            ready = fpos + m if end == hi else self.frames_ready(s.turn_origin + end)
            take = max(0, min(ready - (fpos + i), m - i))
            if take:
                sec.audio.append(chunk.audio[i : i + take])
                i += take
            lo = end
        turn_pos = s.stream_samples - s.turn_origin
        while (s.next_second + 1) * self.chunk_samples <= turn_pos:
            runs.append(self._emit_next())
        return Tokens.cat(runs, self.fmt.codec_pad)

    def _emit_next(self) -> Tokens:
        """Prefill block of the oldest open second: timestamp, images, audio."""
        s = self.state
        k = s.next_second
        sec = s.pending.pop(k, None) or PendingSecond()
        s.next_second += 1
        runs = [self.fmt.timestamp(s.turn_time + k * self.chunk_seconds)]
        runs += [self.fmt.image_pads(f) for f in sec.images]
        if sec.samples and not s.audio_open:
            runs.append(self.fmt.audio_open())
            s.audio_open = True
        if sec.audio:
            runs.append(self.fmt.audio_pads(torch.cat(sec.audio)))
        return Tokens.cat(runs, self.fmt.codec_pad)

    def close_user_turn(self, tail_audio: torch.Tensor | None = None) -> Tokens:
        """Close an open user turn: the pending seconds, the remaining audio
        frames (the encoder flush), `<|/audio|>`, newline."""
        s = self.state
        if not s.in_user_turn:
            return Tokens.empty(self.fmt.codec_pad)
        runs = []
        last = max(s.pending) if s.pending else s.next_second - 1
        while s.next_second <= last:
            runs.append(self._emit_next())
        if s.audio_open:
            if tail_audio is not None and tail_audio.shape[0]:
                runs.append(self.fmt.audio_pads(tail_audio))
            runs.append(self.fmt.audio_close())
        runs.append(self.fmt.newline())
        s.in_user_turn = s.audio_open = False
        return Tokens.cat(runs, self.fmt.codec_pad)

    # -------------------------------------------------------------- turns
    def add_text_turn(self, role: str, text: str) -> Tokens:
        closing = self.close_user_turn()
        round = None
        if role == "user":
            round, self.state.rounds = self.state.rounds, self.state.rounds + 1
        return Tokens.cat([closing, self.fmt.text_turn(role, text, round)])

    def begin_response(self, tail_audio: torch.Tensor | None = None, voice: bool = True, opening: str = "") -> Tokens:
        """Close the user turn and open the reply; `opening` is text the reply is
        made to start with (a forced tool call, omni/tool_calls.forced_opening)."""
        runs = [self.close_user_turn(tail_audio), self.fmt.generation_prompt(voice)]
        if opening:
            runs.append(self.fmt.text(opening))
        self.state.in_response = True
        return Tokens.cat(runs)

    def end_response(self, needs_eos: bool) -> Tokens:
        """Close the assistant turn (`</longcat_s>` if the reply was cut, then newline)."""
        self.state.in_response = False
        return Tokens.cat(([self.fmt.eos()] if needs_eos else []) + [self.fmt.newline()])

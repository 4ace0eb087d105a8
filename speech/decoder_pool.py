"""One streaming decoder state for many streams: a row per stream, rows reused.

`CodecDecoder.step_streams` gathers the single-stream states of the streams that
have a frame, steps them in one batch and scatters them back: the batch size and
the set of rows change from call to call, and every call copies every state. A
`DecoderPool` keeps one `DecoderState` of `rows` rows instead, and one step runs
on the whole pool with three per-row masks:

    reset   a row given to a new stream is zeroed inside the step (so the thread
            that hands out rows never writes the tensors the step writes)
    active  the row has a frame this step: its LSTM, frame window and counters move
    emit    the row is past its look-ahead: its upsampler runs and its audio is kept

Every shape is fixed, so on a GPU the step is captured once in a CUDA graph and
replayed (`mode="graph"`); the masks and codes are copied into the graph's
input buffers. `mode="full"` runs that same static step eagerly; `mode="rows"`
(the CPU default) steps the active rows only, gathered and scattered back.
Every mode gives each row the audio of its stream decoded alone by
`CodecDecoder.step` (tests/speech/test_decoder_pool.py).

Rows are handed out as `PoolRow` handles; a row returns to the pool when its
handle is flushed or dropped (garbage collected), so a reply cut by a barge-in
frees its row without anyone remembering to.
"""

from __future__ import annotations

import threading
import weakref

import torch

from speech import stream_ops as ops
from speech.decoder import CodecDecoder, DecoderState


class PoolRow:
    """A stream's row of a `DecoderPool` (what `RealtimeOmni.new_audio_state` hands out)."""

    __slots__ = ("pool", "row", "_release", "__weakref__")

    def __init__(self, pool: "DecoderPool", row: int) -> None:
        self.pool, self.row = pool, row
        self._release = weakref.finalize(self, pool._free, row)

    def release(self) -> None:
        self._release()


class DecoderPool:
    MODES = ("rows", "full", "graph")

    def __init__(self, dec: CodecDecoder, rows: int, mode: str = "rows") -> None:
        if rows < 1:
            raise ValueError(f"a decoder pool needs >= 1 row, got {rows}")
        if mode not in self.MODES:
            raise ValueError(f"decoder pool mode must be one of {self.MODES}, got {mode!r}")
        p = next(dec.parameters())
        if mode == "graph" and p.device.type != "cuda":
            raise ValueError("a CUDA-graph decoder pool needs the decoder on a CUDA device")
        self.dec, self.rows, self.device = dec, rows, p.device
        self.state: DecoderState = dec.init_state(rows)
        self.frames_in = torch.zeros(rows, dtype=torch.long, device=self.device)
        self.frames_pushed = torch.zeros(rows, dtype=torch.long, device=self.device)
        self.lock = threading.Lock()  # rows are handed out by one thread and stepped by another
        self._free_rows = list(range(rows - 1, -1, -1))
        self._fresh = [False] * rows  # to be zeroed by the next step
        self.mode = mode
        self._graph = None
        self._in: dict[str, torch.Tensor] = {}
        self._out: tuple[torch.Tensor, torch.Tensor] | None = None

    # ---- rows ----------------------------------------------------------------
    def acquire(self) -> PoolRow:
        with self.lock:
            if not self._free_rows:
                raise RuntimeError(f"the decoder pool's {self.rows} rows are all in use")
            row = self._free_rows.pop()
            self._fresh[row] = True
        return PoolRow(self, row)

    def _free(self, row: int) -> None:
        with self.lock:
            self._free_rows.append(row)

    @property
    def in_use(self) -> int:
        with self.lock:
            return self.rows - len(self._free_rows)

    # ---- stepping ------------------------------------------------------------
    @torch.no_grad()
    def step(self, items: list[tuple[PoolRow, torch.Tensor]]) -> list[torch.Tensor]:
        """One frame for each (row, codes [4]) -> per item the audio `CodecDecoder.step`
        would return for that stream alone: [hop] samples, or [0] during its look-ahead."""
        if not items:
            return []
        rows = [r.row for r, _ in items]
        if len(set(rows)) != len(rows) or any(r.pool is not self for r, _ in items):
            raise ValueError("DecoderPool.step needs distinct rows of this pool")
        codes = torch.zeros(self.rows, self.dec.cfg.num_codebooks, dtype=torch.long, device=self.device)
        codes[rows] = torch.stack([torch.as_tensor(c, device=self.device).reshape(-1) for _, c in items])
        active = torch.zeros(self.rows, dtype=torch.bool)
        active[rows] = True
        with self.lock:
            reset = torch.tensor(self._fresh, dtype=torch.bool)
            self._fresh = [False] * self.rows
        if self.mode == "rows":
            wav, emit = self._step_rows(codes, active, reset)
        elif self.mode == "full":
            wav, emit = self._full_step(codes, active.to(self.device), reset.to(self.device))
        else:  # the graph's outputs are overwritten by the next replay: hand out copies
            wav, emit = self._replay(codes, active.to(self.device), reset.to(self.device))
            wav = wav.clone()
        emit_host = emit.cpu()  # the one sync of a step: which rows have audio
        return [wav[r] if emit_host[r] else wav.new_zeros(0) for r in rows]

    def _step_rows(self, codes: torch.Tensor, active: torch.Tensor, reset: torch.Tensor):
        """Eager: reset rows zeroed, then only the active rows stepped, and only the rows
        past their look-ahead upsampled (as `CodecDecoder.step_streams` does)."""
        dec, s = self.dec, self.state
        if bool(reset.any()):
            self._zero(reset.to(self.device))
        idx = active.nonzero().flatten().to(self.device)
        t = self.frames_pushed[idx] - dec.lookahead
        emit_sub = (t >= 0) & (t < self.frames_in[idx] + 1)
        rows = idx[emit_sub]
        caches = [cache[rows] for cache in s.caches] if bool(emit_sub.any()) else []
        h, c = s.lstm_h[:, idx], s.lstm_c[:, idx]
        s.frames[idx], wav_sub = dec.step_gathered(codes[idx], h, c, s.frames[idx], emit_sub, caches)
        s.lstm_h[:, idx], s.lstm_c[:, idx] = h, c
        self.frames_in[idx] += 1
        self.frames_pushed[idx] += 1
        wav = torch.zeros(self.rows, dec.hop_length, dtype=s.frames.dtype, device=self.device)
        emit = torch.zeros(self.rows, dtype=torch.bool, device=self.device)
        if wav_sub is not None:
            wav[rows] = wav_sub
            for cache, new in zip(s.caches, caches):
                cache[rows] = new
            emit[rows] = True
        return wav, emit

    def _full_step(self, codes: torch.Tensor, active: torch.Tensor, reset: torch.Tensor):
        """Static shapes, no host sync: every row computes, masks decide what is kept."""
        self._zero(reset)
        wav, emit = self._masked_step(codes, self.state, self.frames_in, self.frames_pushed, active)
        self.frames_in += active.long()
        self.frames_pushed += active.long()
        return wav, emit

    def _masked_step(self, codes, s: DecoderState, frames_in, frames_pushed, active):
        """`CodecDecoder.step` for every row of `s` at once (in place), kept where `active`.
        Returns audio [R, hop] and the rows that emit it."""
        dec = self.dec
        h_old, c_old = s.lstm_h.clone(), s.lstm_c.clone()
        x = dec._lstm_step(codes, s.lstm_h, s.lstm_c)
        keep = active[None, :, None]
        s.lstm_h.copy_(torch.where(keep, s.lstm_h, h_old))
        s.lstm_c.copy_(torch.where(keep, s.lstm_c, c_old))
        window = torch.cat([s.frames, x.unsqueeze(-1)], dim=-1)  # [R, H, 2L + 1]
        s.frames.copy_(torch.where(active[:, None, None], window[..., 1:], s.frames))
        t = frames_pushed - dec.lookahead  # the frame each row's window centres on
        emit = active & (t >= 0) & (t < frames_in + 1)
        caches = list(s.caches)
        wav = dec.decoder.stream_upsample(ops.conv_valid(window, dec.decoder.model[0]), caches).squeeze(1)
        for old, new in zip(s.caches, caches):
            old.copy_(torch.where(emit[:, None, None], new, old))
        return wav, emit

    def _zero(self, mask: torch.Tensor) -> None:
        s = self.state
        for t in (s.lstm_h, s.lstm_c):
            t.masked_fill_(mask[None, :, None], 0)
        for t in (s.frames, *s.caches):
            t.masked_fill_(mask[:, None, None], 0)
        self.frames_in.masked_fill_(mask, 0)
        self.frames_pushed.masked_fill_(mask, 0)

    def warm_up(self) -> None:
        """Capture the CUDA graph now (mode "graph"), not on the first reply's path."""
        if self.mode == "graph" and self._graph is None:
            with torch.no_grad():
                self._capture(torch.zeros(self.rows, self.dec.cfg.num_codebooks, dtype=torch.long, device=self.device))

    def _replay(self, codes: torch.Tensor, active: torch.Tensor, reset: torch.Tensor):
        if self._graph is None:
            self._capture(codes)
        self._in["codes"].copy_(codes)
        self._in["active"].copy_(active)
        self._in["reset"].copy_(reset)
        self._graph.replay()
        return self._out

    def _capture(self, codes: torch.Tensor) -> None:
        self._in = {"codes": codes.clone(), "active": torch.zeros(self.rows, dtype=torch.bool, device=self.device),
                    "reset": torch.zeros(self.rows, dtype=torch.bool, device=self.device)}
        saved = self._snapshot()
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):  # warm-up runs (allocator, lazy kernels) before capture
            for _ in range(2):
                self._full_step(self._in["codes"], self._in["active"], self._in["reset"])
        torch.cuda.current_stream(self.device).wait_stream(side)
        self._graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self._graph):
            self._out = self._full_step(self._in["codes"], self._in["active"], self._in["reset"])
        self._restore(saved)  # neither warm-up nor capture may move a stream

    def _snapshot(self) -> list[torch.Tensor]:
        s = self.state
        return [t.clone() for t in (s.lstm_h, s.lstm_c, s.frames, *s.caches, self.frames_in, self.frames_pushed)]

    def _restore(self, saved: list[torch.Tensor]) -> None:
        s = self.state
        for t, v in zip((s.lstm_h, s.lstm_c, s.frames, *s.caches, self.frames_in, self.frames_pushed), saved):
            t.copy_(v)

    # ---- end of a stream -----------------------------------------------------
    @torch.no_grad()
    def flush(self, handle: PoolRow) -> torch.Tensor:
        """The audio of the stream's last look-ahead frames ([L * hop] at most; `CodecDecoder.flush`),
        then the row returns to the pool."""
        r = handle.row
        with self.lock:
            fresh = self._fresh[r]
        s = self.state
        one = self.dec.init_state(1)
        if not fresh:  # a row never stepped still holds its previous stream's values
            one.lstm_h, one.lstm_c = s.lstm_h[:, r : r + 1].clone(), s.lstm_c[:, r : r + 1].clone()
            one.frames = s.frames[r : r + 1].clone()
            one.caches = [c[r : r + 1].clone() for c in s.caches]
            one.frames_in, one.frames_pushed = int(self.frames_in[r]), int(self.frames_pushed[r])
        tail = self.dec.flush(one)[0]
        handle.release()
        return tail

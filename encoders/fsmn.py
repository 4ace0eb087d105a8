"""The DFSMN audio encoder of LongCat-Flash-Omni (CTC-pretrained), streamable.

    ffn:   Linear(1200 -> H) -> ReLU6 -> Linear(H -> P, no bias)       (pre-FFN)
    fsmn_layers[i]: x += memory(LayerNorm(x))   depthwise Conv1d over time,
                    left_order frames of history, right_order of look-ahead
                    (0 in the first layers, 1 in the last num_right_layers)
                    x += ffn(x) = Linear(LayerNorm(x)) -> ReLU6 -> Linear
    dnn:   Linear(P -> H) -> ReLU6 -> Linear(H -> H) -> ReLU6          (post-FFN)
    output: Linear(H -> vocab)                                          (CTC head)

Parameter names are the keys of the official ``audio/audio_encoder.pt``.

`forward` runs whole padded sequences; `FSMNStreamState` + `step` / `flush`
run the same computation chunk by chunk. Padded frames are zeroed before every
layer and after its memory LayerNorm, so the memory convolution sees exact zeros
beyond a sequence end, as a lone sequence would (batch-invariant, and equal to
the streaming flush).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from encoders.ragged import concat_rows, slice_rows
from omni.config import AudioEncoderConfig
from omni.nn import StreamingState


class FSMNLayer(nn.Module):
    def __init__(self, dim: int, hidden: int, left: int, right: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.left, self.right, self.dilation = left, right, dilation
        self.memory_ln = nn.LayerNorm(dim)
        self.memory = nn.Conv1d(dim, dim, left + right + 1, dilation=dilation, groups=dim, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.ffn = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.ReLU6(), nn.Linear(hidden, dim))

    @property
    def left_context(self) -> int:
        return self.left * self.dilation

    @property
    def lookahead(self) -> int:
        return self.right * self.dilation

    def _conv(self, h: torch.Tensor) -> torch.Tensor:
        """h [B, T + context, C] already padded -> [B, T, C]."""
        return self.memory(h.transpose(1, 2)).transpose(1, 2)

    def _ffn(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.ffn(x)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x [B, T, C], mask [B, T, 1] float (1 = valid)."""
        x = x * mask
        h = self.memory_ln(x) * mask
        h = F.pad(h, (0, 0, self.left_context, self.lookahead))
        x = x + self.dropout(self._conv(h))
        return self._ffn(x)

    def step(self, x: torch.Tensor, counts: list[int], st: "LayerState") -> tuple[torch.Tensor, list[int]]:
        """New input frames (padded [B, n, C], counts[r] valid in row r) -> output
        frames whose look-ahead is complete, padded, and their counts."""
        n = x.shape[1]
        if n == 0 or not any(counts):
            return x[:, :0], [0] * x.shape[0]
        h = torch.cat([st.h_cache, self.memory_ln(x)], dim=1)
        res = torch.cat([st.x_cache, x], dim=1)
        # output i of row r is centred on its frame i - lookahead (the cache holds
        # left context + the pending look-ahead frames)
        y = self._ffn(res[:, :n] + self.dropout(self._conv(h)))
        k = st.h_cache.shape[1]
        st.h_cache = slice_rows(h, counts, [k] * len(counts))
        st.x_cache = slice_rows(res, counts, [self.lookahead] * len(counts))
        return _drop_warmup(y, counts, st)

    def flush(self, st: "LayerState") -> tuple[torch.Tensor, list[int]]:
        """End of stream: the pending `lookahead` frames, with zero look-ahead input."""
        r = self.lookahead
        b = st.h_cache.shape[0]
        if r == 0:
            return st.x_cache, [0] * b
        h = torch.cat([st.h_cache, st.h_cache.new_zeros(b, r, st.h_cache.shape[2])], dim=1)
        y = self._ffn(st.x_cache + self.dropout(self._conv(h)))
        return _drop_warmup(y, [r] * b, st)


def _drop_warmup(y: torch.Tensor, counts: list[int], st: "LayerState") -> tuple[torch.Tensor, list[int]]:
    # The first `lookahead` outputs of a stream are centred before its frame 0
    # (the cache starts as padding): they do not exist in the full pass.
    drop = [min(w, c) for w, c in zip(st.warmup, counts)]
    if not any(drop):
        return y[:, : max(counts)], counts
    st.warmup = [w - d for w, d in zip(st.warmup, drop)]
    left = [c - d for c, d in zip(counts, drop)]
    return slice_rows(y, drop, left), left


@dataclasses.dataclass
class LayerState(StreamingState):
    h_cache: torch.Tensor  # [B, left_context + lookahead, C] memory-LN outputs (zeros = padding)
    x_cache: torch.Tensor  # [B, lookahead, C] residual inputs of pending frames (zeros at start)
    warmup: list[int]  # per row: leading outputs still to drop
    lookahead: int

    def reset(self) -> None:
        self.reset_rows(range(len(self.warmup)))

    def reset_rows(self, rows) -> None:
        rows = list(rows)
        self.h_cache[rows] = 0
        self.x_cache[rows] = 0
        for r in rows:
            self.warmup[r] = self.lookahead

    def select(self, row: int) -> "LayerState":
        return self.select_rows([row])

    def select_rows(self, rows: list[int]) -> "LayerState":
        idx = torch.tensor(rows, dtype=torch.long, device=self.h_cache.device)
        return LayerState(self.h_cache[idx].clone(), self.x_cache[idx].clone(), [self.warmup[r] for r in rows],
                          self.lookahead)


@dataclasses.dataclass
class FSMNStreamState(StreamingState):
    layers: list[LayerState]

    def reset(self) -> None:
        for st in self.layers:
            st.reset()

    def reset_rows(self, rows) -> None:
        for st in self.layers:
            st.reset_rows(rows)

    def select(self, row: int) -> "FSMNStreamState":
        return FSMNStreamState([st.select(row) for st in self.layers])

    def select_rows(self, rows: list[int]) -> "FSMNStreamState":
        return FSMNStreamState([st.select_rows(rows) for st in self.layers])

    def to(self, device) -> "FSMNStreamState":
        for st in self.layers:
            st.to(device)
        return self


class DFSMNEncoder(nn.Module):
    """Spliced features [B, T, 1200] -> encoder output [B, T, hidden] (80 ms frames)."""

    def __init__(self, cfg: AudioEncoderConfig) -> None:
        super().__init__()
        if not 0 <= cfg.num_right_layers <= cfg.num_layers:
            raise ValueError(f"AudioEncoderConfig.num_right_layers {cfg.num_right_layers} not in [0, num_layers]")
        self.cfg = cfg
        h, p = cfg.hidden_size, cfg.proj_size
        self.ffn = nn.Sequential(nn.Linear(cfg.input_size, h), nn.ReLU6(), nn.Linear(h, p, bias=False))
        first_right = cfg.num_layers - cfg.num_right_layers
        self.fsmn_layers = nn.ModuleList(
            FSMNLayer(p, h, cfg.left_order, cfg.right_order if i >= first_right else 0, cfg.memory_dilation, cfg.dropout)
            for i in range(cfg.num_layers)
        )
        self.dnn = nn.Sequential(nn.Linear(p, h), nn.ReLU6(), nn.Linear(h, h), nn.ReLU6())
        self.output = nn.Linear(h, cfg.ctc_vocab_size)

    @property
    def lookahead_frames(self) -> int:
        return sum(layer.lookahead for layer in self.fsmn_layers)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """feats [B, T, input_size], lengths [B] (None = all full) -> [B, T, hidden]
        (padded frames are zero)."""
        b, t, _ = feats.shape
        if lengths is None:
            mask = feats.new_ones(b, t, 1)
        else:
            mask = (torch.arange(t, device=feats.device)[None] < lengths.to(feats.device)[:, None])
            mask = mask[..., None].to(feats.dtype)
        x = self.ffn(feats)
        for layer in self.fsmn_layers:
            x = layer(x, mask)
        return self.dnn(x) * mask

    def ctc_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.output(hidden)

    # --- streaming ---------------------------------------------------------

    def init_state(self, batch_size: int, device=None, dtype=None) -> FSMNStreamState:
        w = self.ffn[0].weight
        device, dtype = device or w.device, dtype or w.dtype
        p = self.cfg.proj_size
        layers = [
            LayerState(
                h_cache=torch.zeros(batch_size, l.left_context + l.lookahead, p, device=device, dtype=dtype),
                x_cache=torch.zeros(batch_size, l.lookahead, p, device=device, dtype=dtype),
                warmup=[l.lookahead] * batch_size,
                lookahead=l.lookahead,
            )
            for l in self.fsmn_layers
        ]
        return FSMNStreamState(layers)

    def step(self, feats: torch.Tensor, counts: list[int], state: FSMNStreamState) -> tuple[torch.Tensor, list[int]]:
        """New spliced frames (padded [B, n, input_size], counts per row) ->
        finished encoder frames (padded [B, m, hidden]) and their counts."""
        x = self.ffn(feats)
        for layer, st in zip(self.fsmn_layers, state.layers):
            x, counts = layer.step(x, counts, st)
        return self.dnn(x), counts

    def flush(self, state: FSMNStreamState, feats: torch.Tensor, counts: list[int]) -> tuple[torch.Tensor, list[int]]:
        """Last spliced frames + end of stream -> every remaining frame."""
        x = self.ffn(feats)
        for layer, st in zip(self.fsmn_layers, state.layers):
            x, counts = layer.step(x, counts, st)
            tail, tail_counts = layer.flush(st)
            x, counts = concat_rows(x, counts, tail, tail_counts)
        return self.dnn(x), counts

"""The streaming speech decoder: codec tokens -> 16 kHz waveform.

Layout and parameter names follow the official `LongCatAudioCodecDecoder`
(causal `MemDecoder`), so a released decoder state dict loads with
`strict=True`:

    semantic_dequantizer.dequant            Embedding(K_sem, semantic_dim)
    acoustic_quantizer.quantizers.{0,1,2}   grouped residual VQ (from_codes)
    decoder.mem_layers.0                    GLSTM: LSTM -> LayerNorm -> LSTM -> LayerNorm
    decoder.model.0                         WNConv1d(k = 2*lookahead + 1, symmetric pad):
                                            the only look-ahead (3 frames = 180 ms)
    decoder.model.1..4                      causal blocks: Snake -> WNConvTranspose(k = stride)
                                            -> 3 residual units (dilation 1, 3, 9; causal k=7)
    decoder.model.5, .6, .7, .8             Snake, ZeroPad1d((6, 0)), WNConv1d(->1, k=7), Tanh

Everything after `model.0` is causal and the transposed convolutions do not
overlap (kernel = stride), so streaming needs only: the LSTM (h, c), the last
2*lookahead LSTM frames, and 6*dilation past samples per residual unit (plus 6
for the final conv). `step` feeds one frame and returns the audio of frame
t - lookahead; `flush` pads the LSTM output with the zeros that the full-sequence
convolution pads with, so the concatenated stream equals `forward` on the whole
sequence (up to float rounding of the LSTM kernels).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from omni.config import CodecConfig
from omni.nn import StreamingModule, StreamingState
from speech.layers import Snake1d, WNConv1d, WNConvTranspose1d
from speech.quantizer import GroupResidualVectorQuantize
from speech import stream_ops as ops


class ResidualUnit(nn.Module):
    def __init__(self, dim: int, dilation: int) -> None:
        super().__init__()
        self.context = 6 * dilation  # (kernel 7 - 1) * dilation past samples
        self.block = nn.Sequential(
            Snake1d(dim),
            nn.ZeroPad1d((self.context, 0)),
            WNConv1d(dim, dim, kernel_size=7, dilation=dilation),
            Snake1d(dim),
            WNConv1d(dim, dim, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)

    def stream(self, x: torch.Tensor, cache: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, C, n], cache [B, C, context] (past Snake outputs) -> (y, new cache)."""
        h = torch.cat([cache, self.block[0](x)], dim=-1)
        y = ops.conv_valid(self.block[3](ops.conv_valid(h, self.block[2])), self.block[4])
        return x + y, h[..., -self.context :]


class CausalDecoderBlock(nn.Module):
    def __init__(self, input_dim: int, output_dim: int, stride: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            Snake1d(input_dim),
            WNConvTranspose1d(input_dim, output_dim, kernel_size=stride, stride=stride),
            ResidualUnit(output_dim, 1),
            ResidualUnit(output_dim, 3),
            ResidualUnit(output_dim, 9),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class GLSTM(nn.Module):
    """Two stacked unidirectional LSTMs, each followed by LayerNorm (groups = 1)."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.lstm_list1 = nn.ModuleList([nn.LSTM(hidden_size, hidden_size, 1, batch_first=True)])
        self.lstm_list2 = nn.ModuleList([nn.LSTM(hidden_size, hidden_size, 1, batch_first=True)])
        self.ln1 = nn.LayerNorm(hidden_size)
        self.ln2 = nn.LayerNorm(hidden_size)

    def forward(self, x: torch.Tensor, state: list[tuple[torch.Tensor, torch.Tensor]] | None = None):
        """x [B, T, H] -> (y [B, T, H], [(h1, c1), (h2, c2)])."""
        s1 = s2 = None
        if state is not None:
            s1, s2 = state
        y, n1 = self.lstm_list1[0](x, s1)
        y = self.ln1(y)
        y, n2 = self.lstm_list2[0](y, s2)
        return self.ln2(y), [n1, n2]


@dataclasses.dataclass
class DecoderState(StreamingState):
    """Per-stream carry of the decoder; batch dimension = streams."""

    lstm_h: torch.Tensor  # [2 * lstm_layers, B, H]
    lstm_c: torch.Tensor  # [2 * lstm_layers, B, H]
    frames: torch.Tensor  # [B, H, 2 * lookahead] last LSTM outputs (zeros = left padding)
    caches: list[torch.Tensor]  # per residual unit [B, C, 6 * dilation], then the final conv [B, C, 6]
    frames_in: int = 0  # code frames received
    frames_pushed: int = 0  # LSTM frames entered in `frames` (flush adds zero frames)

    def reset(self) -> None:
        for t in (self.lstm_h, self.lstm_c, self.frames, *self.caches):
            t.zero_()
        self.frames_in = 0
        self.frames_pushed = 0

    def reset_slot(self, index: int) -> None:
        """Zero one stream of a batched state (its counters must match the others)."""
        for t in (self.lstm_h, self.lstm_c):
            t[:, index].zero_()
        for t in (self.frames, *self.caches):
            t[index].zero_()

    def to(self, device) -> "DecoderState":
        self.lstm_h, self.lstm_c, self.frames = (t.to(device) for t in (self.lstm_h, self.lstm_c, self.frames))
        self.caches = [c.to(device) for c in self.caches]
        return self


class MemDecoder(nn.Module):
    def __init__(self, input_channel: int, channels: int, rates: tuple[int, ...], lookahead: int, lstm_layers: int) -> None:
        super().__init__()
        self.lookahead = lookahead
        self.mem_layers = nn.ModuleList(GLSTM(input_channel) for _ in range(lstm_layers))
        layers: list[nn.Module] = [
            WNConv1d(input_channel, channels, kernel_size=2 * lookahead + 1, padding=lookahead)
        ]
        out_dim = channels
        for i, stride in enumerate(rates):
            in_dim, out_dim = channels // 2**i, channels // 2 ** (i + 1)
            layers.append(CausalDecoderBlock(in_dim, out_dim, stride))
        layers += [Snake1d(out_dim), nn.ZeroPad1d((6, 0)), WNConv1d(out_dim, 1, kernel_size=7), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        self.num_blocks = len(rates)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, C_in, T] -> wav [B, 1, T * prod(rates)]."""
        h = x.transpose(1, 2)
        for mem in self.mem_layers:
            h, _ = mem(h)
        return self.model(h.transpose(1, 2))

    # --- streaming ---------------------------------------------------------
    def residual_units(self) -> list[ResidualUnit]:
        return [ru for blk in self.model[1 : 1 + self.num_blocks] for ru in blk.block[2:]]

    def cache_shapes(self) -> list[tuple[int, int]]:
        shapes = [(ru.block[2].in_channels, ru.context) for ru in self.residual_units()]
        return shapes + [(self.model[-2].in_channels, 6)]

    def stream_upsample(self, x: torch.Tensor, caches: list[torch.Tensor]) -> torch.Tensor:
        """x [B, channels, n] frame-level conv output -> wav [B, 1, n * hop]; updates caches in place."""
        k = 0
        for blk in self.model[1 : 1 + self.num_blocks]:
            x = ops.conv_transpose_nonoverlap(blk.block[0](x), blk.block[1])  # kernel == stride: no state
            for ru in blk.block[2:]:
                x, caches[k] = ru.stream(x, caches[k])
                k += 1
        h = torch.cat([caches[k], self.model[-4](x)], dim=-1)
        caches[k] = h[..., -6:]
        return torch.tanh(ops.conv_valid(h, self.model[-2]))


class SingleTokenDequantizer(nn.Module):
    def __init__(self, num_tokens: int, dim: int) -> None:
        super().__init__()
        self.dequant = nn.Embedding(num_tokens, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dequant(x)


class CodecDecoder(StreamingModule[DecoderState]):
    """Codes [B, 1 + N_acoustic, T] -> waveform, whole-sequence or frame by frame."""

    def __init__(self, cfg: CodecConfig) -> None:
        super().__init__()
        self.cfg = cfg
        hop = 1
        for r in cfg.dec_ratios:
            hop *= r
        if hop != cfg.hop_length:
            raise ValueError(f"CodecConfig.dec_ratios {cfg.dec_ratios} multiply to {hop}, not hop_length {cfg.hop_length}")
        self.hop_length = hop
        self.lookahead = cfg.lookahead_frames
        self.input_dim = cfg.semantic_dim + cfg.codec_dimension
        self.semantic_dequantizer = SingleTokenDequantizer(cfg.semantic_codebook_size, cfg.semantic_dim)
        self.acoustic_quantizer = GroupResidualVectorQuantize(
            cfg.codec_dimension, cfg.acoustic_codebooks, cfg.acoustic_subcodebook_size, cfg.acoustic_codebook_dim
        )
        self.decoder = MemDecoder(self.input_dim, cfg.decoder_dim, tuple(cfg.dec_ratios), self.lookahead, cfg.lstm_layers)

    # --- whole sequence ----------------------------------------------------
    def check_codes(self, codes: torch.Tensor) -> None:
        """Raise a clear error on a wrong shape, dtype or out-of-range code."""
        c = self.cfg
        if codes.dim() != 3 or codes.shape[1] != c.num_codebooks:
            raise ValueError(f"codes must have shape [B, {c.num_codebooks}, T], got {tuple(codes.shape)}")
        if codes.is_floating_point():
            raise TypeError(f"codes must be an integer tensor, got {codes.dtype}")
        if codes.numel() == 0:
            return
        limits = [c.semantic_codebook_size] + [c.acoustic_codebook_size] * c.acoustic_codebooks
        for i, lim in enumerate(limits):
            lo, hi = int(codes[:, i].min()), int(codes[:, i].max())
            if lo < 0 or hi >= lim:
                raise ValueError(f"codebook {i} values must be in [0, {lim}) (no offset), got range [{lo}, {hi}]")

    def latents(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, 4, T] -> decoder input [B, semantic_dim + codec_dimension, T]."""
        sem = self.semantic_dequantizer(codes[:, 0]).transpose(1, 2)
        ac = self.acoustic_quantizer.from_codes(codes[:, 1:])
        return torch.cat([sem, ac], dim=1)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, 4, T] -> wav [B, T * hop]."""
        return self.decoder(self.latents(codes)).squeeze(1)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        return self.decoder(latents).squeeze(1)

    # --- streaming ---------------------------------------------------------
    def init_state(self, batch_size: int = 1, device=None) -> DecoderState:
        p = next(self.parameters())
        device = p.device if device is None else device
        dtype = p.dtype
        n = 2 * len(self.decoder.mem_layers)
        H = self.input_dim
        z = lambda *s: torch.zeros(*s, device=device, dtype=dtype)  # noqa: E731
        return DecoderState(
            lstm_h=z(n, batch_size, H),
            lstm_c=z(n, batch_size, H),
            frames=z(batch_size, H, 2 * self.lookahead),
            caches=[z(batch_size, c, k) for c, k in self.decoder.cache_shapes()],
        )

    def _push(self, h: torch.Tensor, state: DecoderState) -> torch.Tensor:
        """h [B, H] one LSTM frame -> audio [B, hop] of frame (pushed - lookahead), or [B, 0]."""
        window = torch.cat([state.frames, h.unsqueeze(-1)], dim=-1)  # [B, H, 2L + 1]
        state.frames = window[..., 1:]
        t = state.frames_pushed - self.lookahead
        state.frames_pushed += 1
        if t < 0 or t >= state.frames_in:
            return h.new_zeros(h.shape[0], 0)
        x = ops.conv_valid(window, self.decoder.model[0])  # the window is exactly one output
        return self.decoder.stream_upsample(x, state.caches).squeeze(1)

    def _lstm_step(self, codes: torch.Tensor, lstm_h: torch.Tensor, lstm_c: torch.Tensor) -> torch.Tensor:
        """codes [B, 4] -> LSTM output [B, H]; updates lstm_h / lstm_c [layers, B, H] in place."""
        x = self.latents(codes.unsqueeze(-1))[..., 0]  # [B, H]
        k = 0
        for mem in self.decoder.mem_layers:
            for lstm, ln in ((mem.lstm_list1[0], mem.ln1), (mem.lstm_list2[0], mem.ln2)):
                h, c = ops.lstm_step(x, lstm_h[k], lstm_c[k], lstm)
                lstm_h[k], lstm_c[k] = h, c
                x = ln(h)
                k += 1
        return x

    def step(self, codes: torch.Tensor, state: DecoderState) -> torch.Tensor:
        """codes [B, 4] (or [B, 4, 1]) of frame t -> audio [B, hop] of frame t - lookahead ([B, 0] at first)."""
        if codes.dim() == 3:
            codes = codes[..., 0]
        x = self._lstm_step(codes, state.lstm_h, state.lstm_c)
        state.frames_in += 1
        return self._push(x, state)

    def step_streams(self, codes: torch.Tensor, states: list[DecoderState]) -> list[torch.Tensor]:
        """One frame for each of N independent single-stream states, in one batched pass.

        codes [N, 4]; states: N distinct `init_state(1)` states, each at its own position
        in its stream. Returns per stream the audio `step` would return for it alone:
        [hop] samples, or [0] while its look-ahead fills. Streams are gathered into one
        batch (a copy of their small state tensors), stepped once and scattered back, so
        the matmuls run once for all streams instead of once per stream. (The batch size
        and the set of emitting rows change from call to call; the pooled decoder of
        speech/decoder_pool.py keeps the fixed shapes a CUDA graph needs.)
        """
        if len(states) == 1:
            return [self.step(codes, states[0])[0]]
        if len({id(s) for s in states}) != len(states) or any(s.frames.shape[0] != 1 for s in states):
            raise ValueError("step_streams needs distinct single-stream states (init_state(1))")
        emit = [i for i, s in enumerate(states) if 0 <= s.frames_pushed - self.lookahead < s.frames_in + 1]
        lstm_h = torch.cat([s.lstm_h for s in states], dim=1)
        lstm_c = torch.cat([s.lstm_c for s in states], dim=1)
        caches = [torch.cat([states[i].caches[k] for i in emit]) for k in range(len(states[0].caches))] if emit else []
        frames, wav = self.step_gathered(codes, lstm_h, lstm_c, torch.cat([s.frames for s in states]),
                                         emit if len(emit) < len(states) else None, caches)
        for i, s in enumerate(states):
            # each state keeps views of its row: rows are disjoint, and the next gather copies them anyway
            s.lstm_h, s.lstm_c, s.frames = lstm_h[:, i : i + 1], lstm_c[:, i : i + 1], frames[i : i + 1]
            s.frames_in += 1
            s.frames_pushed += 1
        out = [frames.new_zeros(0)] * len(states)
        for j, i in enumerate(emit):
            states[i].caches = [c[j : j + 1] for c in caches]
            out[i] = wav[j]
        return out

    def step_gathered(self, codes: torch.Tensor, lstm_h: torch.Tensor, lstm_c: torch.Tensor, frames: torch.Tensor,
                      emit, caches: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One frame of N streams gathered into one batch (what `step_streams` and the
        pooled decoder, speech/decoder_pool.py, share). codes [N, 4]; lstm_h / lstm_c
        [layers, N, H], updated in place; frames [N, H, 2L] the streams' last LSTM frames;
        `emit`: the rows past their look-ahead (indices or a bool mask; None: all rows),
        whose upsampler caches `caches` (gathered, in `emit` order) are replaced in the
        list. Returns the new frames [N, H, 2L] and the emitting rows' audio [n, hop]
        (None when no row emits), as `step` gives each stream alone."""
        x = self._lstm_step(codes, lstm_h, lstm_c)
        window = torch.cat([frames, x.unsqueeze(-1)], dim=-1)  # [N, H, 2L + 1]
        if not caches:
            return window[..., 1:], None
        rows = window if emit is None else window[emit]
        wav = self.decoder.stream_upsample(ops.conv_valid(rows, self.decoder.model[0]), caches).squeeze(1)
        return window[..., 1:], wav

    def prepare_inference(self) -> "CodecDecoder":
        """Fold weight norm and cache stream-layout weights (frozen inference only)."""
        from speech.layers import fold_weight_norm

        fold_weight_norm(self)
        ops.prepare(self)
        return self.eval().requires_grad_(False)

    def flush(self, state: DecoderState) -> torch.Tensor:
        """Audio of the last `lookahead` frames (zero right context, as in `forward`)."""
        B, H = state.frames.shape[:2]
        outs = []
        for _ in range(self.lookahead):
            outs.append(self._push(state.frames.new_zeros(B, H), state))
        return torch.cat(outs, dim=-1)

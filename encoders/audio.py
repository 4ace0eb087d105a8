"""The streaming audio encoder as the rest of the system uses it:
PCM -> fbank/CMVN/splice -> DFSMN -> projector, whole or chunk by chunk.

    enc = StreamingAudioEncoder(get_flavor("audio", "debug")).eval()
    emb, lens = enc(pcm)                        # full pass: [B, F, out_dim], [B]
    state = enc.init_state(batch_size=B)
    for chunk in chunks:                        # any sizes (20 ms, 1 s, uneven...)
        frames = enc.step(chunk, state)         # [B, m, out_dim], m >= 0
    frames = enc.flush(state)                   # the tail; state.reset() to reuse

Rows of one state are batch slots: `step` feeds all rows the same number of
samples; `step_rows` feeds each row its own chunk (any lengths, rows at any
stream positions), `state.reset_rows([r])` starts slot r over and
`flush_row(state, r)` ends one slot's stream while the others go on.

Chunked output equals the full pass (fp32 tolerance). Encoder frame j (the 80 ms slot starting at
sample 1280 j) is emitted as soon as `samples_needed(j)` samples have arrived:
its fbank window and splice context (15 ms past the slot) plus one frame of
look-ahead in each of the last `num_right_layers` FSMN layers (6 x 80 ms), i.e.
`lookahead_ms` = 495 ms after the end of its slot with the `longcat` config.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from encoders.frontend import AudioFrontend, FrontendState
from encoders.fsmn import DFSMNEncoder, FSMNStreamState
from encoders.ragged import pad_rows
from omni.config import AudioEncoderConfig
from omni.nn import StreamingModule, StreamingState


def num_encoder_frames(num_samples: int, cfg: AudioEncoderConfig) -> int:
    """Encoder frames (= LLM audio tokens, 12.5 / s) for a whole clip of N samples:
    ceil(fbank_frames / 8), fbank_frames = (N - 400) // 160 + 1 (0 below 400)."""
    n = int(num_samples)
    t = 0 if n < cfg.window_samples else (n - cfg.window_samples) // cfg.hop_samples + 1
    return -(-t // cfg.splice_stride)


def samples_needed(frame: int, cfg: AudioEncoderConfig) -> int:
    """Samples that must have arrived before `step` emits encoder frame `frame`:
    the splice context of frame + lookahead_frames, whose last fbank window ends there."""
    j = frame + cfg.lookahead_frames
    return (j * cfg.splice_stride + cfg.splice_right) * cfg.hop_samples + cfg.window_samples


def lookahead_ms(cfg: AudioEncoderConfig) -> float:
    """Delay from the end of a frame's 80 ms slot until `step` can emit it
    (495 ms for the `longcat` config: 6 x 80 ms FSMN look-ahead + 15 ms fbank/splice)."""
    return (samples_needed(0, cfg) - cfg.samples_per_frame) * 1000.0 / cfg.sample_rate


class AudioProjector(nn.Sequential):
    """Linear -> GELU -> Linear (keys `0.*`, `2.*` of audio/audio_projector.pt)."""

    def __init__(self, cfg: AudioEncoderConfig) -> None:
        super().__init__(nn.Linear(cfg.hidden_size, cfg.out_dim), nn.GELU(), nn.Linear(cfg.out_dim, cfg.out_dim))


@dataclasses.dataclass
class AudioStreamState(StreamingState):
    """Everything carried between chunks for B streams (rows)."""

    frontend: FrontendState
    encoder: FSMNStreamState
    num_samples: list[int]  # per row: samples fed so far
    num_frames: list[int]  # per row: encoder frames emitted so far

    @property
    def batch_size(self) -> int:
        return len(self.num_samples)

    def reset(self) -> None:
        self.reset_rows(range(self.batch_size))

    def reset_rows(self, rows) -> None:
        """Start the given rows (batch slots) over as new streams; others go on."""
        rows = list(rows)
        self.frontend.reset_rows(rows)
        self.encoder.reset_rows(rows)
        for r in rows:
            self.num_samples[r] = self.num_frames[r] = 0

    def select(self, row: int) -> "AudioStreamState":
        """A batch-1 copy of one row's state."""
        return AudioStreamState(self.frontend.select(row), self.encoder.select(row),
                                [self.num_samples[row]], [self.num_frames[row]])

    def select_rows(self, rows: list[int]) -> "AudioStreamState":
        """A copy of the given rows' states, in that order (e.g. to flush them together
        while the rows themselves go on)."""
        return AudioStreamState(self.frontend.select_rows(rows), self.encoder.select_rows(rows),
                                [self.num_samples[r] for r in rows], [self.num_frames[r] for r in rows])


class StreamingAudioEncoder(StreamingModule[AudioStreamState]):
    """Submodules: `frontend` (fbank + CMVN buffers), `encoder` (official
    audio_encoder.pt keys), `projector` (official audio_projector.pt keys)."""

    def __init__(self, cfg: AudioEncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.frontend = AudioFrontend(cfg)
        self.encoder = DFSMNEncoder(cfg)
        self.projector = AudioProjector(cfg)

    @property
    def device(self) -> torch.device:
        return self.projector[0].weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.projector[0].weight.dtype

    # --- timing ---------------------------------------------------------------

    def num_frames(self, num_samples: int) -> int:
        """Encoder frames (= LLM audio tokens, 12.5 / s) for a whole clip of N samples."""
        return num_encoder_frames(num_samples, self.cfg)

    def samples_needed(self, j: int) -> int:
        """Samples that must have arrived before `step` emits encoder frame j."""
        return samples_needed(j, self.cfg)

    @property
    def lookahead_ms(self) -> float:
        """Delay from the end of a frame's 80 ms slot until it is emitted."""
        return lookahead_ms(self.cfg)

    # --- full pass ----------------------------------------------------------------

    def _pcm(self, pcm) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(pcm) if not isinstance(pcm, torch.Tensor) else pcm)
        if x.dim() == 1:
            x = x[None]
        if x.dim() != 2:
            raise ValueError(f"audio must be [samples] or [batch, samples], got shape {tuple(x.shape)}")
        if not torch.is_floating_point(x):
            raise ValueError(f"audio must be float PCM in [-1, 1], got dtype {x.dtype}")
        return x.to(self.frontend.cmvn.mean.device, torch.float32)

    def features(self, pcm, num_samples: torch.Tensor | None = None,
                 pad_to_buffer: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Spliced 1200-dim features [B, F, input_size] and frame lengths [B]
        (`pad_to_buffer`: F from the buffer's width, see `AudioFrontend.forward`)."""
        return self.frontend(self._pcm(pcm), num_samples, pad_to_buffer)

    def forward(self, pcm, num_samples: torch.Tensor | None = None,
                pad_to_buffer: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """PCM [B, samples] (float, 16 kHz) -> projected [B, F, out_dim], frame lengths [B].
        With `pad_to_buffer` and lengths on the device, nothing is read back to the host."""
        feats, lens = self.features(pcm, num_samples, pad_to_buffer)
        hidden = self.encoder(feats.to(self.dtype), lens)
        mask = (torch.arange(hidden.shape[1], device=hidden.device)[None] < lens.to(hidden.device)[:, None])
        return self.projector(hidden) * mask[..., None].to(hidden.dtype), lens

    # --- streaming -------------------------------------------------------------------

    def init_state(self, batch_size: int = 1, device=None) -> AudioStreamState:
        device = device or self.device
        return AudioStreamState(
            frontend=self.frontend.init_state(batch_size, device),
            encoder=self.encoder.init_state(batch_size, device, self.dtype),
            num_samples=[0] * batch_size,
            num_frames=[0] * batch_size,
        )

    def step(self, pcm, state: AudioStreamState) -> torch.Tensor:
        """New samples [B, n] (or [n] for B = 1), the same count for every row ->
        projected frames [B, m, out_dim] (m may be 0)."""
        x = self._pcm(pcm)
        if x.shape[0] != state.batch_size:
            raise ValueError(f"chunk has batch {x.shape[0]} but the state was made for {state.batch_size}")
        return self._uniform(self._step(x, [x.shape[1]] * x.shape[0], state), "step")

    def step_rows(self, chunks, state: AudioStreamState) -> list[torch.Tensor]:
        """One chunk per row, of any (possibly zero) lengths -> per row [m_r, out_dim].
        Rows may be at different stream positions (e.g. after `state.reset_rows`)."""
        if len(chunks) != state.batch_size:
            raise ValueError(f"got {len(chunks)} chunks but the state was made for {state.batch_size} rows")
        rows = [self._pcm(c)[0] for c in chunks]
        x, lens = pad_rows(rows)
        return self._split(self._step(x, lens, state))

    def flush(self, state: AudioStreamState) -> torch.Tensor:
        """End of stream of every row: the frames not yet emitted, [B, m, out_dim]."""
        return self._uniform(self._flush(state), "flush")

    def flush_rows(self, state: AudioStreamState) -> list[torch.Tensor]:
        """End of stream of every row, rows at any positions -> per row [m_r, out_dim]."""
        return self._split(self._flush(state))

    def flush_row(self, state: AudioStreamState, row: int) -> torch.Tensor:
        """End of one row's stream while the others go on: its remaining frames
        [m, out_dim]; the row is then reset for a new stream."""
        tail = self._split(self._flush(state.select(row)))[0]
        state.reset_rows([row])
        return tail

    def _step(self, x: torch.Tensor, lens: list[int], state: AudioStreamState):
        state.num_samples = [a + b for a, b in zip(state.num_samples, lens)]
        feats, counts = self.frontend.step(x, lens, state.frontend)
        return self._finish(*self.encoder.step(feats.to(self.dtype), counts, state.encoder), state)

    def _flush(self, state: AudioStreamState):
        feats, counts = self.frontend.flush(state.frontend)
        return self._finish(*self.encoder.flush(state.encoder, feats.to(self.dtype), counts), state)

    def _finish(self, hidden: torch.Tensor, counts: list[int], state: AudioStreamState):
        state.num_frames = [a + b for a, b in zip(state.num_frames, counts)]
        return self.projector(hidden), counts

    @staticmethod
    def _uniform(out, what: str) -> torch.Tensor:
        y, counts = out
        if len(set(counts)) > 1:
            raise ValueError(
                f"rows of this state emit different frame counts {counts} (they are at different "
                f"stream positions); use {what}_rows"
            )
        return y[:, : counts[0]] if counts else y

    @staticmethod
    def _split(out) -> list[torch.Tensor]:
        y, counts = out
        return [y[r, :c] for r, c in enumerate(counts)]


def ctc_loss(model: StreamingAudioEncoder, feats, feat_lengths, targets, target_lengths) -> torch.Tensor:
    """CTC loss (blank = 0) of the encoder's CTC head on spliced features."""
    hidden = model.encoder(feats.to(model.dtype), feat_lengths)
    logp = F.log_softmax(model.encoder.ctc_logits(hidden).float(), dim=-1)
    return F.ctc_loss(
        logp.transpose(0, 1), targets, feat_lengths, target_lengths, blank=0, reduction="mean", zero_infinity=True
    )


def ctc_training_step(
    model: StreamingAudioEncoder,
    optimizer: torch.optim.Optimizer,
    feats: torch.Tensor,
    feat_lengths: torch.Tensor,
    targets: torch.Tensor,
    target_lengths: torch.Tensor,
    max_grad_norm: float | None = 1.0,
) -> float:
    """One optimizer step of CTC training of the encoder (features from
    `model.features`; targets [B, S] int ids in 1..vocab-1). Returns the loss."""
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= model.cfg.ctc_vocab_size):
        raise ValueError(f"CTC targets must lie in [1, {model.cfg.ctc_vocab_size - 1}] (0 is blank)")
    model.train()
    optimizer.zero_grad(set_to_none=True)
    loss = ctc_loss(model, feats, feat_lengths, targets, target_lengths)
    loss.backward()
    if max_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(model.encoder.parameters(), max_grad_norm)
    optimizer.step()
    return float(loss.detach())

"""Streaming audio front end: 16 kHz PCM -> fbank -> global CMVN -> spliced
80 ms frames (1200-dim), full-pass and chunk-by-chunk with identical results.

Spliced frame j stacks fbank frames 8j-7 .. 8j+7 (edges replicated), so it is
ready once fbank frame 8j+7 exists; at end of stream `flush` emits the rest
with the last fbank frame replicated, exactly as the full pass pads.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from encoders.fbank import GlobalCMVN, KaldiFbank, splice_rows
from encoders.ragged import concat_rows, slice_rows
from omni.config import AudioEncoderConfig
from omni.nn import StreamingState


@dataclasses.dataclass
class FrontendState(StreamingState):
    """Per-row stream positions (Python ints) over padded row buffers."""

    pcm: torch.Tensor  # [B, P] samples not yet covered by a whole fbank frame (< window per row)
    pcm_len: list[int]
    feats: torch.Tensor  # [B, F, mel] normalized fbank frames still needed for splicing
    feats_len: list[int]
    feat_start: list[int]  # global fbank index of feats[r, 0]
    num_feats: list[int]  # fbank frames produced so far
    num_out: list[int]  # spliced frames emitted so far

    def reset(self) -> None:
        self.reset_rows(range(len(self.pcm_len)))

    def reset_rows(self, rows) -> None:
        """Start the given rows over as new streams; other rows are untouched."""
        for r in rows:
            for lst in (self.pcm_len, self.feats_len, self.feat_start, self.num_feats, self.num_out):
                lst[r] = 0

    def select(self, row: int) -> "FrontendState":
        """A batch-1 copy of one row."""
        return self.select_rows([row])

    def select_rows(self, rows: list[int]) -> "FrontendState":
        """A copy of the given rows, in that order (buffers cut to the longest of them)."""
        pick = lambda lst: [lst[r] for r in rows]
        idx = torch.tensor(rows, dtype=torch.long, device=self.pcm.device)
        return FrontendState(
            self.pcm[idx, : max(pick(self.pcm_len), default=0)].clone(), pick(self.pcm_len),
            self.feats[idx, : max(pick(self.feats_len), default=0)].clone(), pick(self.feats_len),
            pick(self.feat_start), pick(self.num_feats), pick(self.num_out),
        )


class AudioFrontend(nn.Module):
    def __init__(self, cfg: AudioEncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.fbank = KaldiFbank(cfg)
        self.cmvn = GlobalCMVN(cfg.num_mel_bins)
        # training only: other speakers' spectra (encoders.speaker_augment), set by a trainer
        self.augment = None

    def _apply(self, fn, recurse=True):
        # Features are computed in fp32 whatever the encoder's dtype: casting the
        # mel banks or CMVN stats to bf16 would cost ~1% of feature accuracy.
        # So follow `fn`'s device but never its dtype.
        for m in self.modules():
            for name, buf in m._buffers.items():
                if buf is not None:
                    device = fn(torch.zeros((), dtype=torch.float32, device=buf.device)).device
                    m._buffers[name] = buf.to(device)
        return self

    # --- counting ------------------------------------------------------------

    def num_frames(self, num_samples: int) -> int:
        """Encoder (80 ms) frames produced by `num_samples` samples of a whole stream."""
        return math.ceil(self.fbank.num_frames(int(num_samples)) / self.cfg.splice_stride)

    # --- full pass -------------------------------------------------------------

    def features(self, wav: torch.Tensor) -> torch.Tensor:
        """[B, samples] -> normalized fbank [B, T, mel] (fp32)."""
        if self.training and self.augment is not None:
            return self.augment.mask(self.cmvn(self.augment.spectral(self.fbank(wav))))
        return self.cmvn(self.fbank(wav))

    def forward(self, wav: torch.Tensor, num_samples: torch.Tensor | None = None,
                pad_to_buffer: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, samples] (+ true lengths) -> spliced [B, F, input_size], frame lengths [B].

        Every row is spliced at its own end in one batched gather. F is the longest
        row's frame count, read on the host from `num_samples`; with `pad_to_buffer`
        it is the count of the whole buffer instead, so that nothing is read back
        (`num_samples` may then live on the device; frames past a row's end are zero
        either way, and the lengths are returned on `num_samples`' device)."""
        c = self.cfg
        if num_samples is None:
            num_samples = torch.full((wav.shape[0],), wav.shape[1], dtype=torch.long)
        n = torch.as_tensor(num_samples).long()
        t = torch.where(n < c.window_samples, 0, torch.div(n - c.window_samples, c.hop_samples, rounding_mode="floor") + 1)
        out_lens = -torch.div(-t, c.splice_stride, rounding_mode="floor")
        if pad_to_buffer:
            width = self.num_frames(wav.shape[1])
        else:
            width = max((self.num_frames(int(v)) for v in n.tolist()), default=0)
        feats = self.features(wav)
        return splice_rows(feats, t, c.splice_left, c.splice_right, c.splice_stride, width), out_lens

    # --- streaming ---------------------------------------------------------------

    def init_state(self, batch_size: int, device=None) -> FrontendState:
        device = device or self.cmvn.mean.device
        z = [0] * batch_size
        return FrontendState(
            pcm=torch.zeros(batch_size, 0, device=device),
            pcm_len=list(z),
            feats=torch.zeros(batch_size, 0, self.cfg.num_mel_bins, device=device),
            feats_len=list(z),
            feat_start=list(z),
            num_feats=list(z),
            num_out=list(z),
        )

    def step(self, pcm: torch.Tensor, lengths: list[int], st: FrontendState) -> tuple[torch.Tensor, list[int]]:
        """New samples (padded [B, n], `lengths` valid per row) -> spliced frames whose
        right context has arrived: padded [B, m, input_size] and m_r per row."""
        c, hop, win = self.cfg, self.fbank.hop, self.fbank.win
        buf, blen = concat_rows(st.pcm, st.pcm_len, pcm.float().to(st.pcm.device), lengths)
        t = [self.fbank.num_frames(n) for n in blen]
        if max(t) > 0:
            new = self.features(buf[:, : (max(t) - 1) * hop + win])  # rows past their t hold unused frames
            st.feats, st.feats_len = concat_rows(st.feats, st.feats_len, new, t)
            st.num_feats = [a + b for a, b in zip(st.num_feats, t)]
        used = [n * hop for n in t]
        st.pcm_len = [n - u for n, u in zip(blen, used)]
        st.pcm = slice_rows(buf, used, st.pcm_len)
        ready = [max(0, (n - 1 - c.splice_right) // c.splice_stride + 1) if n else 0 for n in st.num_feats]
        return self._emit(st, ready, flush=False)

    def flush(self, st: FrontendState) -> tuple[torch.Tensor, list[int]]:
        """End of stream: the remaining spliced frames (right edge replicated)."""
        total = [math.ceil(n / self.cfg.splice_stride) for n in st.num_feats]
        return self._emit(st, total, flush=True)

    def _emit(self, st: FrontendState, upto: list[int], flush: bool) -> tuple[torch.Tensor, list[int]]:
        c = self.cfg
        b, dev = st.feats.shape[0], st.feats.device
        counts = [max(0, u - o) for u, o in zip(upto, st.num_out)]
        n = max(counts) if counts else 0
        if n == 0 or st.feats.shape[1] == 0:
            return st.feats.new_zeros(b, 0, c.input_size), [0] * b
        j = torch.tensor(st.num_out, device=dev)[:, None] + torch.arange(n, device=dev)[None]  # [B, n]
        offs = torch.arange(-c.splice_left, c.splice_right + 1, device=dev)
        idx = (j[..., None] * c.splice_stride + offs).clamp_min(0)  # [B, n, ctx] global fbank indices
        if flush:
            last = torch.tensor([max(0, x - 1) for x in st.num_feats], device=dev)
            idx = torch.minimum(idx, last[:, None, None])
        local = idx - torch.tensor(st.feat_start, device=dev)[:, None, None]
        local = local.clamp(0, st.feats.shape[1] - 1).reshape(b, -1)
        out = st.feats.gather(1, local[..., None].expand(-1, -1, st.feats.shape[2])).reshape(b, n, -1)
        st.num_out = [max(u, o) for u, o in zip(upto, st.num_out)]
        # drop fbank frames no later spliced frame needs
        keep_from = [max(0, o * c.splice_stride - c.splice_left) for o in st.num_out]
        drop = [min(max(0, k - s), ln) for k, s, ln in zip(keep_from, st.feat_start, st.feats_len)]
        if any(drop):
            st.feats_len = [ln - d for ln, d in zip(st.feats_len, drop)]
            st.feats = slice_rows(st.feats, drop, st.feats_len)
            st.feat_start = [s + d for s, d in zip(st.feat_start, drop)]
        return out, counts

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

from encoders.fbank import GlobalCMVN, KaldiFbank, splice
from omni.config import AudioEncoderConfig
from omni.nn import StreamingState


@dataclasses.dataclass
class FrontendState(StreamingState):
    pcm: torch.Tensor  # [B, r] samples not yet covered by a whole fbank frame (r < window)
    feats: torch.Tensor  # [B, k, mel] normalized fbank frames still needed for splicing
    feat_start: int  # global index of feats[:, 0]
    num_feats: int  # fbank frames produced so far
    num_out: int  # spliced frames emitted so far

    def reset(self) -> None:
        self.pcm = self.pcm[:, :0]
        self.feats = self.feats[:, :0]
        self.feat_start = self.num_feats = self.num_out = 0


class AudioFrontend(nn.Module):
    def __init__(self, cfg: AudioEncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.fbank = KaldiFbank(cfg)
        self.cmvn = GlobalCMVN(cfg.num_mel_bins)

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

    def samples_for_frame(self, j: int) -> int:
        """Samples needed before spliced frame j is complete (its right context)."""
        c = self.cfg
        return (j * c.splice_stride + c.splice_right) * c.hop_samples + c.window_samples

    # --- full pass -------------------------------------------------------------

    def features(self, wav: torch.Tensor) -> torch.Tensor:
        """[B, samples] -> normalized fbank [B, T, mel] (fp32)."""
        return self.cmvn(self.fbank(wav))

    def forward(self, wav: torch.Tensor, num_samples: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, samples] (+ true lengths) -> spliced [B, F, input_size], frame lengths [B]."""
        c = self.cfg
        if num_samples is None:
            num_samples = torch.full((wav.shape[0],), wav.shape[1], dtype=torch.long)
        lens = [int(n) for n in num_samples]
        feats = self.features(wav)
        rows = []
        for i, n in enumerate(lens):  # splice pads each row at its own end
            t = self.fbank.num_frames(n)
            rows.append(splice(feats[i : i + 1, :t], c.splice_left, c.splice_right, c.splice_stride)[0])
        out_lens = torch.tensor([r.shape[0] for r in rows], dtype=torch.long)
        out = feats.new_zeros(len(rows), int(out_lens.max()) if rows else 0, c.input_size)
        for i, r in enumerate(rows):
            out[i, : r.shape[0]] = r
        return out, out_lens

    # --- streaming ---------------------------------------------------------------

    def init_state(self, batch_size: int, device=None) -> FrontendState:
        device = device or self.cmvn.mean.device
        return FrontendState(
            pcm=torch.zeros(batch_size, 0, device=device),
            feats=torch.zeros(batch_size, 0, self.cfg.num_mel_bins, device=device),
            feat_start=0,
            num_feats=0,
            num_out=0,
        )

    def step(self, pcm: torch.Tensor, st: FrontendState) -> torch.Tensor:
        """New samples [B, n] -> spliced frames whose right context has arrived."""
        buf = torch.cat([st.pcm, pcm.float().to(st.pcm.device)], dim=1)
        t = self.fbank.num_frames(buf.shape[1])
        if t:
            new = self.features(buf[:, : (t - 1) * self.fbank.hop + self.fbank.win])
            st.feats = torch.cat([st.feats, new], dim=1)
            st.num_feats += t
            buf = buf[:, t * self.fbank.hop :]
        st.pcm = buf
        c = self.cfg
        ready = max(0, (st.num_feats - 1 - c.splice_right) // c.splice_stride + 1) if st.num_feats else 0
        return self._emit(st, ready, last=None)

    def flush(self, st: FrontendState) -> torch.Tensor:
        """End of stream: the remaining spliced frames (right edge replicated)."""
        total = math.ceil(st.num_feats / self.cfg.splice_stride)
        return self._emit(st, total, last=st.num_feats - 1)

    def _emit(self, st: FrontendState, upto: int, last: int | None) -> torch.Tensor:
        c = self.cfg
        b = st.feats.shape[0]
        if upto <= st.num_out:
            return st.feats.new_zeros(b, 0, c.input_size)
        j = torch.arange(st.num_out, upto, device=st.feats.device)
        offs = torch.arange(-c.splice_left, c.splice_right + 1, device=st.feats.device)
        idx = (j[:, None] * c.splice_stride + offs).clamp_min(0)  # [n, ctx] global fbank indices
        if last is not None:
            idx = idx.clamp_max(last)
        local = (idx - st.feat_start).reshape(-1)
        out = st.feats.index_select(1, local).reshape(b, len(j), -1)
        st.num_out = upto
        keep_from = max(0, upto * c.splice_stride - c.splice_left)  # oldest frame still needed
        drop = min(keep_from - st.feat_start, st.feats.shape[1])
        if drop > 0:
            st.feats = st.feats[:, drop:]
            st.feat_start += drop
        return out

"""CTC training of the audio encoder on a tiny synthetic 'tone language'."""

from __future__ import annotations

import math

import pytest
import torch

from encoders.audio import StreamingAudioEncoder, ctc_loss, ctc_training_step
from omni.config import get_flavor

CFG = get_flavor("audio", "debug")
TONES = {1: 300.0, 2: 700.0, 3: 1500.0, 4: 3000.0}  # token id -> frequency


def _utterance(ids: list[int], g: torch.Generator) -> torch.Tensor:
    """Each token is 0.32 s of its tone followed by 0.08 s of near silence."""
    parts = []
    for i in ids:
        t = torch.arange(int(0.32 * 16000)) / 16000
        parts.append(0.4 * torch.sin(2 * math.pi * TONES[i] * t))
        parts.append(0.001 * torch.randn(int(0.08 * 16000), generator=g))
    return torch.cat(parts)


def test_short_ctc_run_lowers_the_loss():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    seqs = [[1, 2, 3], [4, 1], [2, 2, 4, 3], [3, 1, 4], [2, 4], [1, 3, 2, 4]]
    wavs = [_utterance(s, g) for s in seqs]
    n = max(w.shape[0] for w in wavs)
    pcm = torch.stack([torch.nn.functional.pad(w, (0, n - w.shape[0])) for w in wavs])
    model = StreamingAudioEncoder(CFG)
    # unit CMVN from the data itself, as a recipe would compute it
    with torch.no_grad():
        f = model.frontend.features(pcm)
        model.frontend.cmvn.mean.copy_(f.mean((0, 1)))
        model.frontend.cmvn.istd.copy_(f.std((0, 1)).reciprocal())
        feats, flens = model.features(pcm, torch.tensor([w.shape[0] for w in wavs]))
    targets = torch.zeros(len(seqs), 4, dtype=torch.long)
    for i, s in enumerate(seqs):
        targets[i, : len(s)] = torch.tensor(s)
    tlens = torch.tensor([len(s) for s in seqs])
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    model.eval()
    with torch.no_grad():
        start = float(ctc_loss(model, feats, flens, targets, tlens))
    losses = [ctc_training_step(model, opt, feats, flens, targets, tlens) for _ in range(40)]
    model.eval()
    with torch.no_grad():
        end = float(ctc_loss(model, feats, flens, targets, tlens))
        hidden = model.encoder(feats, flens)
        best = model.encoder.ctc_logits(hidden).argmax(-1)
    assert all(math.isfinite(x) for x in losses)
    assert end < 0.3 * start, (start, end)
    # greedy CTC decoding recovers most token sequences
    correct = 0
    for i, s in enumerate(seqs):
        path = best[i, : flens[i]].tolist()
        dec = [p for k, p in enumerate(path) if p != 0 and (k == 0 or p != path[k - 1])]
        correct += dec == s
    assert correct >= 3, correct


def test_ctc_rejects_out_of_range_targets():
    model = StreamingAudioEncoder(CFG)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    feats = torch.zeros(1, 5, CFG.input_size)
    with pytest.raises(ValueError, match="CTC targets"):
        ctc_training_step(model, opt, feats, torch.tensor([5]), torch.tensor([[CFG.ctc_vocab_size]]), torch.tensor([1]))

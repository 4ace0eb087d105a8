"""Audio heads, the exponential penalty, embeddings and the segment state machine."""

from __future__ import annotations

import torch
from torch import nn

from omni.config import get_omni_config
from omni.embedding import AudioEmbedding, embed_rows, replace_features
from omni.heads import AudioHead, exponential_penalty
from omni.segments import DONE, SegmentMachine, TextSampling, sample_text


def test_penalty_matches_loop():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 20, generator=g)
    hist = torch.randint(-1, 20, (3, 30), generator=g)
    out = exponential_penalty(logits, hist, 1.1)
    for i in range(3):
        for v in range(20):
            n = int((hist[i] == v).sum())
            x = float(logits[i, v])
            ref = x / 1.1**n if x > 0 else x * 1.1**n
            assert abs(float(out[i, v]) - ref) < 1e-5


def test_greedy_depth_conditioning_matches_reference():
    torch.manual_seed(0)
    cfg = get_omni_config("debug")
    head = AudioHead(cfg)
    h = torch.randn(5, cfg.llm.hidden_size)
    hist = torch.randint(32, 96, (5, 4, 30))
    codes = head.greedy(h, hist, 1.1)
    # independent reference: one row at a time, explicit loops
    for n in range(5):
        acc = h[n]
        for k in range(4):
            logits = head.audio_output_layers[k].weight @ acc
            counts = torch.bincount(hist[n, k], minlength=logits.shape[0]).float()
            pen = torch.where(logits > 0, logits / 1.1**counts, logits * 1.1**counts)
            allowed = torch.zeros_like(pen, dtype=torch.bool)
            if k == 0:
                allowed[32 : 32 + cfg.codec.semantic_codebook_size] = True
                allowed[2] = True
            else:
                allowed[32 : 32 + cfg.codec.acoustic_codebook_size] = True
            c = int(pen.masked_fill(~allowed, -1e30).argmax())
            assert c == int(codes[n, k])
            if k < 3:
                acc = acc + head.embedding[k].weight[c]
    # teacher forcing with the greedy codes reproduces the same argmaxes (no penalty)
    codes0 = head.greedy(h, None, 1.0)
    logits = head(h, codes0).masked_fill(~head.allowed, float("-inf"))
    assert torch.equal(logits.argmax(-1), codes0)


def test_embedding_rules():
    torch.manual_seed(0)
    text = nn.Embedding(10, 4)
    audio = AudioEmbedding(4, 40, 4, codec_pad_id=3)
    ids = torch.tensor([5, 3, 3, -1])
    codec = torch.tensor([[3, 3, 3, 3], [3, 3, 3, 3], [33, 3, 40 - 1, 3], [34, 35, 36, 37]])
    e = embed_rows(text, audio, ids, codec, text_pad_id=3)
    A = [t.weight for t in audio.audio_embeddings]
    torch.testing.assert_close(e[0], text.weight[5])
    torch.testing.assert_close(e[1], text.weight[3])  # all pad: the pad embedding
    torch.testing.assert_close(e[2], A[0][33] + A[2][39])  # text pad zeroed, codec pad zeroed
    torch.testing.assert_close(e[3], A[0][34] + A[1][35] + A[2][36] + A[3][37])
    feats = [torch.ones(1, 4), 2 * torch.ones(1, 4)]
    r = replace_features(e, torch.tensor([7, 1, 7, 0]), 7, feats)
    assert torch.equal(r[0], feats[0][0]) and torch.equal(r[2], feats[1][0]) and torch.equal(r[1], e[1])


def _reference_shift_codec_back(rows):
    """The original post-processing: frame i = [sem_i, ac_{i+1}] for sem_i != 2, per segment."""
    frames = []
    for seg in rows:
        for i in range(len(seg) - 1):
            if seg[i][0] != 2:
                frames.append([seg[i][0] - 32] + [c - 32 for c in seg[i + 1][1:]])
    return frames


def test_segment_machine_two_segments():
    m = SegmentMachine(text_pad=3, text_eos=2)
    seg1 = [[40, 99, 99, 99], [41, 50, 51, 52], [42, 53, 54, 55], [2, 56, 57, 58]]
    seg2 = [[43, 99, 99, 99], [44, 60, 61, 62], [2, 63, 64, 65]]
    texts1 = [10, 11, 3, 3]  # text leads, then pad: audio only
    texts2 = [12, 2, 3]  # EOS ends the reply after this segment
    shown, frames = [], []
    for t, c in zip(texts1 + texts2, seg1 + seg2):
        r = m.step(t, c)
        shown.append(r.text_token)
        if r.frame:
            frames.append(r.frame)
    assert m.state == DONE and r.done
    assert [s for s in shown if s is not None] == [10, 11, 12, 2]
    fix = lambda seg: [[seg[0][0], 3, 3, 3]] + seg[1:]  # first acoustic row is the delay pad
    assert frames == _reference_shift_codec_back([fix(seg1), fix(seg2)])


def test_machine_feedback_rows():
    m = SegmentMachine(text_pad=3, text_eos=2)
    r = m.step(10, [40, 77, 77, 77])
    assert r.next_text == 10 and r.next_codec == [40, 3, 3, 3]  # acoustic invalid on the first step
    r = m.step(3, [41, 50, 51, 52])
    assert r.text_token is None and r.next_text == 3 and r.next_codec == [41, 50, 51, 52]
    r = m.step(99, [2, 53, 54, 55])  # audio-only: sampled text is ignored
    assert r.next_text == 3 and r.text_token is None and not r.done


def test_text_sampling_options():
    logits = torch.tensor([[0.0, 5.0, 4.9, -1.0]])
    assert int(sample_text(logits, TextSampling())) == 1
    g = torch.Generator().manual_seed(0)
    draws = {int(sample_text(logits, TextSampling(temperature=1.0, top_k=2), generator=g)) for _ in range(50)}
    assert draws == {1, 2}
    draws = {int(sample_text(logits, TextSampling(temperature=1.0, top_p=0.3), generator=g)) for _ in range(30)}
    assert draws == {1}
    hist = torch.tensor([[1, 1, 1]])
    assert int(sample_text(logits, TextSampling(repetition_penalty=1.5), hist)) == 2

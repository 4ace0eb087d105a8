"""The batched on-device sampling step equals the per-row host reference it replaced,
and RealtimeOmni's static-shape decode mode equals the eager one token for token."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from omni.generation import GenerationOptions, ReplyState, sample_step
from omni.realtime import RealtimeOmni
from omni.segments import TextSampling


def _ref_penalty(logits, history, alpha):
    # the former implementation: per call, the base built on the host
    if history is None or history.numel() == 0 or alpha == 1.0:
        return logits
    valid = history >= 0
    counts = torch.zeros(logits.shape, dtype=torch.float32)
    counts.scatter_add_(1, history.clamp(min=0), valid.to(torch.float32))
    factor = torch.pow(torch.tensor(alpha, dtype=torch.float32), counts)
    lf = logits.float()
    return torch.where(lf > 0, lf / factor, lf * factor).to(logits.dtype)


def _ref_sample_text(logits, opts, hist, generator):
    logits = _ref_penalty(logits.float(), hist, opts.repetition_penalty)
    if opts.temperature <= 0 or opts.top_k == 1:
        return logits.argmax(-1)
    logits = logits / opts.temperature
    if opts.top_k > 0:
        kth = torch.topk(logits, min(opts.top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator).squeeze(-1)


def _ref_step(model, states, generator):
    """The former sample_step: host-built histories, one row history at a time,
    one audio head at a time with its own penalty, two host syncs."""
    head = model.audio_head
    logits = torch.stack([s["logits"] for s in states])
    hidden = torch.stack([s["hidden"] for s in states])
    opts = states[0]["opts"]
    w = opts.text.window
    hist = torch.full((len(states), w), -1, dtype=torch.long)
    for i, s in enumerate(states):
        h = s["text_hist"][-w:]
        if h:
            hist[i, -len(h):] = torch.tensor(h)
    text_ids = _ref_sample_text(logits, opts.text, hist, generator).tolist()
    ahist = torch.stack([s["audio_hist"] for s in states])
    acc, codes = hidden, []
    for k, layer in enumerate(head.audio_output_layers):
        lg = _ref_penalty(layer(acc).float(), ahist[:, k], s["alpha"])
        c = lg.masked_fill(~head.allowed[k], float("-inf")).argmax(-1)
        codes.append(c)
        if k < 3:
            acc = acc + head.embedding[k](c)
    codes = torch.stack(codes, -1).tolist()
    out = []
    for s, t, c in zip(states, text_ids, codes):
        r = s["machine"].step(int(t), [int(x) for x in c])
        if r.text_token is not None:
            s["text_hist"].append(r.text_token)
        row = torch.tensor(r.next_codec, dtype=torch.long)[:, None]
        s["audio_hist"] = torch.cat([s["audio_hist"][:, 1:], row], dim=1)
        out.append(r)
    return out


@pytest.mark.parametrize("text", [TextSampling(), TextSampling(temperature=0.9, top_k=40, repetition_penalty=1.3, window=5)])
def test_batched_sampling_equals_the_former_per_row_step(debug_model, text):
    m = debug_model
    opts = GenerationOptions(max_new_tokens=100, text=text)
    new = [ReplyState(m, opts) for _ in range(3)]
    old = [ReplyState(m, opts) for _ in range(3)]
    ref = [{"opts": opts, "alpha": s.alpha, "machine": s.machine, "text_hist": [],
            "audio_hist": s.audio_hist.clone()} for s in old]
    g_new, g_old = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    data = torch.Generator().manual_seed(0)
    vocab, hidden = m.config.llm.vocab_size, m.config.llm.hidden_size
    # a small text vocabulary in use keeps the repetition penalty busy
    favored = torch.randint(0, vocab, (6,), generator=data)
    for step in range(25):
        for a, b in zip(new, ref):
            lg = torch.randn(vocab, generator=data)
            lg[favored] += 6.0
            if step % 7 == 6:
                lg[m.tokenizer.special.pad] += 20.0  # end a segment's text now and then
            h = torch.randn(hidden, generator=data)
            a.logits, a.hidden, b["logits"], b["hidden"] = lg, h, lg.clone(), h.clone()
        rn = sample_step(m, new, g_new)
        ro = _ref_step(m, ref, g_old)
        assert rn == ro, step
        for a, b in zip(new, ref):
            assert torch.equal(a.audio_hist, b["audio_hist"])
            assert a.text_hist == b["text_hist"]
    assert any(r.frame is not None for r in rn)


def _reply(model, mode, steps=8, warm=False):
    rt = RealtimeOmni(model, max_slots=2, capacity=256, decode_mode=mode)
    if warm:  # steps every batch size on slots 0..1 first: must leave no trace
        rt.warm_up_decode()
    s0, s1 = rt.open_slot("Be brief."), rt.open_slot()
    rt.prefill_text(s0, "user", "what color is the star")
    rt.prefill_text(s1, "user", "hi")
    rt.begin_response(s0)
    rt.begin_response(s1)
    outs = [rt.decode_step([s0, s1]) for _ in range(steps)]
    outs += [rt.decode_step([s1]) for _ in range(3)]  # another batch size
    return [(o.text_token, None if o.codec_frame is None else o.codec_frame.tolist(), o.done)
            for step in outs for o in step]


def test_static_decode_mode_equals_eager_in_realtime(debug_model):
    try:
        eager = _reply(debug_model, "eager")
        static = _reply(debug_model, "static")
        warmed = _reply(debug_model, "static", warm=True)
    finally:
        debug_model.set_decode_mode("eager")
    assert eager == static == warmed
    rt = RealtimeOmni(debug_model, max_slots=1, capacity=64)
    rt.open_slot()
    with pytest.raises(RuntimeError, match="every slot closed"):
        rt.warm_up_decode()
    assert any(frame is not None for _, frame, _ in eager)


def test_a_silent_frame_never_enters_the_audio_penalty_window(debug_model):
    """With `codec_silence_frame` set, the ids of that frame are not recorded in the penalty
    window (the penalty is alpha ** count: a silence held for 30 frames would be pushed 1.1 ** 30
    away and the reply derail); other ids are, and without the setting everything is."""
    from types import SimpleNamespace

    from omni.generation import _record_histories

    cfg = debug_model.config
    off = cfg.audio_id_offset
    silence = (5, 6, 7, 8)
    results = [SimpleNamespace(text_token=None, next_codec=[off + 5, off + 6, off + 9, off + 8])]
    before = cfg.codec_silence_frame
    try:
        cfg.codec_silence_frame = silence
        s = ReplyState(debug_model, GenerationOptions())
        _record_histories([s], results, torch.stack([s.audio_hist]), None)
        assert s.audio_hist[:, -1].tolist() == [-1, -1, off + 9, -1]
        cfg.codec_silence_frame = ()
        s = ReplyState(debug_model, GenerationOptions())
        _record_histories([s], results, torch.stack([s.audio_hist]), None)
        assert s.audio_hist[:, -1].tolist() == [off + 5, off + 6, off + 9, off + 8]
    finally:
        cfg.codec_silence_frame = before

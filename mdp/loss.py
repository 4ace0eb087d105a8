"""The stage-1 training loss: text head + four audio heads (spec 1.5).

    L = 1.75 L_pure-text + 0.25 L_audio + 1.5 L_audio-text + 0.1 L_first-audio

Each term is a sum of token cross-entropies divided by that term's token count
over the *global* batch (all DP ranks, all micro-batches). Normalizing by global
counts makes the loss a plain sum over ranks and micro-batches, so sharded,
pipelined and single-process runs compute the same number and the same
gradients (up to summation order).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mdp.data import CAT_AUDIO_TEXT, CAT_TEXT, IGNORE

WEIGHTS = {"text": 1.75, "audio": 0.25, "audio_text": 1.5, "first_audio": 0.1}
TERMS = tuple(WEIGHTS)


def label_counts(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Token counts of the four terms in this (local) batch: float64 [4], order TERMS."""
    cat = batch["text_cat"]
    audio_valid = batch["audio_labels"] != IGNORE
    first = batch["first_audio"] & audio_valid[..., 0]
    return torch.tensor(
        [
            float((cat == CAT_TEXT).sum()),
            float(audio_valid.sum()),
            float((cat == CAT_AUDIO_TEXT).sum()),
            float(first.sum()),
        ],
        dtype=torch.float64,
    )


def pack_labels(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """One int64 tensor [B, T, 8] (text label, category, 4 audio labels, first-audio,
    answer): a single target tensor is what pipeline schedules split into micro-batches.
    A batch without an "answer" mask (no label is an answer) gets zeros."""
    answer = batch.get("answer")
    if answer is None:
        answer = torch.zeros_like(batch["first_audio"])
    return torch.cat(
        [
            batch["text_labels"][..., None],
            batch["text_cat"][..., None],
            batch["audio_labels"],
            batch["first_audio"].long()[..., None],
            answer.long()[..., None],
        ],
        dim=-1,
    )


def text_label_weights(labels: torch.Tensor, text_pad_id: int | None, word_weight: float = 1.0,
                       answer_weight: float = 1.0) -> torch.Tensor | None:
    """Per-position multiplier of the text cross-entropy (None: all 1). `word_weight`:
    text labels that are not pads; `answer_weight` on top: labels marked as the answer
    of a question (pack_labels column 7: its words and end, never a pad)."""
    w = None
    if word_weight != 1.0:
        if text_pad_id is None:
            raise ValueError("word_weight needs text_pad_id")
        w = torch.where(labels[..., 0] != text_pad_id, word_weight, 1.0)
    if answer_weight != 1.0 and labels.shape[-1] > 7:
        a = torch.where(labels[..., 7].bool(), answer_weight, 1.0)
        w = a if w is None else w * a
    return w


def answer_share(batch: dict[str, torch.Tensor], text_pad_id: int, word_weight: float = 1.0,
                 answer_weight: float = 1.0) -> float:
    """The share of the batch's loss weight (each label's weight in `stage1_loss`:
    term weight / term count x its multiplier, audio labels included) that the
    answer labels carry."""
    labels = pack_labels(batch).double()
    counts = label_counts(batch).clamp_min(1.0)
    cat = batch["text_cat"]
    mult = text_label_weights(labels, text_pad_id, word_weight, answer_weight)
    mult = torch.ones(cat.shape, dtype=torch.float64) if mult is None else mult.double()
    text = mult * (WEIGHTS["text"] / counts[0] * (cat == CAT_TEXT)
                   + WEIGHTS["audio_text"] / counts[2] * (cat == CAT_AUDIO_TEXT))
    audio_valid = batch["audio_labels"] != IGNORE
    audio = WEIGHTS["audio"] / counts[1] * audio_valid.sum(-1) + WEIGHTS["first_audio"] / counts[3] * (
        batch["first_audio"] & audio_valid[..., 0])
    total = float(text.sum() + audio.sum())
    return float((text * labels[..., 7]).sum()) / total if total > 0 else 0.0


def stage1_loss(
    text_logits: torch.Tensor,  # [B, T, V]
    audio_logits: torch.Tensor,  # [B, T, 4, Va]
    labels: torch.Tensor,  # [B, T, 8] from pack_labels (7 columns: no answer mask)
    counts: torch.Tensor,  # [4] global counts (TERMS order)
    stats: list | None = None,
    text_pad_id: int | None = None,
    word_weight: float = 1.0,
    answer_weight: float = 1.0,
    audio_rows: torch.Tensor | None = None,  # [N]: audio_logits [N, 4, Va] are these flat positions'
) -> torch.Tensor:
    """The weighted loss. With `stats`, also appends a detached float64 [6]: the four
    unweighted terms (TERMS order; plain cross-entropies, without `word_weight`), each already divided by its global count (so sums
    over ranks are means), then the reply's text labels that greedy decoding gets
    right under teacher forcing and their number (local sums). The text pads that
    fill a spoken reply's text stream after its words (most of its text labels, and
    trivial) are not counted. `word_weight` multiplies the cross-entropy of the text
    labels that are not pads (the answer's words and its end; needs `text_pad_id`):
    in a spoken reply they are ~2 of ~12 text labels, so their share of the gradient
    is small; the terms stay normalized by the plain counts, so shards still add up.
    `answer_weight` multiplies, on top, the labels marked as a question's answer
    (`text_label_weights`): beside captions, transcripts and a spoken reply's pads
    they are a few percent of the loss weight (`answer_share`). With `audio_rows`, the
    audio logits are those positions' only (every position with an audio label among them):
    the same loss without the logits no label reads."""
    text_lab, cat, audio_lab, first = labels[..., 0], labels[..., 1], labels[..., 2:6], labels[..., 6].bool()
    if audio_rows is not None:  # the audio terms over the positions that have audio labels (all of them)
        spoken = labels.flatten(0, 1).index_select(0, audio_rows)
        audio_lab, first = spoken[..., 2:6], spoken[..., 6].bool()
    text_ce = F.cross_entropy(
        text_logits.float().flatten(0, 1), text_lab.flatten(), ignore_index=IGNORE, reduction="none"
    ).view_as(text_lab)
    audio_ce = F.cross_entropy(
        audio_logits.float().flatten(0, -2), audio_lab.flatten(), ignore_index=IGNORE, reduction="none"
    ).view_as(audio_lab)

    def term_means(t_ce: torch.Tensor) -> torch.Tensor:
        sums = torch.stack(
            [
                (t_ce * (cat == CAT_TEXT)).sum(),
                audio_ce.sum(),
                (t_ce * (cat == CAT_AUDIO_TEXT)).sum(),
                (audio_ce[..., 0] * first).sum(),
            ]
        )
        return sums / counts.to(sums.device, sums.dtype).clamp_min(1.0)

    per = term_means(text_ce)  # what is logged: plain cross-entropies, whatever the weights
    mult = text_label_weights(labels, text_pad_id, word_weight, answer_weight)
    trained = per if mult is None else term_means(text_ce * mult)
    if stats is not None:
        with torch.no_grad():
            words = (cat == CAT_TEXT) | (cat == CAT_AUDIO_TEXT)
            if text_pad_id is not None:
                words &= text_lab != text_pad_id
            right = ((text_logits.argmax(-1) == text_lab) & words).sum().double()
            stats.append(torch.cat([per.detach().double(), right[None], words.sum().double()[None]]))
    # the weights as Python numbers: a tensor made from a host list is a blocking copy (a device sync)
    return sum(WEIGHTS[t] * trained[k] for k, t in enumerate(TERMS))


STAT_NAMES = tuple(f"{t}_loss" for t in TERMS) + ("text_acc",)


def stat_record(summed: torch.Tensor) -> dict[str, float]:
    """`stage1_loss` stats summed over ranks -> the logged values (STAT_NAMES)."""
    v = summed.tolist()
    return dict(zip(STAT_NAMES, v[:4] + [v[4] / max(v[5], 1.0)]))

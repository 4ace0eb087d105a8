"""Text sampling and the spoken-reply segment state machine (spec 1.5, 2.4).

A spoken reply is a series of segments. Within a segment, each LLM step emits
one text token and one codec row; text leads, and once the segment's text is
done (the model emits the text pad, `</longcat_s>`, or a configured end id) the
segment goes on audio-only until the semantic head emits end-of-segment (2).
Then the next segment starts, or the reply ends if the text ended with EOS.

Codec rows come out with a one-step delay between the semantic and the
acoustic books: step r yields sem_r and the acoustic codes of frame r-1. A
complete frame i = [sem_i, ac_{i+1}] is therefore released one step later
(the original's `shift_codec_back`), and the first step of every segment has
no valid acoustic codes (they are fed back as pad).

With a text-to-speech delay d (`OmniConfig.text_audio_delay`) the codec rows of a
segment's first d steps are pads whatever the heads sample: the speech starts d
steps after the text, having read the text's first d tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from omni.heads import exponential_penalty

TEXT_AUDIO, AUDIO_ONLY, DONE = "text+audio", "audio", "done"


@dataclass
class TextSampling:
    """Text sampling options (greedy when temperature == 0 or top_k == 1)."""

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    repetition_penalty: float = 1.0  # exponential, over the last `window` text ids
    window: int = 30
    seed: int | None = None


def sample_text(
    logits: torch.Tensor,
    opts: TextSampling,
    history: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """logits [N, V] -> ids [N] (top-k, then top-p, then temperature sampling)."""
    logits = exponential_penalty(logits.float(), history, opts.repetition_penalty)
    if opts.temperature <= 0 or opts.top_k == 1:
        return logits.argmax(-1)
    logits = logits / opts.temperature
    if opts.top_k > 0:
        kth = torch.topk(logits, min(opts.top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if opts.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = torch.softmax(sorted_logits, dim=-1)
        cum = probs.cumsum(-1)
        drop = cum - probs > opts.top_p  # keep the smallest prefix whose mass reaches top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@dataclass
class StepResult:
    text_token: int | None  # the text token shown to the user, None in the audio-only part
    frame: list[int] | None  # one complete codec frame (values without offset), or None
    next_text: int  # text id fed back (text pad while audio-only)
    next_codec: list[int]  # codec row fed back (offset ids; pad 3 where invalid)
    done: bool


@dataclass
class SegmentMachine:
    """State of one spoken reply; `step` consumes one step's samples."""

    text_pad: int
    text_eos: int
    offset: int = 32
    audio_eos: int = 2
    audio_pad: int = 3
    text_end_ids: tuple[int, ...] = ()  # extra ids that end a segment's text (original: 137)
    speech: bool = True  # False: text-only reply (stops at EOS)
    delay: int = 0  # steps a segment's speech waits behind its text (pad rows)
    state: str = TEXT_AUDIO
    ending: bool = False  # EOS seen: the current segment is the last
    seg_step: int = 0  # steps taken in the current segment
    prev_sem: int | None = None  # semantic id awaiting its acoustic codes
    text_ids: list[int] = field(default_factory=list)
    frames: list[list[int]] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.state == DONE

    def step(self, text_id: int, codes: list[int]) -> StepResult:
        if self.state == DONE:
            raise RuntimeError("the reply is finished; no more steps")
        shown: int | None = None
        next_text = self.text_pad
        if not self.speech:
            self.text_ids.append(text_id)
            if text_id == self.text_eos:
                self.state = DONE
            return StepResult(text_id, None, text_id, [self.audio_pad] * len(codes), self.done)
        if self.state == TEXT_AUDIO:
            shown = text_id
            next_text = text_id
            self.text_ids.append(text_id)
            if text_id == self.text_eos:
                self.ending = True
                self.state = AUDIO_ONLY
            elif text_id == self.text_pad or text_id in self.text_end_ids:
                shown = None
                self.state = AUDIO_ONLY
        if self.seg_step < self.delay:  # the speech has not started: a pad row, nothing to decode
            self.seg_step += 1
            return StepResult(shown, None, next_text, [self.audio_pad] * len(codes), self.done)
        k = self.seg_step - self.delay  # the speech's own step
        sem = int(codes[0])
        acoustic = [int(c) for c in codes[1:]]
        if k == 0:
            acoustic = [self.audio_pad] * len(acoustic)  # one-step delay: nothing valid yet
        frame = None
        if self.prev_sem is not None and k > 0:
            frame = [self.prev_sem - self.offset] + [c - self.offset for c in acoustic]
            self.frames.append(frame)
        next_codec = [sem] + acoustic
        if sem == self.audio_eos:
            self.prev_sem = None
            self.seg_step = 0
            if self.ending:  # the text ended with </longcat_s>: this was the last segment
                self.state = DONE
            else:
                self.state = TEXT_AUDIO
        else:
            self.prev_sem = sem
            self.seg_step += 1
        return StepResult(shown, frame, next_text, next_codec, self.done)

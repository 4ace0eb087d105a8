"""Requests, replies and the decoding loop of the omni model (text + speech).

    req = OmniRequest.from_files(text="what is moving?", video="clip.mp4")
    for ev in stream(model, req):              # text deltas and waveform chunks as produced
        print(ev.text, end="")
    replies = generate(model, [req1, req2])    # batched: one prefill, one forward per step

Every step samples one text token (temperature / top-k / top-p / exponential
repetition penalty) and four codec ids (greedy, exponential penalty 1.1 over the
last 30 ids of each head), feeds the segment state machine (omni.segments) and
forwards the next row for all unfinished streams in one batched LLM call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
import torch

from omni.segments import AUDIO_ONLY, SegmentMachine, StepResult, TextSampling, sample_text


@dataclass
class OmniRequest:
    """One user turn: any mix of text, spoken audio, images and a video."""

    text: str | None = None
    audio: np.ndarray | None = None  # spoken question, float32 16 kHz mono
    images: list = field(default_factory=list)  # HxWx3 uint8 arrays or PIL images
    video: list = field(default_factory=list)  # sampled frames, HxWx3 uint8
    video_times: list[float] = field(default_factory=list)
    video_audio: np.ndarray | None = None  # the video's own audio track
    system: str | None = None
    think: bool | None = None  # thinking switch of the turn (checkpoints whose template has the mode); None: not said

    def audio_stream(self) -> np.ndarray | None:
        """The user's audio in time order: the video's track, then the question."""
        parts = [a for a in (self.video_audio, self.audio) if a is not None and len(a)]
        return np.concatenate(parts).astype(np.float32) if parts else None

    @classmethod
    def from_files(cls, text=None, image=None, video=None, audio=None, system=None, vision_cfg=None) -> "OmniRequest":
        """Load media with `encoders.media`; errors name the file and the reason."""
        from encoders.media import MediaError, read_audio, read_video

        req = cls(text=text, system=system)
        if image is not None:
            from PIL import Image, UnidentifiedImageError

            try:
                with Image.open(image) as im:
                    req.images.append(np.asarray(im.convert("RGB")))
            except FileNotFoundError:
                raise MediaError(image, "file not found") from None
            except (UnidentifiedImageError, OSError) as e:
                raise MediaError(image, f"not a readable image ({e})") from None
        if video is not None:
            clip = read_video(video, cfg=vision_cfg)
            req.video, req.video_times, req.video_audio = list(clip.frames), [float(t) for t in clip.times], clip.audio
        if audio is not None:
            req.audio = read_audio(audio)
        if not (text or req.audio is not None or req.images or req.video):
            raise ValueError("a request needs at least one of text, audio, image or video")
        return req


@dataclass
class GenerationOptions:
    max_new_tokens: int = 256  # LLM steps (one text token + one codec row each)
    speech: bool = True  # voice reply (VOICE ASSISTANT:) or text only (ASSISTANT:)
    text: TextSampling = field(default_factory=TextSampling)
    audio_repetition_penalty: float | None = None  # None: the model config's (1.1)
    audio_window: int | None = None  # None: the model config's (30)
    stop_after_text: bool = False  # end once the text is complete (skip the audio tail)
    decode_audio: bool = True  # turn codec frames into a waveform


@dataclass
class Reply:
    text: str
    text_ids: list[int]
    frames: np.ndarray  # int64 [T, 4] codec values (no offset)
    audio: np.ndarray | None  # float32 waveform at the codec's sample rate
    steps: int
    finished: bool  # the model ended its turn (vs. max_new_tokens)


@dataclass
class Event:
    text: str = ""  # text delta
    token: int | None = None
    frame: np.ndarray | None = None  # one codec frame [4]
    audio: np.ndarray | None = None  # waveform chunk
    done: bool = False


class ReplyState:
    """Per-stream decoding state: machine, penalty histories, pending logits.

    The penalty histories live on the model's device as rolling windows
    (-1 = empty), so a step never builds them on the host."""

    def __init__(self, model, opts: GenerationOptions) -> None:
        cfg = model.config
        sp = model.tokenizer.special
        self.opts = opts
        self.machine = SegmentMachine(
            text_pad=sp.pad, text_eos=sp.eos, offset=cfg.audio_id_offset, audio_eos=cfg.audio_eos_id,
            audio_pad=cfg.audio_pad_id, text_end_ids=tuple(cfg.text_end_ids), speech=opts.speech,
            delay=cfg.text_audio_delay,
        )
        self.alpha = cfg.audio_repetition_penalty if opts.audio_repetition_penalty is None else opts.audio_repetition_penalty
        # the ids of a silent frame never enter the penalty window (OmniConfig.codec_silence_frame)
        self.silence = (torch.tensor(cfg.codec_silence_frame, dtype=torch.long) + cfg.audio_id_offset
                        if cfg.codec_silence_frame else None)
        window = cfg.audio_rep_penalty_window if opts.audio_window is None else opts.audio_window
        device = model.device
        self.audio_hist = torch.full((cfg.num_audio_heads, window), -1, dtype=torch.long, device=device)
        self.text_window = torch.full((opts.text.window,), -1, dtype=torch.long, device=device)
        self.text_hist: list[int] = []
        self.detok = model.tokenizer.incremental()
        self.logits: torch.Tensor | None = None  # [V] pending text logits
        self.hidden: torch.Tensor | None = None  # [H] pending hidden state
        self.steps = 0

    @property
    def ended(self) -> bool:
        """The model ended its turn (as opposed to reaching max_new_tokens)."""
        if self.machine.done:
            return True
        return bool(self.opts.stop_after_text and self.machine.ending and self.machine.state == AUDIO_ONLY)

    @property
    def finished(self) -> bool:
        return self.ended or self.steps >= self.opts.max_new_tokens

    def record_audio(self, codes: list[int]) -> None:
        row = torch.tensor(codes, dtype=torch.long, device=self.audio_hist.device)[:, None]
        self.audio_hist = torch.cat([self.audio_hist[:, 1:], row], dim=1)


@torch.no_grad()
def sample_step(model, states: Sequence[ReplyState], generator: torch.Generator | None = None) -> list[StepResult]:
    """Sample text + codec ids for each stream from its pending logits/hidden.

    Everything that depends on the logits runs batched on the device (text
    sampling, the four audio heads with their penalties, the history updates);
    the host sees one device->host copy per step (the sampled ids) and sends one
    small host->device copy back (the rows the segment machines chose)."""
    logits = torch.stack([s.logits for s in states])
    hidden = torch.stack([s.hidden for s in states])
    opts = states[0].opts
    text_pen = opts.text.repetition_penalty != 1.0 and opts.text.window > 0
    hist = torch.stack([s.text_window for s in states]) if text_pen else None
    text_ids = sample_text(logits, opts.text, hist, generator)
    if opts.speech:
        ahist = torch.stack([s.audio_hist for s in states])
        codes = model.audio_head.greedy(hidden, ahist, states[0].alpha)
        host = torch.cat([text_ids[:, None].to(codes.dtype), codes], dim=1).cpu().tolist()  # the one sync
    else:
        pad = [model.config.audio_pad_id] * model.config.num_audio_heads
        host = [[t] + pad for t in text_ids.cpu().tolist()]
    results = []
    for s, row in zip(states, host):
        r = s.machine.step(int(row[0]), [int(x) for x in row[1:]])
        s.steps += 1
        if r.text_token is not None:
            s.text_hist.append(r.text_token)
        results.append(r)
    if opts.speech or text_pen:
        _record_histories(states, results, ahist if opts.speech else None, hist)
    return results


def _record_histories(states, results, ahist: torch.Tensor | None, thist: torch.Tensor | None) -> None:
    """Roll every stream's penalty windows by this step's rows, batched: the codec
    row fed back (every step) and the shown text token (when there is one)."""
    rows = torch.tensor(
        [[-1 if r.text_token is None else r.text_token] + list(r.next_codec) for r in results], dtype=torch.long
    )
    device = (ahist if ahist is not None else thist).device
    rows = rows.to(device, non_blocking=True)
    if ahist is not None:
        codec = rows[:, 1:]
        if states[0].silence is not None:  # silence is not a repetition to penalize
            codec = torch.where(codec == states[0].silence.to(device)[None], -1, codec)
        new = torch.cat([ahist[:, :, 1:], codec[:, :, None]], dim=2)
        for i, s in enumerate(states):
            s.audio_hist = new[i]
    if thist is not None:
        tok = rows[:, :1]
        new = torch.where(tok >= 0, torch.cat([thist[:, 1:], tok], dim=1), thist)
        for i, s in enumerate(states):
            s.text_window = new[i]


@torch.no_grad()
def feed_step(model, cache, slots: Sequence[int], states: Sequence[ReplyState], results: Sequence[StepResult]) -> None:
    """Forward the rows just produced (one batched LLM call) and store the next logits."""
    if not slots:
        return
    text = torch.tensor([r.next_text for r in results], dtype=torch.long)
    codec = torch.tensor([r.next_codec for r in results], dtype=torch.long)
    logits, hidden = model.step(cache, slots, text, codec)
    for i, s in enumerate(states):
        s.logits, s.hidden = logits[i], hidden[i]


def _decode_wave(model, frames: list[list[int]]) -> np.ndarray:
    if not frames:
        return np.zeros(0, dtype=np.float32)
    codes = torch.tensor(frames, dtype=torch.long, device=model.device).T[None]  # [1, 4, T]
    dec = model.codec_decoder
    wav = dec(codes.to(next(dec.parameters()).device))
    return wav[0].float().cpu().numpy()


@torch.no_grad()
def generate(
    model, requests: Sequence, opts: GenerationOptions | None = None, generator: torch.Generator | None = None
) -> list[Reply]:
    """Answer several requests together: one batched prefill, one batched forward per step."""
    opts = opts or GenerationOptions()
    runs = model.prepare_many(list(requests), voice=opts.speech)
    return generate_from_tokens(model, runs, opts, generator)


@torch.no_grad()
def generate_from_tokens(model, runs, opts: GenerationOptions, generator=None) -> list[Reply]:
    n = len(runs)
    cache = model.new_cache(n, max(len(r) for r in runs) + opts.max_new_tokens + 1)
    logits, hidden = model.prefill(cache, list(range(n)), runs)
    states = [ReplyState(model, opts) for _ in range(n)]
    for i, s in enumerate(states):
        s.logits, s.hidden = logits[i], hidden[i]
    active = list(range(n))
    while active:
        results = sample_step(model, [states[i] for i in active], generator)
        keep = [(i, r) for i, r in zip(active, results) if not states[i].finished]
        active = [i for i, _ in keep]
        feed_step(model, cache, active, [states[i] for i in active], [r for _, r in keep])
    replies = []
    for s in states:
        frames = s.machine.frames
        wav = _decode_wave(model, frames) if opts.speech and opts.decode_audio else None
        replies.append(
            Reply(
                text=model.tokenizer.decode(s.machine.text_ids),
                text_ids=list(s.machine.text_ids),
                frames=np.asarray(frames, dtype=np.int64).reshape(-1, model.config.num_audio_heads),
                audio=wav,
                steps=s.steps,
                finished=s.machine.done or (opts.stop_after_text and s.machine.ending),
            )
        )
    return replies


@torch.no_grad()
def stream(model, request, opts: GenerationOptions | None = None, generator=None) -> Iterator[Event]:
    """Yield text deltas, codec frames and waveform chunks as they are produced."""
    opts = opts or GenerationOptions()
    run = model.prepare(request, voice=opts.speech)
    cache = model.new_cache(1, len(run) + opts.max_new_tokens + 1)
    logits, hidden = model.prefill(cache, [0], [run])
    s = ReplyState(model, opts)
    s.logits, s.hidden = logits[0], hidden[0]
    dec = model.codec_decoder
    dstate = dec.init_state(1) if opts.speech and opts.decode_audio else None
    while True:
        r = sample_step(model, [s], generator)[0]
        ev = Event(token=r.text_token, done=s.finished)
        if r.text_token is not None:
            ev.text = s.detok.push(r.text_token)
        if r.frame is not None:
            ev.frame = np.asarray(r.frame, dtype=np.int64)
            if dstate is not None:
                p = next(dec.parameters())
                wav = dec.step(torch.tensor([r.frame], dtype=torch.long, device=p.device), dstate)
                ev.audio = wav[0].float().cpu().numpy()
        if s.finished:
            if dstate is not None:
                tail = dec.flush(dstate)[0].float().cpu().numpy()
                ev.audio = tail if ev.audio is None else np.concatenate([ev.audio, tail])
            yield ev
            return
        yield ev
        feed_step(model, cache, [0], [s], [r])

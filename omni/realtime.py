"""RealtimeOmni: the `omni.realtime_api.RealtimeModel` the streaming engine drives.

It wraps an `OmniModel` with a pre-allocated KV cache of `max_slots` slots (one
per session), one streaming audio-encoder state with a row per slot, and per
slot the incremental sequence builder (omni.sequence_stream) and, while answering,
the reply state (segment machine, penalty histories, pending logits).

Batching: `prefill` writes the chunks of several slots in one right-padded
forward, `decode_step` advances several slots with one forward.

Rollback: `truncate(slot, n)` cuts the KV cache to n tokens and restores the
builder state recorded at the latest boundary <= n, so the slot continues
exactly as if nothing after n had happened (tests compare the KV cache and the
following outputs with a run that never speculated). The turn layout follows
stream time, not packets (omni.sequence_stream), so a partial packet flushed
before speculating leaves its second pending in the recorded builder state and
the rest of the audio completes it as if never split. The audio encoder is never
flushed in place: `begin_response` flushes a copy to release the last frames,
so a rolled-back turn continues from the untouched encoder state. The
encoder state spans the whole session (one continuous audio stream); audio that
arrives while the assistant answers is encoded but not prefilled.

Video: packets with `frame_times` pair dense frames by the turn second they fall
into, across packets; a second's lone frame waits in the builder state (so
snapshots and rollback carry it) and goes alone once the audio passes its
second or the turn closes, as the offline builder places units by their time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from encoders.image_processing import preprocess_video, video_num_tokens
from omni.generation import GenerationOptions, ReplyState, feed_step, sample_step
from omni.realtime_api import StepOutput, UserChunk
from omni.sequence import Tokens
from omni.sequence_av import EncodedChunk
from omni.sequence_stream import IncrementalBuilder, TurnState
from speech.decoder_pool import DecoderPool, PoolRow


SPARSE_SHARE = 8  # frames seen while answering take at most 1/SPARSE_SHARE of the context


@dataclass
class _Slot:
    builder: IncrementalBuilder
    snapshots: dict[int, TurnState] = field(default_factory=dict)
    reply: ReplyState | None = None
    response_start: int | None = None  # cache length when the reply's first row was written
    cut: bool = False  # the reply was truncated: close it with </longcat_s>
    turn_end: float | None = None  # P(the user turn was complete), judged when the reply began
    ids: list[int] = field(default_factory=list)  # text id of every cached position


class RealtimeOmni:
    """Batched, rollback-able incremental inference over KV-cache slots."""

    def __init__(
        self,
        model,
        max_slots: int = 4,
        capacity: int = 4096,
        system_prompt: str | None = None,
        options: GenerationOptions | None = None,
        decode_mode: str | None = None,
        turn_end: Any = None,
        audio_pool: str | None = None,
    ) -> None:
        """decode_mode: "eager" | "static" | "graph" (CUDA graphs per batch size,
        see OmniModel.set_decode_mode); None keeps the model's setting.
        turn_end: the model directory's end-of-turn head (omni/turn_end.py), or None.
        audio_pool: how the replies' codec frames are decoded, one pooled decoder
        state with a row per reply (speech/decoder_pool.py): "rows" | "full" |
        "graph"; None: "graph" when the backbone decodes in CUDA graphs, else "rows"."""
        self.model = model.eval()
        self.turn_end = turn_end
        if decode_mode is not None:
            model.set_decode_mode(decode_mode)
        cfg = model.config
        self.max_slots = max_slots
        self.capacity = capacity
        self.cache = model.new_cache(max_slots, capacity)
        self.system_prompt = system_prompt
        self.options = options or GenerationOptions(max_new_tokens=capacity)
        self.input_sample_rate = cfg.audio.sample_rate
        self.output_sample_rate = cfg.codec.sample_rate
        self.codec_frame_samples = cfg.codec.hop_length
        self._slots: dict[int, _Slot] = {}
        # one streaming audio-encoder state with a row per slot: chunks of several
        # sessions are encoded in one batched step (rows may be at any position)
        self._audio = model.audio_encoder.init_state(max_slots)
        # the replies' decoder: twice the slots, since a cut reply's row stays taken
        # until its last queued frame is decoded while the next reply starts
        if audio_pool is None:
            audio_pool = "graph" if model.decode_mode == "graph" else "rows"
        self.audio_pool = DecoderPool(model.codec_decoder, 2 * max_slots, mode=audio_pool)
        self._generator = None
        if self.options.text.seed is not None:
            self._generator = torch.Generator(device=model.device).manual_seed(self.options.text.seed)

    @torch.no_grad()
    def warm_up_decode(self, batch_sizes: Sequence[int] | None = None) -> None:
        """Build the decode step of each batch size now (in "graph" mode: capture
        its CUDA graph), so no session's first reply pays for it. Needs every slot
        closed: it steps slots 0..b-1 with pad rows, then empties them."""
        if self._slots:
            raise RuntimeError(f"warm_up_decode needs every slot closed (open: {sorted(self._slots)})")
        cfg = self.model.config
        for b in batch_sizes or range(1, self.max_slots + 1):
            if not 1 <= b <= self.max_slots:
                raise ValueError(f"batch size {b} is not in 1..{self.max_slots}")
            ids = torch.full((b,), self.model.tokenizer.special.pad, dtype=torch.long)
            codec = torch.full((b, cfg.num_audio_heads), cfg.audio_pad_id, dtype=torch.long)
            self.model.step(self.cache, list(range(b)), ids, codec)
        for slot in range(self.max_slots):
            self.cache.reset(slot)
        self.audio_pool.warm_up()

    # ------------------------------------------------------------------ slots
    def _slot(self, slot: int) -> _Slot:
        if slot not in self._slots:
            raise KeyError(f"slot {slot} is not open (open slots: {sorted(self._slots)})")
        return self._slots[slot]

    def open_slot(self, system_prompt: str | None = None) -> int:
        free = [s for s in range(self.max_slots) if s not in self._slots]
        if not free:
            raise RuntimeError(f"all {self.max_slots} slots are in use")
        slot = free[0]
        self.cache.reset(slot)
        cfg = self.model.config
        self._slots[slot] = _Slot(IncrementalBuilder(
            self.model.fmt, frames_ready=self._frames_ready, sample_rate=cfg.audio.sample_rate,
            chunk_seconds=cfg.chunk_seconds, max_sparse_tokens=self.capacity // SPARSE_SHARE))
        self._audio.reset_rows([slot])
        self._record(slot)
        prompt = system_prompt if system_prompt is not None else self.system_prompt
        if prompt:
            self.prefill_text(slot, "system", prompt)
        return slot

    def close_slot(self, slot: int) -> None:
        self._slot(slot)
        del self._slots[slot]
        self.cache.reset(slot)

    def slot_length(self, slot: int) -> int:
        self._slot(slot)
        return self.cache.length(slot)

    def slot_token_ids(self, slot: int) -> list[int]:
        """Text id of every position in the slot's cache (pad in audio-only reply rows)."""
        return list(self._slot(slot).ids)

    def _frames_ready(self, num_samples: int) -> int:
        """Frames the streaming encoder has released after `num_samples` samples of
        its stream (the rule of OmniModel.frames_ready, by bisection: sessions are long)."""
        enc = self.model.audio_encoder
        lo, hi = 0, enc.num_frames(num_samples)
        while lo < hi:  # count of frames j < total with samples_needed(j) <= num_samples
            mid = (lo + hi) // 2
            if enc.samples_needed(mid) <= num_samples:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def _record(self, slot: int) -> None:
        s = self._slots[slot]
        s.snapshots[self.cache.length(slot)] = s.builder.snapshot()

    def truncate(self, slot: int, length: int) -> None:
        s = self._slot(slot)
        self.cache.truncate(slot, length)
        del s.ids[length:]
        for k in [k for k in s.snapshots if k > length]:
            del s.snapshots[k]
        now = s.builder.state
        s.builder.restore(s.snapshots[max(s.snapshots)])
        # the encoder is never rolled back: its stream position stays where it is
        s.builder.state.stream_samples, s.builder.state.stream_frames = now.stream_samples, now.stream_frames
        if s.builder.state.in_response:
            s.builder.state.sparse = list(now.sparse)  # frames seen while answering stay buffered
        if s.response_start is not None and length < s.response_start:
            s.reply, s.response_start, s.cut = None, None, False  # rolled back before the reply
        elif s.reply is not None:
            s.reply.logits = None  # no more decoding: the engine closes the reply next
            s.cut = True
        self._record(slot)

    # ------------------------------------------------------------------ context accounting
    # Upper bounds of what a call may write into a slot, so that the engine makes
    # room (or refuses) before the call instead of overflowing inside it.
    MARKUP_TOKENS = 8  # markers and a timestamp, per visual unit or second of audio

    def prefill_cost(self, slot: int, enc: EncodedChunk) -> int:
        """Tokens `prefill([(slot, enc)])` may write: the chunk's audio frames and
        visual units plus what the builder still holds for this turn (seconds not
        yet complete, sparse frames kept while answering, a lone dense frame)."""
        st = self._slot(slot).builder.state
        held = [int(f.shape[0]) for p in st.pending.values() for f in (*p.images, *p.audio)]
        held += [int(f.shape[0]) for _, f in st.sparse]
        units = len(enc.images) + len(st.sparse) + sum(len(p.images) for p in st.pending.values())
        if st.lone_frame is not None:
            held.append(self._unit_tokens(st.lone_frame[1]))
            units += 1
        seconds = math.ceil(enc.num_samples / self.input_sample_rate / self.model.config.chunk_seconds) + 1
        media = int(enc.audio.shape[0]) + sum(int(f.shape[0]) for f in enc.images) + sum(held)
        return media + self.MARKUP_TOKENS * (units + seconds + len(st.pending))

    def text_cost(self, role: str, text: str) -> int:
        """Tokens `prefill_text(slot, role, text)` writes (the turn's markers included)."""
        return len(self.model.tokenizer.encode(text)) + self.MARKUP_TOKENS

    def response_cost(self, slot: int) -> int:
        """Tokens `begin_response` may write before the first step: the turn's
        remaining audio and frames, the lone frame, and the reply's opening."""
        st = self._slot(slot).builder.state
        held = [int(f.shape[0]) for p in st.pending.values() for f in (*p.images, *p.audio)]
        if st.lone_frame is not None:
            held.append(self._unit_tokens(st.lone_frame[1]))
        # the encoder's flush releases the frames of every sample fed so far
        enc = self.model.audio_encoder
        tail = max(0, enc.num_frames(st.stream_samples) - st.stream_frames) + 1 if st.audio_open else 0
        return sum(held) + int(tail) + self.MARKUP_TOKENS * (len(held) + 2)

    def _unit_tokens(self, frame: Any) -> int:
        h, w = np.asarray(frame).shape[:2]
        return video_num_tokens(2, h, w, self.model.config.vision)[0]

    # ------------------------------------------------------------------ input
    def encode_chunk(self, slot: int, chunk: UserChunk) -> EncodedChunk:
        """Stage 2: run the streaming audio encoder and the ViT on one packet."""
        return self.encode_chunks([(slot, chunk)])[0]

    @torch.no_grad()
    def encode_chunks(self, items: Sequence[tuple[int, UserChunk]]) -> list[EncodedChunk]:
        """Stage 2 for several slots at once: one batched audio-encoder step over the
        slot rows and one packed ViT pass over every frame of every packet."""
        m = self.model
        slots = [slot for slot, _ in items]
        if len(set(slots)) != len(slots):
            raise ValueError(f"encode_chunks got the same slot twice: {slots}")
        for slot in slots:
            self._slot(slot)
        audio = {slot: np.asarray(ch.audio, dtype=np.float32).reshape(-1) for slot, ch in items}
        rows = [audio.get(r, np.zeros(0, dtype=np.float32)) for r in range(self.max_slots)]
        # each packet's place in its slot's encoder stream: the builder lays the turn out by it
        where = {slot: (self._audio.num_samples[slot], self._audio.num_frames[slot]) for slot in slots}
        if any(a.size for a in rows):
            frames_per_row = m.audio_encoder.step_rows([torch.from_numpy(a) for a in rows], self._audio)
        else:
            frames_per_row = [torch.zeros(0, m.config.llm.hidden_size)] * self.max_slots
        units, owner, times = [], [], []
        for k, (slot, ch) in enumerate(items):
            n = len(ch.frames)
            dur = audio[slot].size / self.input_sample_rate if audio[slot].size else m.config.chunk_seconds
            if ch.frame_times is not None:
                u, t = self._timed_units(slot, ch, where[slot][0], int(audio[slot].size))
            elif n and ch.speaking:  # dense: consecutive frame pairs, one unit each
                u = preprocess_video(list(ch.frames), m.config.vision)
                t = [ch.start_time + 2 * i * dur / n for i in range(len(u))]
            elif n:  # sparse: single frames
                u, t = list(ch.frames), [ch.start_time + i * dur / n for i in range(n)]
            else:
                u, t = [], []
            units += u
            owner += [k] * len(u)
            times.append(t)
        feats = m.encode_visual(units) if units else []
        images: list[list[torch.Tensor]] = [[] for _ in items]
        for k, f in zip(owner, feats):
            images[k].append(f)
        return [
            EncodedChunk(ch.start_time, frames_per_row[slot], images[k], times[k], int(audio[slot].size), ch.speaking,
                         stream_samples=where[slot][0], stream_frames=where[slot][1])
            for k, (slot, ch) in enumerate(items)
        ]

    def _timed_units(self, slot: int, ch: UserChunk, pos: int, n: int) -> tuple[list, list[float]]:
        """Visual units of a packet with frame times, split-invariant: dense frames
        of the user turn pair by the turn second they fall into (the lone frame of
        a second waits in the builder state for the next packet, and goes alone,
        repeated, once the audio has passed its second); other frames go one by one
        (sparse) or paired within the packet (dense while answering)."""
        if len(ch.frame_times) != len(ch.frames):
            raise ValueError(f"UserChunk.frame_times has {len(ch.frame_times)} times for {len(ch.frames)} frames")
        vis = self.model.config.vision
        frames = sorted(zip((float(t) for t in ch.frame_times), ch.frames), key=lambda x: x[0])
        st = self._slots[slot].builder.state
        joins_turn = ch.speaking and (st.in_user_turn or not st.in_response)
        if not ch.speaking:
            return [f for _, f in frames], [t for t, _ in frames]
        if not joins_turn:  # buffered as sparse frames while answering
            pairs = [frames[i:i + 2] for i in range(0, len(frames), 2)]
            return [preprocess_video([f for _, f in p], vis)[0] for p in pairs], [p[0][0] for p in pairs]
        # the turn's clock, as the builder will set it (a chunk that opens the turn starts it)
        origin_t, origin_s = (st.turn_time, st.turn_origin) if st.in_user_turn else (ch.start_time, pos)
        cs, cn = self.model.config.chunk_seconds, round(self.input_sample_rate * self.model.config.chunk_seconds)

        def second(t: float) -> int:  # the builder's rule (sequence_stream._second_of)
            return math.floor((t - origin_t + 1e-6) / cs)

        groups, lone = [], st.lone_frame
        for t, f in frames:
            if lone is not None and second(lone[0]) == second(t):
                groups.append([lone, (t, f)])
                lone = None
            else:
                if lone is not None:
                    groups.append([lone])
                lone = (t, f)
        # the builder emits second k once the turn's audio reaches its end: the lone frame goes now
        if lone is not None and (second(lone[0]) + 1) * cn <= pos + n - origin_s:
            groups.append([lone])
            lone = None
        st.lone_frame = lone
        return [preprocess_video([f for _, f in g], vis)[0] for g in groups], [g[0][0] for g in groups]

    def _flush_lone_frames(self, slots: Sequence[int]) -> None:
        """The slots' user turns close: each waiting lone frame becomes a unit of its own
        (the frames of all the slots encoded in one packed ViT pass)."""
        todo = []
        for slot in slots:
            st = self._slots[slot].builder.state
            if st.lone_frame is not None and st.in_user_turn:
                todo.append((slot, *st.lone_frame))
            st.lone_frame = None
        if not todo:
            return
        with torch.no_grad():
            feats = self.model.encode_visual([preprocess_video([f], self.model.config.vision)[0] for _, _, f in todo])
        for (slot, t, _), feat in zip(todo, feats):
            self._slots[slot].builder.add_images([(t, feat)])

    def _prefill_runs(self, slots: Sequence[int], runs: Sequence[Tokens]):
        todo = [(s, r) for s, r in zip(slots, runs) if len(r)]
        if not todo:
            return {}
        logits, hidden = self.model.prefill(self.cache, [s for s, _ in todo], [r for _, r in todo])
        out = {}
        for i, (s, r) in enumerate(todo):
            out[s] = (logits[i], hidden[i])
            self._slots[s].ids.extend(r.ids.tolist())
            self._record(s)
        return out

    def prefill(self, items: Sequence[tuple[int, Any]]) -> None:
        """Stage 3: add the encoded chunks of several slots in one forward.

        A slot that is answering only buffers the chunk's frames (sparse, 0.5 FPS)
        for its next user turn; its audio is not prefilled."""
        slots, runs = [], []
        for slot, enc in items:
            s = self._slot(slot)
            # while the slot answers, chunks only feed the sparse-frame buffer (no KV write)
            slots.append(slot)
            runs.append(s.builder.add_chunk(enc))
        self._prefill_runs(slots, runs)
        for slot in slots:  # also after a chunk that only left a second pending: rollback restores it
            self._record(slot)

    def prefill_text(self, slot: int, role: str, text: str) -> None:
        s = self._slot(slot)
        if s.reply is not None:
            raise RuntimeError(f"slot {slot} is answering; call end_response first")
        self._flush_lone_frames([slot])
        self._prefill_runs([slot], [s.builder.add_text_turn(role, text)])

    # ------------------------------------------------------------------ output
    @torch.no_grad()
    def begin_response(self, slot: int, opening: str = "") -> None:
        """Close the user turn (releasing the encoder's last frames) and open the reply,
        prefilled with `opening` (text the reply must start with, e.g. a forced tool call)."""
        self.begin_responses([(slot, opening)])

    @torch.no_grad()
    def begin_responses(self, items: Sequence[tuple[int, str]]) -> None:
        """`begin_response` of several slots, (slot, opening) each, with one prefill forward
        for all of them: when many sessions finish their turns together, one call."""
        slots = [slot for slot, _ in items]
        if len(set(slots)) != len(slots):
            raise ValueError(f"begin_responses: a slot twice in {slots}")
        for slot in slots:
            if self._slot(slot).reply is not None:
                raise RuntimeError(f"slot {slot} is already answering")
        self._flush_lone_frames(slots)
        # the user turns' last audio frames: the open rows flushed together, on a copy (the rows go on)
        open_rows = [slot for slot in slots if self._slot(slot).builder.state.audio_open]
        tails = {}
        if open_rows:
            tails = dict(zip(open_rows, self.model.audio_encoder.flush_rows(self._audio.select_rows(open_rows))))
        runs = [self._slot(slot).builder.begin_response(tails.get(slot), voice=self.options.speech, opening=opening)
                for slot, opening in items]
        out = self._prefill_runs(slots, runs)
        for slot, opening in items:
            s = self._slot(slot)
            reply = ReplyState(self.model, self.options)
            reply.logits, reply.hidden = out[slot]
            s.reply, s.response_start, s.cut, s.turn_end = reply, self.cache.length(slot), False, None
        # the reply's first position has read the whole user turn: judge it complete or not
        judged = [slot for slot, opening in items if self.turn_end is not None and not opening]
        if judged:
            probs = self.turn_end.probs([self._slot(slot).reply.hidden for slot in judged])
            for slot, p in zip(judged, probs):
                self._slot(slot).turn_end = p

    def turn_end_prob(self, slot: int) -> float | None:
        """P(the user had finished) judged at the start of the slot's current reply,
        or None without an end-of-turn head (or for a reply with a forced opening)."""
        return self._slot(slot).turn_end

    @torch.no_grad()
    def decode_step(self, slots: Sequence[int]) -> list[StepOutput]:
        """One LLM step for every slot (one batched forward); finished slots must not be passed again."""
        states = []
        for slot in slots:
            s = self._slot(slot)
            if s.reply is None or s.reply.logits is None:
                raise RuntimeError(f"slot {slot} is not answering (call begin_response first)")
            if s.reply.finished:
                raise RuntimeError(f"slot {slot} finished its reply; call end_response")
            states.append(s.reply)
        results = sample_step(self.model, states, self._generator)
        # every row goes into the cache, the last one too: the reply stays in context;
        # a slot whose cache is full ends its reply here instead of failing the batch
        full = {slot for slot in slots if self.cache.length(slot) >= self.capacity}
        for slot, st in zip(slots, states):
            if slot in full:
                st.steps = max(st.steps, st.opts.max_new_tokens)
        fed = [(slot, st, r) for slot, st, r in zip(slots, states, results) if slot not in full]
        feed_step(self.model, self.cache, [f[0] for f in fed], [f[1] for f in fed], [f[2] for f in fed])
        outs = []
        for slot, st, r in zip(slots, states, results):
            if slot not in full:
                self._slots[slot].ids.append(r.next_text)
            # no builder snapshot per step: inside a reply the builder state is the
            # one recorded at begin_response (truncate restores that one)
            text = st.detok.push(r.text_token) if r.text_token is not None else ""
            frame = None if r.frame is None else np.asarray(r.frame, dtype=np.int64)
            # a reply that stops at a length limit (max_new_tokens, or a full context) is cut, not ended
            outs.append(StepOutput(r.text_token, text, frame, st.finished, cut=st.finished and not st.ended))
        return outs

    def end_response(self, slot: int) -> None:
        """Close the assistant turn (after the last step, or after a barge-in truncate)."""
        self.end_responses([slot])

    def end_responses(self, slots: Sequence[int]) -> None:
        """`end_response` of several slots with one prefill forward (slots with no reply to
        close are left as they are)."""
        if len(set(slots)) != len(slots):
            raise ValueError(f"end_responses: a slot twice in {list(slots)}")
        todo, runs, saved = [], [], []
        for slot in slots:
            s = self._slot(slot)
            if s.reply is None and s.response_start is None and not s.builder.state.in_response:
                continue
            # the model's own </longcat_s> is in the cache unless the reply was cut or never ended
            needs_eos = s.cut or s.reply is None or not s.reply.machine.ending
            todo.append(slot)
            saved.append((self.cache.length(slot), s.builder.snapshot()))
            runs.append(s.builder.end_response(needs_eos))
        try:
            self._prefill_runs(todo, runs)
        except Exception:  # every slot as it was: its reply still to close
            for slot, (length, snap) in zip(todo, saved):
                self.cache.truncate(slot, length)
                self._slot(slot).builder.restore(snap)
            raise
        for slot in todo:
            s = self._slot(slot)
            s.reply, s.response_start, s.cut = None, None, False
        # The audio encoder state runs on across turns: the session is one continuous
        # stream, and chunks encoded during the reply (a barge-in) stay in order.

    # ------------------------------------------------------------------ audio out
    def new_audio_state(self) -> Any:
        """A row of the pooled decoder; a lone single-stream state when every row is taken."""
        try:
            return self.audio_pool.acquire()
        except RuntimeError:
            return self.model.codec_decoder.init_state(1)

    @torch.no_grad()
    def decode_audio(self, items: Sequence[tuple[Any, np.ndarray]]) -> list[np.ndarray]:
        if not items:
            return []
        dec = self.model.codec_decoder
        device = next(dec.parameters()).device
        # one batched decoder step for all responses (each at its own position in its
        # stream): the cost of a round barely grows with the number of sessions
        codes = torch.as_tensor(np.stack([np.asarray(frame, dtype=np.int64).reshape(-1) for _, frame in items]),
                                device=device)
        pooled = [i for i, (state, _) in enumerate(items) if isinstance(state, PoolRow)]
        lone = [i for i in range(len(items)) if i not in set(pooled)]
        pieces: list[Any] = [None] * len(items)
        if pooled:
            for i, p in zip(pooled, self.audio_pool.step([(items[i][0], codes[i]) for i in pooled])):
                pieces[i] = p
        if lone:
            for i, p in zip(lone, dec.step_streams(codes[lone], [items[i][0] for i in lone])):
                pieces[i] = p
        return [p.float().cpu().numpy() for p in pieces]

    @torch.no_grad()
    def flush_audio(self, state: Any) -> np.ndarray:
        if isinstance(state, PoolRow):
            return self.audio_pool.flush(state).float().cpu().numpy()
        return self.model.codec_decoder.flush(state)[0].float().cpu().numpy()

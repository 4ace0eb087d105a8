"""The default model's pack as lookup tables, for building whole batches on the device.

`mdp.curriculum.data.PackDataset` builds one sample at a time in Python (token runs,
numpy microphone, PIL patches) in loader workers. The device path
(`mdp.curriculum.plan` plans a step on the host, `mdp.curriculum.build` materializes it
on the device) instead reads the pack through the tables made here, once per run:

    id pool      every token run a sample can contain, tokenized once by the same
                 `ChatFormat` pieces the serving code uses: role headers, newline,
                 generation prompts, audio open / close, prompts, each clip's question,
                 each answer's "say ..." and reply text (+ EOS), each scene's caption,
                 every `second{t}:` timestamp, and single placeholder / pad ids (runs
                 of one id are read with stride 0)
    row pool     codec rows [R, 4]: row 0 the codec pad, then every answer's spoken
                 reply rows (`speech_rows`)
    media        the pack's frames (uint8 [F, S, S, 3]) and clean question clips
                 (mu-law uint8, decoded by a 256-entry table equal to `mulaw_decode`)
    voice bank   optional (`omni.synth.voice_bank`): more clean renderings of the
                 pack's question texts, appended after the pack's clips; `alternatives`
                 lists, per pack clip, every clip that says its text (itself first),
                 and `choose_clip` picks one per draw

A sample is then a list of (pool start, length, stride) segments, so a batch is a
few gathers whatever its layouts. Host-side arrays (numpy) give the lengths the
planner needs; device tensors hold what the builder reads.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from mdp.curriculum.data import LAYOUTS, speech_rows
from omni.synth.audio import mulaw_decode
from omni.synth.questions import CAPTION_PROMPT, TRANSCRIBE_PROMPT, scene_caption

MAX_TIMESTAMP_S = 120.0  # `second{t}:` runs tokenized for t in [0, MAX] in 0.1 s steps


class _Pool:
    """A growing flat list of ids with (offset, length) per added run."""

    def __init__(self) -> None:
        self.ids: list[int] = []

    def add(self, run: list[int]) -> tuple[int, int]:
        off = len(self.ids)
        self.ids += list(run)
        return off, len(run)

    def add_many(self, runs: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        spans = [self.add(r) for r in runs]
        return np.array([s[0] for s in spans], np.int64), np.array([s[1] for s in spans], np.int64)


class PackTables:
    """Token, codec-row and media tables of a pack (see the module docstring).

    `codes`: the answers' codec tokens (`answer_code_table`), the ones the loader path
    uses. Tables for things no layout can reach (e.g. spoken replies whose text is
    longer than their audio) are still built; the planner never selects them."""

    def __init__(self, pack, cfg, tokenizer, codes: list[np.ndarray], device: torch.device, bank=None) -> None:
        from omni.sequence import ChatFormat, format_timestamp

        self.pack, self.cfg, self.device = pack, cfg, torch.device(device)
        fmt = ChatFormat(tokenizer, cfg.audio_pad_id)
        sp = self.sp = tokenizer.special
        text = lambda s: fmt.text(s).ids.tolist()
        pool = _Pool()
        # single ids, read with stride 0 for runs of any length
        self.IMAGE_PAD = pool.add([sp.image_pad])[0]
        self.AUDIO_PAD = pool.add([sp.audio_pad])[0]
        self.REPLY_PAD = pool.add([cfg.audio_pad_id])[0]  # text stream of a spoken reply after its EOS
        self.ROW_PAD = pool.add([sp.pad])[0]
        # fixed runs: (offset, length)
        self.user = pool.add(fmt.header("user").ids.tolist())
        self.newline = pool.add(fmt.newline().ids.tolist())
        self.prompt_voice = pool.add(fmt.generation_prompt(True).ids.tolist())
        self.prompt_text = pool.add(fmt.generation_prompt(False).ids.tolist())
        self.audio_open = pool.add(fmt.audio_open().ids.tolist())
        self.audio_close = pool.add(fmt.audio_close().ids.tolist())
        self.caption_prompt = pool.add(text(CAPTION_PROMPT))
        self.transcribe_prompt = pool.add(text(TRANSCRIBE_PROMPT))
        meta = pack.meta
        clip_texts, answers = meta["clip_texts"], meta["answer_texts"]
        # per clip: the question as a user text item, and as a transcription reply (+ EOS)
        self.q_off, self.q_len = pool.add_many([text(t) for t in clip_texts])
        self.trx_off, self.trx_len = pool.add_many([tokenizer.encode(t) + [sp.eos] for t in clip_texts])
        self.sample_clip = pack.sample_clip.astype(np.int64)
        self.clip_offset = pack.clip_offset[:-1].astype(np.int64)  # start of each clip in `clips`
        self.clip_len = np.diff(pack.clip_offset).astype(np.int64)
        clip_audio = pack.clip_mulaw
        self.alt_start = self.alt_count = self.alt_ids = None
        self.sentence_base, self.num_sentences = len(clip_texts), 0
        if bank is not None:
            clip_audio = self._add_bank(bank, list(clip_texts), pool, text, tokenizer)
            self._add_sentences(bank, pool, text, tokenizer)
        # per answer: "say {answer}", and the reply text (+ EOS)
        self.say_off, self.say_len = pool.add_many([text("say " + a) for a in answers])
        reply = [tokenizer.encode(a) + [sp.eos] for a in answers]
        self.ans_off, self.ans_len = pool.add_many(reply)
        # per scene: the caption reply (+ EOS)
        self.cap_off, self.cap_len = pool.add_many(
            [tokenizer.encode(scene_caption(pack.scene(k))) + [sp.eos] for k in range(pack.num_scenes)])
        # `second{t}:` for t = tenth / 10
        self.ts_off, self.ts_len = pool.add_many(
            [text(format_timestamp(k / 10)) for k in range(int(MAX_TIMESTAMP_S * 10) + 1)])
        # codec rows of every spoken reply; row 0 is the pad row
        rows = [[cfg.audio_pad_id] * 4]
        self.rows_off = np.zeros(len(answers), np.int64)
        self.rows_len = np.zeros(len(answers), np.int64)
        self.voice_ok = np.zeros(len(answers), bool)  # the reply's text fits its audio rows
        # each answer's question family (that of the first sample it answers; -1: none)
        self.answer_family = np.full(len(answers), -1, np.int64)
        has, first = np.unique(pack.sample_answer, return_index=True)
        keep = has >= 0
        self.answer_family[has[keep]] = pack.sample_family[first[keep]]
        for a, c in enumerate(codes):
            _, r = speech_rows(reply[a][: len(c[0]) + 1], c, cfg.audio_id_offset, cfg.audio_eos_id, cfg.audio_pad_id,
                               cfg.text_audio_delay)
            self.rows_off[a], self.rows_len[a] = len(rows), len(r)
            self.voice_ok[a] = len(reply[a]) <= len(r)
            rows += r
        self._add_tool(pool, rows, fmt, tokenizer)
        # host views the planner reads
        self.frame_offset = pack.scene_frame_offset.astype(np.int64)
        self.num_frames = np.diff(self.frame_offset)
        self.frame_size = tuple(pack.frames_all.shape[1:3])
        self._check_vision()
        # device copies the builder reads
        dev = self.device
        self.id_pool = torch.tensor(pool.ids, dtype=torch.long, device=dev)
        self.row_pool = torch.tensor(rows, dtype=torch.long, device=dev)
        self.frames = torch.from_numpy(np.ascontiguousarray(pack.frames_all)).to(dev)
        self.clips = torch.from_numpy(np.array(clip_audio)).to(dev)  # (a copy: the pack's buffer is read-only)
        self.mulaw = torch.from_numpy(mulaw_decode(np.arange(256, dtype=np.uint8))).to(dev)
        v = cfg.vision
        self.image_mean = torch.tensor(v.image_mean, device=dev).view(1, 1, 3, 1, 1)
        self.image_std = torch.tensor(v.image_std, device=dev).view(1, 1, 3, 1, 1)

    def _add_tool(self, pool: _Pool, rows: list, fmt, tokenizer) -> None:
        """The world's tool conversation (`omni.synth.tool_world`): the system turn declaring
        it, per `on` the call (+ EOS) and its silent speech rows, per case (on, ok) and reply
        kind the run between the two replies (newline, the output's tool turn, the generation
        prompt); `tool_case` [samples]: 2 * on + ok of each tool request, -1 for the rest."""
        from mdp.curriculum.data import silence_codes
        from omni.sequence import Tokens
        from omni.synth.tool_world import ToolCase, system_prompt

        pack, cfg, sp = self.pack, self.cfg, self.sp
        queries = pack.meta["sample_queries"]
        self.tool_case = np.array([2 * int(q["on"]) + int(q["ok"]) if q.get("type") == "tool" else -1
                                   for q in queries], np.int64)
        self.system_tool = pool.add(fmt.system_turn(system_prompt()).ids.tolist())
        cases = [ToolCase("", bool(k // 2), bool(k % 2)) for k in range(4)]
        calls = [tokenizer.encode(cases[2 * on].call) + [sp.eos] for on in (0, 1)]
        self.call_off, self.call_len = pool.add_many(calls)
        self.call_rows_off = np.zeros(2, np.int64)
        self.call_rows_len = np.zeros(2, np.int64)
        if np.any(self.tool_case >= 0):  # the codec's silence: only a pack with tool requests needs it
            for on, ids in enumerate(calls):
                _, r = speech_rows(ids, silence_codes(pack, len(ids) - 1), cfg.audio_id_offset, cfg.audio_eos_id,
                                   cfg.audio_pad_id, cfg.text_audio_delay)
                self.call_rows_off[on], self.call_rows_len[on] = len(rows), len(r)
                rows += r
        mid = lambda c, voice: Tokens.cat([fmt.newline(), fmt.tool_turn(c.output), fmt.generation_prompt(voice)])
        offs, lens = zip(*(pool.add_many([mid(c, voice).ids.tolist() for c in cases]) for voice in (False, True)))
        self.mid_off, self.mid_len = np.stack(offs), np.stack(lens)  # [reply kind (text, voice), case]

    def _add_bank(self, bank, clip_texts: list[str], pool, text, tokenizer) -> np.ndarray:
        """Append the bank's clips that stand for a pack clip's text (the text itself, or a
        rewording of it, `omni.synth.rewording`); returns all clip audio. A clip's question
        and transcript runs are its own words: a rewording is typed and transcribed as said."""
        first: dict[str, int] = {}
        for c, t in enumerate(clip_texts):
            first.setdefault(t, c)
        keep = np.array([b for b, t in enumerate(bank.clip_questions) if t in first], np.int64)
        src = np.array([first[bank.clip_questions[b]] for b in keep], np.int64)  # a pack clip with the question
        n = len(clip_texts)
        for name in ("q_off", "q_len", "trx_off", "trx_len"):  # the same text runs as that clip's
            col = getattr(self, name)
            setattr(self, name, np.concatenate([col, col[src]]))
        own = np.array([j for j, b in enumerate(keep) if bank.clip_texts[b] != bank.clip_questions[b]], np.int64)
        if len(own):  # rewordings: runs of their own words
            said = [bank.clip_texts[int(keep[j])] for j in own]
            q_off, q_len = pool.add_many([text(t) for t in said])
            trx_off, trx_len = pool.add_many([tokenizer.encode(t) + [self.sp.eos] for t in said])
            for name, col in (("q_off", q_off), ("q_len", q_len), ("trx_off", trx_off), ("trx_len", trx_len)):
                getattr(self, name)[n + own] = col
        total = len(self.pack.clip_mulaw)
        self.clip_offset = np.concatenate([self.clip_offset, total + bank.clip_offset[keep]])
        self.clip_len = np.concatenate([self.clip_len, np.diff(bank.clip_offset)[keep]])
        by_text: dict[str, list[int]] = {}
        for j, b in enumerate(keep):
            by_text.setdefault(bank.clip_questions[b], []).append(n + j)
        alts = [[c] + by_text.get(t, []) for c, t in enumerate(clip_texts)]
        self.alt_count = np.array([len(a) for a in alts], np.int64)
        self.alt_start = np.concatenate([[0], np.cumsum(self.alt_count)[:-1]]).astype(np.int64)
        self.alt_ids = np.concatenate([np.array(a, np.int64) for a in alts])
        self.bank_keep = keep  # clip n + j is the bank's clip keep[j]
        return np.concatenate([self.pack.clip_mulaw, bank.clip_mulaw])

    def _add_sentences(self, bank, pool, text, tokenizer) -> None:
        """Append the bank's random sentences as clips of their own (after the question
        clips), each with its text runs: what a `sentence` manifest line transcribes."""
        n = bank.sentence_clips
        self.sentence_base, self.num_sentences = len(self.clip_len), n
        if not n:
            return
        first = len(bank) - n
        texts = bank.clip_texts[first:]
        q_off, q_len = pool.add_many([text(t) for t in texts])
        trx_off, trx_len = pool.add_many([tokenizer.encode(t) + [self.sp.eos] for t in texts])
        for name, col in (("q_off", q_off), ("q_len", q_len), ("trx_off", trx_off), ("trx_len", trx_len)):
            setattr(self, name, np.concatenate([getattr(self, name), col]))
        self.clip_offset = np.concatenate([self.clip_offset, len(self.pack.clip_mulaw) + bank.clip_offset[first:-1]])
        self.clip_len = np.concatenate([self.clip_len, np.diff(bank.clip_offset)[first:]])

    def clips_of(self, sample_clip: np.ndarray, sentence: np.ndarray, variant: np.ndarray | None) -> np.ndarray:
        """Each row's clip: a random sentence's own where the row names one (>= 0), else
        `choose_clip` of the sample's."""
        clip = self.choose_clip(sample_clip, variant)
        if not np.any(sentence >= 0):
            return clip
        if int(sentence.max()) >= self.num_sentences:
            raise ValueError(f"a manifest line names random sentence {int(sentence.max())}, but the voice bank "
                             f"has {self.num_sentences}")
        return np.where(sentence >= 0, self.sentence_base + sentence, clip)

    def swap_answer(self, answer: np.ndarray, draw: np.ndarray) -> np.ndarray:
        """Another spoken answer for each row (`curriculum.speech_swap`), picked by `draw`
        (ints >= 0) among the answers of the row's answer's family whose text fits their speech
        rows ("purple star" for "purple triangle": only the text tells them apart, word by
        word); among all such answers for a family with one. Never the row's own."""
        out = answer.copy()
        fam = self.answer_family[answer]
        for f in np.unique(fam):
            rows = np.flatnonzero(fam == f)
            pool = np.flatnonzero(self.voice_ok & (self.answer_family == f))
            if len(pool) < 2:
                pool = np.flatnonzero(self.voice_ok)
            if len(pool) < 2:
                continue
            # the k-th answer of the pool without the row's own
            k = draw[rows] % (len(pool) - 1)
            out[rows] = np.where(k >= np.searchsorted(pool, answer[rows]), pool[k + 1], pool[k])
        return out

    @property
    def has_bank(self) -> bool:
        return self.alt_ids is not None

    def choose_clip(self, clip: np.ndarray, variant: np.ndarray | None) -> np.ndarray:
        """Each row's clip: with a bank and a `variant` draw, any clip that says the
        same text (the pack's own among them); else the pack's clip."""
        if variant is None or not self.has_bank:
            return clip
        return self.alt_ids[self.alt_start[clip] + variant % self.alt_count[clip]]

    @property
    def unit_tokens(self) -> int:
        """LLM tokens of one still or frame pair (every unit of a pack has one size)."""
        return self.grid[0] * self.grid[1] // 2

    def _check_vision(self) -> None:
        """The device path patchifies frames as they are: every still and every frame
        pair the loader path would make must keep the pack's size (no resize)."""
        from encoders.image_processing import image_size, video_frame_size

        v, (h, w) = self.cfg.vision, self.frame_size
        p = v.patch_size
        sizes = {image_size(h, w, v)} | {video_frame_size(h, w, 2 * n, v) for n in range(1, 33)}
        if sizes != {(h, w)} or h % p or w % (2 * p):
            raise ValueError(f"the device batch path needs the pack's {h}x{w} frames to reach the ViT unresized; "
                             f"the loader path would resize them to {sorted(sizes)}")
        self.grid = (h // p, w // p)


@functools.lru_cache(maxsize=1)
def load_bank(path: str | None):
    """The recipe's voice bank (read once per run), or None without one."""
    from omni.synth.voice_bank import VoiceBank

    return VoiceBank.load(path) if path else None


LAYOUT_CODE = {name: k for k, name in enumerate(LAYOUTS)}


def record_arrays(records: list[dict]) -> dict[str, np.ndarray]:
    """A stage manifest's records as column arrays (once per stage)."""
    return {
        "i": np.array([r["i"] for r in records], np.int64),
        "layout": np.array([LAYOUT_CODE[r["layout"]] for r in records], np.int64),
        "scene": np.array([r["scene"] for r in records], np.int64),
        "answer": np.array([r["answer"] for r in records], np.int64),
        "voice": np.array([r["voice"] for r in records], bool),
        "seed": np.array([r["seed"] for r in records], np.int64),
        "sentence": np.array([r.get("sentence", -1) for r in records], np.int64),  # -1: the sample's own clip
        "system": np.array([bool(r.get("system", False)) for r in records], bool),  # the world's tool declared
        "typed": np.array([bool(r.get("typed", False)) for r in records], bool),  # a tool request typed
    }

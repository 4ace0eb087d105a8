"""The data bridge of the default model: a synthetic-world pack -> training samples.

`omni data` writes a pack (`omni.synth.pack`: scenes at 112 px, clean question
clips, the assistant's spoken answers and their codec tokens). This module turns
it into the trainer's samples in the exact layouts the serving code builds, so
that what the model learns is what `omni chat` / `omni serve` ask:

    text        USER:{question}\\n                               (text in, offline)
    image       USER:<img>\\n{question}\\n                       (`omni chat --image --text`)
    audio       USER:second{0.0}:<|audio|><pad>*a0 ... <|/audio|>\\n   (spoken, no camera)
    stream      USER:[second{s}:<img>] second{t}:<img><|audio|><pad>*a0
                     second{t+1}:<img><pad>*a1 ... <|/audio|>\\n   (camera + mic, 1 s chunks)
    say         USER:say {answer}\\n                             (text-to-speech alignment)
    caption     USER:<img>\\ndescribe the picture\\n             (every object of the still; text reply)
    transcribe  USER:second{0.0}:<|audio|>...<|/audio|>write down what I said\\n   (the question's words)
    tool        SYSTEM:{set_light declared}</longcat_s>\\n, then the spoken request as in `stream`
                (as in `audio` without a scene), and two replies: the call; the tool's output as
                a user turn; the answer (omni/synth/tool_world.py)
    video       USER:second{0}:<img> second{1}:<img> ...{question}\n   (`omni chat --video --text`:
                every frame pair of the scene, 1 s a pair, then the question typed; no audio)

A text / image / audio / stream line with "system": true is asked after the same system
turn (the tool declared, not called), as a served session that declares the tool asks it.
A tool line with "typed": true has the request typed (`USER:{request}\\n`, as `text`, no
camera), as a text client sends it.

followed by `VOICE ASSISTANT:` + the spoken reply (text ids + EOS aligned row by
row with the codec frames, in the decoder's one-step semantic/acoustic delay, then
the audio end id) or `ASSISTANT:` + text + EOS. Only the reply carries loss (both
replies of a tool conversation: the call, spoken as silence, and the answer).

A stage manifest is JSON lines, one sample each:

    {"i": 12, "layout": "stream", "scene": 40, "answer": 7, "voice": true, "seed": 99}

(pack sample i's question, asked of pack scene `scene` whose answer is `answer`;
`seed` draws the microphone: fresh noise, gain, silences, 0.9-1.1x speed, the
stream's time offset and sparse frames). Samples are materialized on the fly from
the pack, so a 26 MB pack gives every epoch a new microphone without writing media.
The user-turn layouts come from `omni.sequence` / `omni.sequence_av` themselves.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from mdp.data import CAT_AUDIO_TEXT, CAT_NONE, CAT_TEXT, IGNORE, ManifestError, ModalityItem, Sample, iter_jsonl

from omni.synth.questions import CAPTION_PROMPT, TRANSCRIBE_PROMPT, scene_caption

# "video": a question typed beside a video's 2 FPS frame pairs, no audio (`omni chat --video --text`)
LAYOUTS = ("text", "image", "audio", "stream", "say", "caption", "transcribe", "tool", "video")
# layouts whose reply answers a question: their reply's words and end are the labels
# `answer_weight` raises ("say" copies its prompt, captions and transcripts are dense
# auxiliary signals)
ANSWER_LAYOUTS = ("text", "image", "audio", "stream", "tool", "video")
SPEECH_FAMILIES = ("repeat", "greeting")
# question layouts a line may ask with the world's tool declared ("system": true): the system
# turn of a tool conversation before the user's turn, and an ordinary reply after it
DECLARABLE = ("text", "image", "audio", "stream")


def answer_code_table(pack, codec=None, use_pack: bool = True,
                      phases: dict[str, float] | None = None) -> list[np.ndarray]:
    """int64 [4, T] raw codec tokens of every answer of the pack.

    From the pack when `omni data codes` ran and `use_pack` (and no `phases`); otherwise the
    answers' audio is tokenized here with `codec` (a `speech.Codec`, default: the shipped
    one, which is also the codec the trained model is exported with). `phases` ({answer
    text: share of a codec frame}, `load_answer_phases`) delays an answer's audio by that
    much silence before it is tokenized: where a word starts on the codec's frame grid
    decides whether its decoded speech is understood (`bench/answer_phases.py`), so the
    model learns the tokens of the phase that is."""
    from omni.synth.codes import delayed

    n = len(pack.answer_offset) - 1
    if use_pack and not phases and len(pack.answer_codes_all):
        off = pack.answer_code_offset
        return [pack.answer_codes_all[off[a] : off[a + 1]].T.astype(np.int64) for a in range(n)]
    if codec is None:
        from speech import Codec

        codec = Codec.from_pretrained()
    out = []
    for a in range(n):
        wav = delayed(pack.answer_wav(a), (phases or {}).get(pack.meta["answer_texts"][a], 0.0), codec.hop_length)
        with torch.no_grad():
            out.append(codec.encode(torch.from_numpy(wav))[0].cpu().numpy().astype(np.int64))
    return out


def load_answer_phases(path: str | None) -> dict[str, float] | None:
    """{answer text: share of a codec frame} from the "phases" of a `bench/answer_phases.py`
    table (None: no path)."""
    if not path:
        return None
    import json

    try:
        with open(path) as fh:
            phases = json.load(fh)["phases"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"curriculum.answer_phases: {path} is no table of bench/answer_phases.py "
                         f"(a JSON object with \"phases\": {{answer: share of a frame}}): {e!r}") from None
    bad = {a: v for a, v in phases.items() if not isinstance(v, (int, float)) or not 0 <= v < 1}
    if bad:
        raise ValueError(f"{path}: answer phases must be shares of a frame in [0, 1), got {bad}")
    return {a: float(v) for a, v in phases.items()}


def silence_codes(pack, frames: int, codec=None) -> np.ndarray:
    """int64 [4, frames]: the codec's silent frame repeated, the speech of a reply that says
    nothing (a tool call). From the pack (`omni data codes` stores it), else from `codec`
    (default: the shipped one, as in `answer_code_table`)."""
    frame = pack.meta.get("silence_frame")
    if frame is None:
        from omni.synth.codes import silence_frame
        from speech import Codec

        frame = silence_frame(codec if codec is not None else Codec.from_pretrained())
    return np.repeat(np.asarray(frame, np.int64)[:, None], max(1, frames), axis=1)


def pack_cmvn(pack, frontend, num_clips: int = 256, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Global mean and inverse std of the fbank features of `num_clips` question clips
    of the pack, each with a fresh microphone (noise, gain, silences, speed), as the
    training samples have. A model trained from scratch must normalize its features
    with its own data's statistics (raw log-mel bins sit near 15 with a spread of ~3:
    the constant drowns the signal and slows the encoder's learning several-fold).
    A pack of fewer questions gives some of them twice: each draw hears another
    microphone, and a few draws of noise (white at 8 dB or none) would skew the estimate."""
    rng = np.random.default_rng([seed, 7])
    picks = rng.choice(len(pack), size=num_clips, replace=len(pack) < num_clips)
    with torch.no_grad():
        dev = frontend.cmvn.mean.device
        feats = torch.cat([frontend.fbank(torch.from_numpy(pack.question_audio(int(i), rng))[None].float().to(dev))[0]
                           for i in picks])
    return feats.mean(0), feats.std(0).clamp_min(1e-3).reciprocal()


def speech_rows(text_ids: list[int], codes: np.ndarray, offset: int, audio_eos: int, pad: int,
                delay: int = 0) -> tuple[list[int], list[list[int]]]:
    """The rows of one spoken reply, as `omni.segments.SegmentMachine` reads them.

    With `delay` d (`OmniConfig.text_audio_delay`) the first d rows are pad rows; then
    speech row r feeds codec [sem_r, ac_{r-1}] (acoustic pad at r = 0) and the last row is
    [audio_eos, ac_{T-1}]. Row k feeds text t_k; text is padded after its EOS. Position p
    predicts row p + 1, so T frames decode from d + T + 1 rows.
    """
    q, t = codes.shape
    if q != 4 or t < 1:
        raise ValueError(f"answer codes must be [4, T>=1], got {list(codes.shape)}")
    if delay < 0:
        raise ValueError(f"text_audio_delay must be >= 0, got {delay}")
    rows = [[pad] * 4 for _ in range(delay)]
    for r in range(t + 1):
        sem = int(codes[0, r]) + offset if r < t else audio_eos
        ac = [int(c) + offset for c in codes[1:, r - 1]] if r > 0 else [pad] * 3
        rows.append([sem] + ac)
    if len(text_ids) > len(rows):
        raise ValueError(f"reply text has {len(text_ids)} tokens but only {len(rows)} audio rows")
    return text_ids + [pad] * (len(rows) - len(text_ids)), rows


class PackDataset:
    """Stage-manifest samples built from a pack (the `mdp.data.Dataset` interface
    the trainer uses: `len`, `sample(n)`, `step_indices`), plus per-sample
    placeholder orders (`Sample.items` are listed by kind, the sequence
    interleaves them)."""

    def __init__(
        self,
        manifest: str,
        pack,
        cfg,
        tokenizer,
        seq_len: int,
        audio_frames: Callable[[int], int],
        frames_ready: Callable[[int], int],
        codes: list[np.ndarray] | None = None,
    ) -> None:
        from omni.sequence import ChatFormat

        self.path, self.pack, self.cfg, self.seq_len = manifest, pack, cfg, seq_len
        self.records = read_stage_manifest(manifest, len(pack), pack.num_scenes, len(pack.answer_offset) - 1)
        self.fmt = ChatFormat(tokenizer, cfg.audio_pad_id)
        self.tok = tokenizer
        self.sp = tokenizer.special
        self.audio_frames, self.frames_ready = audio_frames, frames_ready
        self.codes = codes if codes is not None else answer_code_table(pack)
        self._units: dict[tuple, list] = {}
        self.too_long = 0
        self.stream_jitter = True  # random turn start time and buffered sparse frame (tests turn it off)
        self.augment = True  # a fresh microphone per sample; off: the clean clip (the device path's equality test)

    def __len__(self) -> int:
        return len(self.records)

    def step_indices(self, seed: int, step: int, global_batch: int) -> list[int]:
        from mdp.data import Dataset

        return Dataset.step_indices(self, seed, step, global_batch)  # type: ignore[arg-type]

    # --- media -----------------------------------------------------------------
    def _still(self, scene: int):
        from encoders.image_processing import preprocess_image

        key = ("still", scene)
        if key not in self._units:
            self._units[key] = [preprocess_image(self.pack.scene_frames(scene)[0], self.cfg.vision)]
        return self._units[key][0]

    def _pairs(self, scene: int, n: int) -> list:
        """n frame-pair units of the scene from t = 0 (stills: the frame twice;
        videos at 2 FPS: past the end the last frame holds)."""
        from encoders.image_processing import preprocess_video

        key = ("pairs", scene, n)
        if key not in self._units:
            frames = self.pack.scene_frames(scene)
            idx = [min(j, len(frames) - 1) for j in range(2 * n)]
            self._units[key] = preprocess_video([frames[j] for j in idx], self.cfg.vision)
            if len(self._units) > 4096:  # bounded memory over long runs
                self._units.pop(next(iter(self._units)))
        return self._units[key]

    # --- one sample ----------------------------------------------------------------
    def sample(self, n: int) -> Sample:
        """Sample n; one longer than seq_len + 1 (a rare slow, long question) is
        replaced by the next line's, and counted in `self.too_long`."""
        for k in range(16):
            line = (n + k) % len(self.records)
            try:
                return self._build(line)
            except _TooLong as e:
                if self.records[line]["layout"] == "tool":  # every tool conversation is about as long: none would fit
                    raise ManifestError(f"{self.path}:{line + 1}: a tool conversation needs {e.length} positions, "
                                        f"over seq_len + 1 = {self.seq_len + 1}: raise the stage's sequence length "
                                        "(curriculum.stage_seq_len)") from None
                self.too_long += 1
        raise ManifestError(f"{self.path}: 16 samples in a row from line {n + 1} exceed seq_len + 1 = {self.seq_len + 1}")

    def _build(self, n: int) -> Sample:
        rec = self.records[n]
        if "sentence" in rec:
            raise ManifestError(f"{self.path}:{n + 1}: a random sentence of the voice bank needs the device path "
                                "(curriculum.train_path=device); the loader path hears the pack's clips only")
        rng = np.random.default_rng(rec["seed"])
        fmt, pack = self.fmt, self.pack
        i, layout, scene = rec["i"], rec["layout"], rec["scene"]
        z = lambda k: torch.empty(k, 0)  # placeholder features: only their count matters here
        runs = [fmt.header("user")]
        if layout == "tool" or rec.get("system"):  # the world's tool declared before the user's turn
            from omni.synth.tool_world import system_prompt

            runs.insert(0, fmt.system_turn(system_prompt()))
        units: list = []  # visual units in sequence order
        pcm = None
        typed = bool(rec.get("typed"))  # a tool request typed, not spoken
        if layout in ("text", "say") or typed:
            q = "say " + pack.meta["answer_texts"][rec["answer"]] if layout == "say" else pack.question_text(i)
            runs += [fmt.text(q), fmt.newline()]
        elif layout in ("image", "caption"):
            u = self._still(scene)
            units.append(u)
            q = pack.question_text(i) if layout == "image" else CAPTION_PROMPT
            runs += [fmt.image_item(z(u.num_tokens)), fmt.text(q), fmt.newline()]
        elif layout == "video":  # typed beside the scene's frame pairs, one a 1 s chunk, no audio
            from omni.sequence_av import build_av_user_turn

            pairs = self._pairs(scene, -(-len(self.pack.scene_frames(scene)) // 2))
            units += list(pairs)
            video = [(k * self.cfg.chunk_seconds, z(u.num_tokens)) for k, u in enumerate(pairs)]
            runs.append(build_av_user_turn(fmt, None, 0, video, frames_ready=self.frames_ready,
                                           sample_rate=self.cfg.audio.sample_rate, chunk_seconds=self.cfg.chunk_seconds,
                                           text=pack.question_text(i), header=False))
        else:  # audio / stream / transcribe: the chunked user turn of omni.sequence_av
            from omni.sequence_av import build_av_user_turn

            pcm = pack.question_audio(i, rng) if self.augment else pack.clean_question(i)
            ns = len(pcm)
            video, sparse, t0 = [], [], 0.0
            if layout == "stream" or (layout == "tool" and scene >= 0):  # the camera on while the user speaks
                t0 = float(rng.integers(0, 4)) + (float(rng.integers(0, 10)) / 10 if rng.random() < 0.3 else 0.0)
                t0 = t0 if self.stream_jitter else 0.0
                chunks = math.ceil(ns / (self.cfg.audio.sample_rate * self.cfg.chunk_seconds))
                pairs = self._pairs(scene, chunks)
                video = [(t0 + k * self.cfg.chunk_seconds, z(u.num_tokens)) for k, u in enumerate(pairs)]
                units += list(pairs)
                if t0 >= 2 and rng.random() < 0.5:  # a frame buffered before speech started
                    u = self._still(scene)
                    sparse = [(t0 - 2.0, z(u.num_tokens))]
                    units.insert(0, u)
            turn = build_av_user_turn(
                fmt, z(self.audio_frames(ns)), ns, video, sparse, frames_ready=self.frames_ready,
                sample_rate=self.cfg.audio.sample_rate, chunk_seconds=self.cfg.chunk_seconds, time_offset=t0, header=False,
                text=TRANSCRIBE_PROMPT if layout == "transcribe" else None,
            )
            runs.append(turn)
        from omni.sequence import Tokens

        row = _Row(self.cfg)
        row.unlabelled(Tokens.cat(runs + [fmt.generation_prompt(rec["voice"])], self.cfg.audio_pad_id))
        if layout == "tool":  # the call, then the tool's output as a user turn, then the answer
            from omni.synth.tool_world import ToolCase

            query = pack.meta["sample_queries"][i]
            if query.get("type") != "tool":
                raise ManifestError(f"{self.path}:{n + 1}: a tool line names pack sample {i}, which is not a tool request")
            case = ToolCase.of(pack.question_text(i), query)
            call_ids = self.tok.encode(case.call) + [self.sp.eos]
            row.reply(call_ids, silence_codes(pack, len(call_ids) - 1) if rec["voice"] else None, True)
            row.unlabelled(Tokens.cat([fmt.newline(), fmt.tool_turn(case.output), fmt.generation_prompt(rec["voice"])]))
        if layout == "caption":
            answer = scene_caption(pack.scene(scene))
        elif layout == "transcribe":
            answer = pack.question_text(i)
        else:
            answer = pack.meta["answer_texts"][rec["answer"]]
        text_ids = self.tok.encode(answer) + [self.sp.eos]
        row.reply(text_ids, self.codes[rec["answer"]] if rec["voice"] else None, layout in ANSWER_LAYOUTS)
        s = self._finish(n, row.ids, row.codec, row.cat, row.audio, row.first, units, pcm, row.marks)
        # the stream's draws, for comparing the device path on the same rows
        camera = layout in ("stream", "tool") and not typed
        s.stream = (t0, bool(sparse)) if camera else (0.0, False)  # type: ignore[attr-defined]
        return s

    def _finish(self, n, ids, codec, cat, audio, first, units, pcm, answer_mark) -> Sample:
        L = len(ids)
        if L > self.seq_len + 1:
            raise _TooLong(L)
        pad = self.seq_len + 1 - L
        p4 = [self.cfg.audio_pad_id] * 4
        ids_p = torch.tensor(ids + [self.sp.pad] * pad)
        cat_p = torch.tensor(cat + [CAT_NONE] * pad)
        # the user's audio-placeholder rows keep their ids; codec pad 3 everywhere but replies
        codec_p = torch.tensor(codec + [p4] * pad)
        aud_p = torch.tensor(audio + [[IGNORE] * 4] * pad)
        first_p = torch.tensor(first + [False] * pad)
        ans_p = torch.tensor(answer_mark + [False] * pad)
        items = [ModalityItem("image", {"patches": u.patches, "grid": tuple(u.grid)}, u.num_tokens,
                              float(len(u.patches)) + len(u.patches) ** 2 / 256.0) for u in units]
        if pcm is not None:
            items.append(ModalityItem("audio", {"pcm": torch.from_numpy(np.ascontiguousarray(pcm))},
                                      self.audio_frames(len(pcm)), len(pcm) / 160.0))
        s = Sample(
            ids=ids_p[:-1], codec=codec_p[:-1], text_labels=torch.where(cat_p[1:] > CAT_NONE, ids_p[1:], IGNORE),
            text_cat=cat_p[1:], audio_labels=aud_p[1:], first_audio=first_p[1:], items=items, answer=ans_p[1:],
        )
        s.order = placeholder_order(s.ids, items, self.sp.image_pad, self.sp.audio_pad)  # type: ignore[attr-defined]
        return s


class _Row:
    """A sample's positions as they are appended: ids, codec rows, label category, audio
    labels, first-audio flags and answer marks (`answer_weight`), one entry each."""

    def __init__(self, cfg) -> None:
        self.cfg = cfg
        self.ids: list[int] = []
        self.codec: list[list[int]] = []
        self.cat: list[int] = []
        self.audio: list[list[int]] = []
        self.first: list[bool] = []
        self.marks: list[bool] = []

    def unlabelled(self, run) -> None:
        """A run of the prompt (`Tokens`): inputs only, no loss."""
        n = len(run)
        self.ids += run.ids.tolist()
        self.codec += run.codec.tolist()
        self.cat += [CAT_NONE] * n
        self.audio += [[IGNORE] * 4 for _ in range(n)]
        self.first += [False] * n
        self.marks += [False] * n

    def reply(self, text_ids: list[int], codes: np.ndarray | None, is_answer: bool) -> None:
        """A reply's rows and labels: spoken (text aligned with `codes` [4, T], see `speech_rows`)
        or, with codes None, text only; its text is marked as an answer when `is_answer`."""
        cfg = self.cfg
        if codes is not None:
            tx, rows = speech_rows(text_ids, codes, cfg.audio_id_offset, cfg.audio_eos_id, cfg.audio_pad_id,
                                   cfg.text_audio_delay)
            self.ids += tx
            self.codec += rows
            self.cat += [CAT_AUDIO_TEXT] * len(rows)
            self.audio += rows
            # the first-audio label is the reply's first frame: after its delay's pad rows
            self.first += [k == cfg.text_audio_delay for k in range(len(rows))]
            self.marks += [is_answer] * len(text_ids) + [False] * (len(rows) - len(text_ids))
        else:
            self.ids += text_ids
            self.codec += [[cfg.audio_pad_id] * 4] * len(text_ids)
            self.cat += [CAT_TEXT] * len(text_ids)
            self.audio += [[IGNORE] * 4] * len(text_ids)
            self.first += [False] * len(text_ids)
            self.marks += [is_answer] * len(text_ids)


class _TooLong(Exception):
    def __init__(self, length: int) -> None:
        super().__init__(length)
        self.length = length


def placeholder_order(ids: torch.Tensor, items: list[ModalityItem], image_pad: int, audio_pad: int) -> list[int]:
    """Feature row (items concatenated in list order) of each placeholder position, in
    sequence order: image units fill `<|image_pad|>` runs in order, the one audio clip
    fills every `<|audio_pad|>` in order."""
    starts, row = [], 0
    for it in items:
        starts.append(row)
        row += it.num_tokens
    img = [k for k, it in enumerate(items) if it.kind == "image"]
    aud = [k for k, it in enumerate(items) if it.kind == "audio"]
    img_rows = [starts[k] + j for k in img for j in range(items[k].num_tokens)]
    aud_rows = [starts[k] + j for k in aud for j in range(items[k].num_tokens)]
    order, gi, ga = [], 0, 0
    for t in ids.tolist():
        if t == image_pad:
            order.append(img_rows[gi])
            gi += 1
        elif t == audio_pad:
            order.append(aud_rows[ga])
            ga += 1
    if gi != len(img_rows) or ga != len(aud_rows):
        raise ValueError(f"placeholders ({gi} image, {ga} audio) differ from the features "
                         f"({len(img_rows)} image, {len(aud_rows)} audio)")
    return order


def read_stage_manifest(path: str, num_samples: int, num_scenes: int, num_answers: int) -> list[dict]:
    out = []
    for n, r in iter_jsonl(path, "stage manifest"):
        for key, hi in (("i", num_samples), ("scene", num_scenes), ("answer", num_answers), ("seed", None)):
            v = r.get(key)
            if not isinstance(v, int) or (hi is not None and not (-1 <= v < hi)) or (key != "scene" and v < 0):
                raise ManifestError(f"{path}:{n}: field {key!r} must be an int in range, got {v!r}")
        if r.get("layout") not in LAYOUTS:
            raise ManifestError(f"{path}:{n}: field 'layout' must be one of {LAYOUTS}, got {r.get('layout')!r}")
        if r["layout"] in ("image", "stream", "caption", "video") and r["scene"] < 0:
            raise ManifestError(f"{path}:{n}: layout {r['layout']} needs a scene")
        if not isinstance(r.get("voice"), bool):
            raise ManifestError(f"{path}:{n}: field 'voice' must be true or false")
        if r["layout"] in ("caption", "transcribe") and r["voice"]:
            raise ManifestError(f"{path}:{n}: a {r['layout']} is a text reply (voice false): no speech exists for it")
        if "sentence" in r and (not isinstance(r["sentence"], int) or r["sentence"] < 0 or r["layout"] != "transcribe"):
            raise ManifestError(f"{path}:{n}: field 'sentence' must be an int >= 0 (a voice bank sentence) "
                                f"on a transcribe line, got {r['sentence']!r} on {r['layout']!r}")
        if "system" in r and (r["system"] is not True or r["layout"] not in DECLARABLE):
            raise ManifestError(f"{path}:{n}: field 'system' (the world's tool declared) must be true on a "
                                f"{'/'.join(DECLARABLE)} line, got {r['system']!r} on {r['layout']!r}")
        if "typed" in r and (r["typed"] is not True or r["layout"] != "tool"):
            raise ManifestError(f"{path}:{n}: field 'typed' (a tool request typed) must be true on a tool line, "
                                f"got {r['typed']!r} on {r['layout']!r}")
        out.append(r)
    if not out:
        raise ManifestError(f"stage manifest {path} has no samples")
    return out

"""Host-side plan of a training step of the device batch path: small integer tables.

For a step's manifest records this computes, with whole-array numpy (no loop over
samples), everything whose size the host must know: the random draws of each
row (microphone: speed, silences, gain, noise, SNR; stream: start time, buffered
frame), the length of every token segment of every row, the distinct vision units
(frame pairs) and the audio rows. `mdp.curriculum.build` turns the plan into
tensors on the device; the plan itself is a few hundred KB of ints per step.

A row is a fixed list of segment slots (most are empty for a given layout), in the
order `PackDataset._build` emits its runs:

    system turn (tool, or a line with the tool declared) | header | sparse timestamp, sparse still | still, newline |
    question text | K x [chunk timestamp, frame pair, audio open, audio pads a_k] |
    tail pads, audio close | transcribe prompt | newline | generation prompt |
    call text, call pads, newline + tool turn + generation prompt (tool) | reply text | reply pads

(a typed tool request fills the question text slot, as a text question, and no audio slot)

Each slot reads (id pool start, stride), (codec row start, stride), a label
category, an answer flag, and a feature source (a vision unit or an audio
row's frame offset), so expanding it to positions is a gather (`expand_segments`).

Length buckets: the rows of `window` consecutive steps (the records the loader path
would train in those steps) are sorted by length and cut into the steps' batches,
taken in a seeded random order. Each row is then trimmed to its batch's longest,
rounded up to `LENGTH_MULTIPLE` and then to one of a few fixed lengths
(`bucket_length`): a batch of a shape not seen before costs more than its padding
wherever a kernel or a compiled graph is prepared per shape (cuDNN attention plans,
torch.compile, CUDA graphs). `window = 1` keeps the loader path's batches.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mdp.data import CAT_AUDIO_ONLY, CAT_AUDIO_TEXT, CAT_NONE, CAT_TEXT
from mdp.curriculum.data import ANSWER_LAYOUTS
from mdp.curriculum.tables import LAYOUT_CODE, PackTables, record_arrays
from omni.synth.audio import GAIN_RANGE_DB, LEAD_RANGE_S, NOISE_PROBS, SNR_RANGE_DB, TRAIN_TAIL_RANGE_S
from omni.synth.pack import SPEED_RANGE

LENGTH_MULTIPLE = 16  # LLM rows are trimmed to a multiple of this (few distinct shapes)
LENGTHS_PER_OCTAVE = 4  # `bucket_length`: ..., 64, 80, 96, 112, 128, 160, 192, ... (< 25 % padding past 64)
AUDIO_BUCKET_FRAMES = 4  # audio buffers are a multiple of 4 encoder frames (the loader path's bucket)
# a slot's "answer" field is 1 where its labels are a question's answer (`answer_weight`)
FIELDS = ("len", "id_start", "id_stride", "row_start", "row_stride", "cat", "answer", "vkey", "aoff")
COL = {f: k for k, f in enumerate(FIELDS)}  # a segment field's column
AV = (LAYOUT_CODE["audio"], LAYOUT_CODE["stream"], LAYOUT_CODE["transcribe"], LAYOUT_CODE["tool"])


def encoder_frames(n: np.ndarray, a) -> np.ndarray:
    """`encoders.audio.num_encoder_frames` of sample counts n (array)."""
    t = np.where(n < a.window_samples, 0, (n - a.window_samples) // a.hop_samples + 1)
    return -(-t // a.splice_stride)


def frames_ready(n: np.ndarray, a) -> np.ndarray:
    """Encoder frames released after n samples (`MiniTrainer`'s frames_ready, closed form):
    frames j < total whose `samples_needed(j)` <= n."""
    j = ((n - a.window_samples) // a.hop_samples - a.splice_right) // a.splice_stride - a.lookahead_frames + 1
    return np.clip(j, 0, encoder_frames(n, a))


def draw(rng: np.random.Generator, n: int, num_clips: int, augment: bool, jitter: bool,
         variants: bool = False, swap: float = 0.0) -> dict[str, np.ndarray]:
    """Random conditions of n rows, as arrays. The laws are the loader path's
    (`omni.synth.audio.random_noise_params`, `Pack.question_audio`, the stream jitter
    of `PackDataset._build`); the numbers differ (one generator per window, not one
    per record). Without `augment` the clip is heard clean at its own speed; without
    `jitter` streams start at 0 s with no buffered frame. `variants` (a voice bank, with
    `augment`): each row hears a random rendering of its question text (`variant`),
    drawn last so that the other draws do not change with it. `swap` (with `augment`): the
    share of rows whose spoken reply is another answer's (`plan_rows`), drawn after them."""
    d: dict[str, np.ndarray] = {}
    if augment:
        d["speed"] = rng.uniform(*SPEED_RANGE, n)
        d["kind"] = rng.choice(len(NOISE_PROBS), p=NOISE_PROBS, size=n)
        d["snr_db"] = np.round(rng.uniform(*SNR_RANGE_DB, n), 1)
        d["lead"] = np.round(np.round(rng.uniform(*LEAD_RANGE_S, n), 2) * 16000).astype(np.int64)
        d["tail"] = np.round(np.round(rng.uniform(*TRAIN_TAIL_RANGE_S, n), 2) * 16000).astype(np.int64)
        d["gain_db"] = np.round(rng.uniform(*GAIN_RANGE_DB, n), 1)
    else:
        d["speed"], d["kind"] = np.ones(n), np.zeros(n, np.int64)
        d["snr_db"], d["gain_db"] = np.zeros(n), np.zeros(n)
        d["lead"], d["tail"] = np.zeros(n, np.int64), np.zeros(n, np.int64)
    d["babble"] = rng.integers(num_clips, size=(n, 3))
    d["babble_at"] = rng.integers(1 << 40, size=(n, 3))
    d["hum_hz"] = rng.choice([50.0, 60.0], size=n)
    d["hum_phase"] = rng.uniform(0, 2 * np.pi, (n, 4))
    if jitter:
        d["t0"] = rng.integers(0, 4, n) * 10 + np.where(rng.random(n) < 0.3, rng.integers(0, 10, n), 0)
        d["sparse"] = (d["t0"] >= 20) & (rng.random(n) < 0.5)
    else:
        d["t0"], d["sparse"] = np.zeros(n, np.int64), np.zeros(n, bool)
    if variants and augment:
        d["variant"] = rng.integers(1 << 40, size=n)
    if swap > 0 and augment:
        d["swap_to"] = np.where(rng.random(n) < swap, rng.integers(1 << 40, size=n), -1)
    return d


@dataclasses.dataclass
class Rows:
    """Per-row plan before the rows are grouped into a step (see `finalize`)."""

    index: np.ndarray  # [n] manifest record of each row
    seg: np.ndarray  # int64 [n, S, len(FIELDS)]
    length: np.ndarray  # [n] positions (the last one only a target)
    units: np.ndarray  # int64 [n, 2 + K, 2] (first, second) frame of each vision slot, -1 = none
    draws: dict  # `draw` arrays of the rows
    clip: np.ndarray  # [n] question clip
    n_speech: np.ndarray  # [n] samples of the (speed-changed) speech
    ns: np.ndarray  # [n] samples heard (0: no audio)
    is_av: np.ndarray  # [n] bool

    def take(self, sel: np.ndarray) -> "Rows":
        return Rows(self.index[sel], self.seg[sel], self.length[sel], self.units[sel],
                    {k: v[sel] for k, v in self.draws.items()}, self.clip[sel], self.n_speech[sel], self.ns[sel],
                    self.is_av[sel])


def _pad_slots(a: np.ndarray, s: int, axis: int = 1) -> np.ndarray:
    """Append empty slots (zeros; -1 for the feature keys) up to s."""
    if a.shape[axis] >= s:
        return a
    pad = [(0, 0)] * a.ndim
    pad[axis] = (0, s - a.shape[axis])
    out = np.pad(a, pad)
    if a.ndim == 3 and a.shape[2] == len(FIELDS):  # segment table: empty slots have no feature
        out[:, a.shape[1]:, COL["vkey"]] = -1
        out[:, a.shape[1]:, COL["aoff"]] = -1
    elif a.ndim == 3:  # unit frames
        out[:, a.shape[1]:] = -1
    return out


def concat_rows(parts: list[Rows]) -> Rows:
    s = max(p.seg.shape[1] for p in parts)
    u = max(p.units.shape[1] for p in parts)
    return Rows(np.concatenate([p.index for p in parts]), np.concatenate([_pad_slots(p.seg, s) for p in parts]),
                np.concatenate([p.length for p in parts]), np.concatenate([_pad_slots(p.units, u) for p in parts]),
                {k: np.concatenate([p.draws[k] for p in parts]) for k in parts[0].draws},
                np.concatenate([p.clip for p in parts]), np.concatenate([p.n_speech for p in parts]),
                np.concatenate([p.ns for p in parts]), np.concatenate([p.is_av for p in parts]))


def plan_rows(t: PackTables, rec: dict[str, np.ndarray], index: np.ndarray, d: dict[str, np.ndarray]) -> Rows:
    """Segment tables of the records `index` under draws `d` (arrays over rows)."""
    a, sr = t.cfg.audio, t.cfg.audio.sample_rate
    chunk = int(round(sr * t.cfg.chunk_seconds))
    n = len(index)
    lay, voice = rec["layout"][index], rec["voice"][index]
    scene, answer = rec["scene"][index], rec["answer"][index]
    clip = t.clips_of(t.sample_clip[rec["i"][index]], rec["sentence"][index], d.get("variant"))
    is_tool = lay == LAYOUT_CODE["tool"]
    typed = is_tool & rec["typed"][index]  # a tool request typed: a text question's slots, no camera
    is_av = np.isin(lay, AV) & ~typed
    # a spoken tool request: the camera on if it has a scene
    is_stream = (lay == LAYOUT_CODE["stream"]) | (is_tool & ~typed & (scene >= 0))
    case = t.tool_case[rec["i"][index]]  # 2 * on + ok of a tool request, -1 for other samples
    if np.any(is_tool & (case < 0)):
        raise ValueError("a tool line names a pack sample that is not a tool request")
    case = np.where(is_tool, case, 0)
    on = case // 2
    is_img = np.isin(lay, (LAYOUT_CODE["image"], LAYOUT_CODE["caption"]))
    # a question typed beside a video: its frame pairs in 1 s chunks as the stream shows them, no audio
    is_video = lay == LAYOUT_CODE["video"]
    f0 = np.where(scene >= 0, t.frame_offset[np.maximum(scene, 0)], 0)
    nf = np.where(scene >= 0, t.num_frames[np.maximum(scene, 0)], 1)
    if np.any(voice & ~t.voice_ok[answer]):
        raise ValueError("a spoken reply's text is longer than its audio rows (speech_rows)")
    # --- audio: samples heard, frames, frames released per 1 s chunk
    clip_len = t.clip_len[clip]
    n_speech = np.where(d["speed"] == 1.0, clip_len, np.maximum(1, np.round(clip_len / d["speed"]))).astype(np.int64)
    ns = np.where(is_av, n_speech + d["lead"] + d["tail"], 0)
    n_audio = encoder_frames(ns, a)
    n_chunks = np.where(is_video, -(-nf // 2), -(-ns // chunk))
    k_max = int(n_chunks.max()) if n else 0
    k = np.arange(k_max)
    live = k[None] < n_chunks[:, None]  # [n, K]
    ready = np.minimum(frames_ready(np.minimum((k[None] + 1) * chunk, ns[:, None]), a), n_audio[:, None])
    prev = np.concatenate([np.zeros((n, 1), np.int64), ready[:, :-1]], axis=1)
    last = ready[:, -1] if k_max else np.zeros(n, np.int64)
    t0 = np.where(is_stream, d["t0"], 0)
    sparse = is_stream & d["sparse"]
    ut = t.unit_tokens
    # --- vision units: sparse still, still, one frame pair per chunk
    units = np.full((n, 2 + k_max, 2), -1, np.int64)
    units[sparse, 0] = f0[sparse, None]
    units[is_img, 1] = f0[is_img, None]
    vid = (is_stream | is_video)[:, None] & live
    for j in (0, 1):  # the pair's first and second frame (past a scene's end its last frame holds)
        fj = f0[:, None] + np.minimum(2 * k[None] + j, nf[:, None] - 1)
        units[:, 2:, j] = np.where(vid, fj, -1)
    # --- the slots
    S = 7 + 4 * k_max + 10
    seg = np.zeros((n, S, len(FIELDS)), np.int64)
    seg[..., COL["vkey"]] = -1
    seg[..., COL["aoff"]] = -1

    def put(slot, length, start, stride=1, mask=None, **kw):
        m = np.ones(n, bool) if mask is None else mask
        seg[:, slot, COL["len"]] = np.where(m, length, 0)
        seg[:, slot, COL["id_start"]] = start
        seg[:, slot, COL["id_stride"]] = stride
        for key, v in kw.items():
            seg[:, slot, COL[key]] = v

    put(0, t.system_tool[1], t.system_tool[0], mask=is_tool | rec["system"][index])  # the tool declared
    put(1, t.user[1], t.user[0])
    ts_sparse = np.maximum(t0 - 20, 0)
    put(2, t.ts_len[ts_sparse], t.ts_off[ts_sparse], mask=sparse)
    put(3, ut, t.IMAGE_PAD, 0, mask=sparse, vkey=np.where(sparse, 0, -1))
    put(4, ut, t.IMAGE_PAD, 0, mask=is_img, vkey=np.where(is_img, 1, -1))
    put(5, t.newline[1], t.newline[0], mask=is_img)
    asked = np.isin(lay, (LAYOUT_CODE["text"], LAYOUT_CODE["image"])) | typed  # the question as text
    q_len = np.select([asked, lay == LAYOUT_CODE["say"], lay == LAYOUT_CODE["caption"]],
                      [t.q_len[clip], t.say_len[answer], t.caption_prompt[1]], 0)
    q_off = np.select([asked, lay == LAYOUT_CODE["say"]], [t.q_off[clip], t.say_off[answer]], t.caption_prompt[0])
    put(6, q_len, q_off)
    for kk in range(k_max):
        base = 7 + 4 * kk
        ts = np.minimum(t0 + 10 * kk, len(t.ts_len) - 1)
        put(base, t.ts_len[ts], t.ts_off[ts], mask=live[:, kk])
        put(base + 1, ut, t.IMAGE_PAD, 0, mask=vid[:, kk], vkey=np.where(vid[:, kk], 2 + kk, -1))
        put(base + 2, t.audio_open[1], t.audio_open[0], mask=live[:, kk] & (kk == 0) & is_av)
        put(base + 3, ready[:, kk] - prev[:, kk], t.AUDIO_PAD, 0, mask=live[:, kk] & is_av,
            aoff=np.where(is_av, prev[:, kk], -1))
    tail = 7 + 4 * k_max
    put(tail, n_audio - last, t.AUDIO_PAD, 0, mask=is_av, aoff=np.where(is_av, last, -1))
    put(tail + 1, t.audio_close[1], t.audio_close[0], mask=is_av)
    trx = lay == LAYOUT_CODE["transcribe"]
    # after the turn's chunks: the transcription prompt, or a typed question beside a video
    put(tail + 2, np.where(trx, t.transcribe_prompt[1], t.q_len[clip]),
        np.where(trx, t.transcribe_prompt[0], t.q_off[clip]), mask=trx | is_video)
    put(tail + 3, t.newline[1], t.newline[0])
    put(tail + 4, np.where(voice, t.prompt_voice[1], t.prompt_text[1]), np.where(voice, t.prompt_voice[0], t.prompt_text[0]))
    # a tool conversation's call (spoken as silence) and the run up to the answer's reply
    cat = np.where(voice, CAT_AUDIO_TEXT, CAT_TEXT)
    c_len, c_rows = t.call_len[on], t.call_rows_len[on]
    put(tail + 5, c_len, t.call_off[on], mask=is_tool, cat=cat, answer=1,
        row_start=np.where(voice, t.call_rows_off[on], 0), row_stride=voice.astype(np.int64))
    put(tail + 6, c_rows - c_len, t.REPLY_PAD, 0, mask=is_tool & voice, cat=CAT_AUDIO_TEXT,
        row_start=t.call_rows_off[on] + c_len, row_stride=1)
    put(tail + 7, t.mid_len[voice.astype(np.int64), case], t.mid_off[voice.astype(np.int64), case], mask=is_tool)
    cap = lay == LAYOUT_CODE["caption"]
    r_len = np.select([cap, trx], [t.cap_len[np.maximum(scene, 0)], t.trx_len[clip]], t.ans_len[answer])
    r_off = np.select([cap, trx], [t.cap_off[np.maximum(scene, 0)], t.trx_off[clip]], t.ans_off[answer])
    # "answer": the reply text answers a question (a spoken reply's first frame is found from its rows,
    # `expand_segments`)
    is_answer = np.isin(lay, [LAYOUT_CODE[x] for x in ANSWER_LAYOUTS])
    # a swapped reply (`draw`'s swap_to): another answer written and spoken, its speech trained and
    # its text not (CAT_AUDIO_ONLY): the question does not tell that answer, only the reply's text
    # does, so the voice learns to say what the text says rather than what it believes
    swapped = voice & (is_answer | (lay == LAYOUT_CODE["say"])) & (d.get("swap_to", -1) >= 0)
    if np.any(swapped):
        spoken = t.swap_answer(answer, d["swap_to"])
        swapped &= spoken != answer
        answer = np.where(swapped, spoken, answer)
        r_len = np.where(swapped, t.ans_len[answer], r_len)
        r_off = np.where(swapped, t.ans_off[answer], r_off)
    reply_cat = np.where(swapped, CAT_AUDIO_ONLY, cat)
    put(tail + 8, r_len, r_off, cat=reply_cat, answer=(is_answer & ~swapped).astype(np.int64),
        row_start=np.where(voice, t.rows_off[answer], 0), row_stride=voice.astype(np.int64))
    put(tail + 9, t.rows_len[answer] - r_len, t.REPLY_PAD, 0, mask=voice,
        cat=np.where(swapped, CAT_AUDIO_ONLY, CAT_AUDIO_TEXT), row_start=t.rows_off[answer] + r_len, row_stride=1)
    assert CAT_NONE == 0  # the zeros of empty slots and prompts are "no label"
    length = seg[..., COL["len"]].sum(1)
    return Rows(np.asarray(index), seg, length, units, d, clip, n_speech, ns, is_av)


@dataclasses.dataclass
class StepPlan:
    """One step's rows, ready for `mdp.curriculum.build`."""

    rows: Rows
    T: int  # LLM input positions per row
    seg: np.ndarray  # int64 [B, S, 8]: FIELDS up to "answer", then the feature row of the slot's first position
    unit_frames: np.ndarray  # int64 [U, 2] frames of the distinct vision units
    audio_rows: np.ndarray  # [Ba] batch rows that carry audio
    W: int  # audio buffer width (samples)
    F: int  # encoder frames per audio row (the feature table's stride)
    step: int = -1

    @property
    def tokens(self) -> int:
        return int(self.rows.length.sum())

    @property
    def audio_labels(self) -> int:
        """Input positions of the step with audio labels (those whose next position is a
        spoken reply's row, as `expand_segments` labels them): the audio head's rows, known
        on the host so the device can gather them without reading a count back."""
        length = self.seg[..., COL["len"]]
        end = np.cumsum(length, 1)
        lo, hi = np.maximum(end - length, 1), np.minimum(end, self.T + 1)  # next positions 1..T
        spoken = np.isin(self.seg[..., COL["cat"]], (CAT_AUDIO_TEXT, CAT_AUDIO_ONLY))
        return int((np.clip(hi - lo, 0, None) * spoken).sum())


def bucket_length(n: int, seq_len: int, per_octave: int = LENGTHS_PER_OCTAVE) -> int:
    """Input positions of a batch whose longest row needs n: n rounded up to a
    multiple of `LENGTH_MULTIPLE`, then (per_octave > 0) to the next of `per_octave`
    evenly spaced lengths per doubling (also multiples of it), at most seq_len. A
    stage then has ~per_octave * log2(seq_len / 16) shapes instead of seq_len / 16."""
    t = -(-n // LENGTH_MULTIPLE) * LENGTH_MULTIPLE
    if per_octave > 0 and t > LENGTH_MULTIPLE:
        base = 1 << (int(t - 1).bit_length() - 1)  # the octave [base, 2 * base) holding t - 1
        step = -(-base // per_octave // LENGTH_MULTIPLE) * LENGTH_MULTIPLE
        t = -(-(t - base) // step) * step + base
    return int(min(seq_len, t))


def finalize(t: PackTables, rows: Rows, seq_len: int, per_octave: int = LENGTHS_PER_OCTAVE) -> StepPlan:
    """Resolve a step's feature sources: distinct units (a still repeated over a
    stream's chunks or across rows is encoded once), audio rows, buffer sizes."""
    a = t.cfg.audio
    seg = rows.seg.copy()
    u = rows.units  # [B, V, 2]
    present = u[..., 0] >= 0
    key = u[..., 0] * len(t.pack.frames_all) + u[..., 1]
    uniq, inv = np.unique(key[present], return_inverse=True)
    unit_id = np.full(key.shape, -1, np.int64)
    unit_id[present] = inv
    unit_frames = np.stack([uniq // len(t.pack.frames_all), uniq % len(t.pack.frames_all)], 1) if len(uniq) else \
        np.zeros((0, 2), np.int64)
    audio_rows = np.flatnonzero(rows.is_av)
    arow = np.cumsum(rows.is_av) - 1
    bucket = a.samples_per_frame * AUDIO_BUCKET_FRAMES
    W = int(-(-rows.ns.max() // bucket) * bucket) if len(audio_rows) else 0
    F = int(encoder_frames(np.array([W]), a)[0]) if W else 0
    ut = t.unit_tokens
    vkey, aoff = seg[..., COL["vkey"]], seg[..., COL["aoff"]]
    vis = np.take_along_axis(unit_id, np.maximum(vkey, 0), axis=1)
    feat = np.where(vkey >= 0, 1 + vis * ut, 0)
    feat = np.where(aoff >= 0, 1 + len(uniq) * ut + arow[:, None] * F + aoff, feat)
    out = np.concatenate([seg[..., : COL["answer"] + 1], feat[..., None]], axis=-1)
    T = bucket_length(int(rows.length.max()) - 1, seq_len, per_octave)
    return StepPlan(rows, T, out, unit_frames, audio_rows, W, F)


class StepPlanner:
    """Step s -> its `StepPlan`, a pure function of (seed, s): resumable.

    The records of the steps of one window are those the loader path trains in
    those steps (`Dataset.step_indices`); a row longer than seq_len + 1 is replaced
    by the next record (as `PackDataset.sample` does). `per_octave`: `bucket_length`'s."""

    def __init__(self, tables: PackTables, records: list[dict], seed: int, global_batch: int, seq_len: int,
                 window: int = 8, augment: bool = True, jitter: bool = True,
                 per_octave: int = LENGTHS_PER_OCTAVE, swap: float = 0.0) -> None:
        self.t, self.rec = tables, record_arrays(records)
        self.n = len(records)
        self.seed, self.gb, self.seq_len = seed, global_batch, seq_len
        self.window, self.augment, self.jitter = max(1, window), augment, jitter
        self.per_octave, self.swap = per_octave, swap
        self.too_long = 0
        self._win: tuple[int, Rows] | None = None

    def step_indices(self, step: int) -> list[int]:
        from mdp.data import Dataset

        return Dataset.step_indices(self, self.seed, step, self.gb)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return self.n

    def rows(self, index: np.ndarray, rng: np.random.Generator, draws: dict | None = None) -> Rows:
        """Rows of the records `index`, too-long ones replaced by later records."""
        d = draws if draws is not None else draw(rng, len(index), len(self.t.clip_len), self.augment, self.jitter,
                                                 self.t.has_bank, self.swap)
        r = plan_rows(self.t, self.rec, np.asarray(index, np.int64), d)
        for k in range(1, 17):
            bad = np.flatnonzero(r.length > self.seq_len + 1)
            if not len(bad):
                return r
            tool = bad[self.rec["layout"][r.index[bad]] == LAYOUT_CODE["tool"]]
            if len(tool):  # every tool conversation is about as long: replacing them would train none
                raise ValueError(f"a tool conversation needs {int(r.length[tool[0]])} positions, over seq_len + 1 = "
                                 f"{self.seq_len + 1}: raise the stage's sequence length (curriculum.stage_seq_len)")
            self.too_long += len(bad)
            fix = plan_rows(self.t, self.rec, (r.index[bad] + 1) % self.n, {key: v[bad] for key, v in d.items()})
            merged = concat_rows([r, fix])
            keep = np.arange(len(r.index))
            keep[bad] = len(r.index) + np.arange(len(bad))
            r = merged.take(keep)
            d = r.draws
        raise ValueError(f"16 records in a row from {r.index[bad[0]]} exceed seq_len + 1 = {self.seq_len + 1}")

    def plan(self, step: int) -> StepPlan:
        w = step // self.window
        if self._win is None or self._win[0] != w:
            first = w * self.window
            index = np.concatenate([self.step_indices(s) for s in range(first, first + self.window)])
            rng = np.random.default_rng([self.seed, 7, w])
            rows = self.rows(index, rng)
            if self.window > 1:  # length buckets, taken in a random order
                order = np.argsort(rows.length, kind="stable").reshape(self.window, self.gb)
                rows = rows.take(order[rng.permutation(self.window)].reshape(-1))
            self._win = (w, rows)
        k = step % self.window
        plan = finalize(self.t, self._win[1].take(np.arange(k * self.gb, (k + 1) * self.gb)), self.seq_len,
                        self.per_octave)
        plan.step = step
        return plan

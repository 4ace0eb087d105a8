"""Reading a training pack: one .npz that carries a split to a GPU machine (numpy + stdlib only).

GPU machines have no espeak-ng, sox or av, and at most 64 MB travels per run,
code included, so the pack holds the split compactly and the microphone
conditions are re-created on the spot:

    frames              uint8 [F, S, S, 3]  every scene rendered at S px (default 112),
                        videos sampled at `fps` (default 2 frames/s, the model's rate)
    scene_frame_offset  int64 [num_scenes + 1]  frames of scene k: offset[k]:offset[k+1]
    clip_audio          uint8 lzma blob of 8-bit mu-law clean question clips (16 kHz)
    clip_offset         int64 [num_clips + 1]  sample offsets into the decompressed stream
    answer_audio        uint8 lzma blob, the assistant's spoken answers (mu-law, 16 kHz)
    answer_offset       int64 [num_answers + 1]
    answer_codes        int16 [sum T, 4] codec tokens of the answers (no +32 offset;
                        empty when no codec was run), answer_code_offset [num_answers + 1];
                        meta["silence_frame"]: the same codec's tokens of a silent frame
    sample_scene        int32 [N]  scene index, -1 = no camera image (speech-only turn)
    sample_clip         int32 [N]  question clip; sample_answer int32 [N]; sample_family int8 [N]
    sample_noise        float64 [N, 4]  (snr_db, lead_s, tail_s, gain_db) of the files on disk
    sample_noise_kind   int8 [N] (index into NOISE_KINDS); sample_seed int64 [N]
    meta                uint8 JSON: texts, ids, options, voices, scene records, settings

    pack = Pack("runs/data/train.pack.npz")
    x = pack.question_audio(i, rng)        # float32 16 kHz, freshly augmented (rng) or
    x = pack.question_audio(i)             # the stored conditions (same as the WAV on disk)
    frames = pack.frames(i)                # uint8 [T, S, S, 3] or None
    pack.question_text(i), pack.answer_text(i), pack.family(i), pack.answer_codes(i)
    a = pack.answer_on_scene(i, k)         # re-pair: sample i's question asked about scene k
"""

from __future__ import annotations

import json
import lzma
from pathlib import Path

import numpy as np

from .audio import NOISE_KINDS, TRAIN_TAIL_RANGE_S, augment, change_speed, mulaw_decode, random_noise_params
from .questions import VISUAL_FAMILIES, answer_query
from .world import Scene, rng_for

PACK_VERSION = 1
REQUIRED = (
    "frames",
    "scene_frame_offset",
    "clip_audio",
    "clip_offset",
    "answer_audio",
    "answer_offset",
    "answer_codes",
    "answer_code_offset",
    "sample_scene",
    "sample_clip",
    "sample_answer",
    "sample_family",
    "sample_noise",
    "sample_noise_kind",
    "sample_seed",
    "meta",
)
SPEED_RANGE = (0.9, 1.1)  # GPU-side tempo/pitch perturbation


class Pack:
    """A training pack in memory (a few tens of MB)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"pack {self.path} does not exist (write it with `omni data pack`)")
        try:
            with np.load(self.path, allow_pickle=False) as z:
                missing = [k for k in REQUIRED if k not in z.files]
                if missing:
                    raise ValueError(f"pack {self.path} lacks arrays {missing}")
                arrays = {k: z[k] for k in REQUIRED}
        except (OSError, ValueError) as exc:
            raise ValueError(f"pack {self.path} is not readable: {exc}") from None
        self.meta: dict = json.loads(arrays.pop("meta").tobytes().decode())
        if self.meta.get("version") != PACK_VERSION:
            raise ValueError(f"pack {self.path}: version {self.meta.get('version')}, this reader wants {PACK_VERSION}")
        self.frames_all = arrays["frames"]
        self.scene_frame_offset = arrays["scene_frame_offset"]
        self.clip_mulaw = np.frombuffer(lzma.decompress(arrays["clip_audio"].tobytes()), np.uint8)
        self.clip_offset = arrays["clip_offset"]
        self.answer_mulaw = np.frombuffer(lzma.decompress(arrays["answer_audio"].tobytes()), np.uint8)
        self.answer_offset = arrays["answer_offset"]
        self.answer_codes_all = arrays["answer_codes"]
        self.answer_code_offset = arrays["answer_code_offset"]
        self.sample_scene = arrays["sample_scene"]
        self.sample_clip = arrays["sample_clip"]
        self.sample_answer = arrays["sample_answer"]
        self.sample_family = arrays["sample_family"]
        self.sample_noise = arrays["sample_noise"]
        self.sample_noise_kind = arrays["sample_noise_kind"]
        self.sample_seed = arrays["sample_seed"]
        self.families: list[str] = self.meta["families"]
        self.sample_rate: int = self.meta["sample_rate"]
        self.fps: float = self.meta["fps"]
        self._scenes: list[Scene] | None = None
        self._answer_index: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.sample_clip)

    # --- texts -------------------------------------------------------------
    def sample_id(self, i: int) -> str:
        return self.meta["sample_ids"][i]

    def family(self, i: int) -> str:
        return self.families[int(self.sample_family[i])]

    def samples_of(self, family: str) -> list[int]:
        """The samples of a question family, in order (none where the pack has no such family)."""
        if family not in self.families:
            return []
        return np.flatnonzero(self.sample_family == self.families.index(family)).tolist()

    def question_text(self, i: int) -> str:
        return self.meta["clip_texts"][int(self.sample_clip[i])]

    def answer_text(self, i: int) -> str:
        return self.meta["answer_texts"][int(self.sample_answer[i])]

    def options(self, i: int) -> list[str]:
        return self.meta["sample_options"][i]

    def indices(self, family: str | None = None) -> np.ndarray:
        if family is None:
            return np.arange(len(self))
        if family not in self.families:
            raise KeyError(f"unknown family {family!r}; this pack has {self.families}")
        return np.flatnonzero(self.sample_family == self.families.index(family))

    # --- media -------------------------------------------------------------
    def scene_frames(self, k: int) -> np.ndarray:
        return self.frames_all[self.scene_frame_offset[k] : self.scene_frame_offset[k + 1]]

    @property
    def num_scenes(self) -> int:
        return len(self.scene_frame_offset) - 1

    def scene(self, k: int) -> Scene:
        """The record of scene k (objects, slots, motion)."""
        self._load_scenes()
        return self._scenes[k]  # type: ignore[index]

    def _load_scenes(self) -> None:
        if self._scenes is None:
            self._scenes = [Scene.from_dict(d) for d in self.meta["scenes"]]
            self._answer_index = {a: n for n, a in enumerate(self.meta["answer_texts"])}

    def answer_on_scene(self, i: int, k: int) -> int:
        """Answer index of sample i's visual question asked about scene k, or -1.

        -1 when the question is not visual, when scene k does not determine a
        unique answer, or when that answer has no audio in this pack. Pairing
        spoken questions with other scenes multiplies the training samples
        without any new audio.
        """
        if self.family(i) not in VISUAL_FAMILIES:
            return -1
        self._load_scenes()
        answer = answer_query(self._scenes[k], self.meta["sample_queries"][i])
        return self._answer_index.get(answer, -1) if answer is not None else -1

    def frames(self, i: int) -> np.ndarray | None:
        """uint8 [T, S, S, 3] the camera shows for sample i, or None.

        Videos: T frames at `fps`. Stills: T = 1 (a camera on a still scene shows
        that frame for as long as the question lasts: repeat it per chunk).
        """
        k = int(self.sample_scene[i])
        if k < 0:
            return None
        return self.frames_all[self.scene_frame_offset[k] : self.scene_frame_offset[k + 1]]

    def is_video(self, i: int) -> bool:
        k = int(self.sample_scene[i])
        return k >= 0 and self.meta["scene_kinds"][k] == "video"

    def clean_question(self, i: int) -> np.ndarray:
        c = int(self.sample_clip[i])
        return mulaw_decode(self.clip_mulaw[self.clip_offset[c] : self.clip_offset[c + 1]])

    def question_audio(self, i: int, rng: np.random.Generator | None = None,
                       clean: np.ndarray | None = None) -> np.ndarray:
        """float32 16 kHz question audio with noise.

        rng None: the stored conditions of sample i (the WAV on disk, up to mu-law
        rounding). With rng: fresh conditions and a 0.9-1.1x speed change, so every
        epoch hears a different microphone. `clean` (float32): another recording of the
        question (e.g. in another voice) heard through the same conditions.
        """
        clean = self.clean_question(i) if clean is None else clean
        if rng is None:
            mix = rng_for(int(self.sample_seed[i]), "mix")
            snr, lead, tail, gain = (float(v) for v in self.sample_noise[i])
            kind = NOISE_KINDS[int(self.sample_noise_kind[i])]
            babble = [self._clip(self.meta["babble_order"][int(j)]) for j in mix.integers(len(self.meta["babble_order"]), size=3)]
            return augment(clean, mix, kind, snr, lead, tail, gain, babble)
        p = random_noise_params(rng, TRAIN_TAIL_RANGE_S)
        clean = change_speed(clean, float(rng.uniform(*SPEED_RANGE)))
        babble = [self._clip(int(j)) for j in rng.integers(len(self.clip_offset) - 1, size=3)]
        return augment(clean, rng, p["kind"], p["snr_db"], p["lead_s"], p["tail_s"], p["gain_db"], babble)

    def _clip(self, c: int) -> np.ndarray:
        return mulaw_decode(self.clip_mulaw[self.clip_offset[c] : self.clip_offset[c + 1]])

    def answer_audio(self, i: int) -> np.ndarray:
        """The spoken answer of sample i."""
        return self.answer_wav(int(self.sample_answer[i]))

    def answer_wav(self, a: int) -> np.ndarray:
        """The recording of answer a (an index of meta["answer_texts"])."""
        return mulaw_decode(self.answer_mulaw[self.answer_offset[a] : self.answer_offset[a + 1]])

    def answer_codes(self, i: int) -> np.ndarray | None:
        """int16 [4, T] codec tokens of the spoken answer (values without offset), or None."""
        if len(self.answer_codes_all) == 0:
            return None
        a = int(self.sample_answer[i])
        return self.answer_codes_all[self.answer_code_offset[a] : self.answer_code_offset[a + 1]].T

    def sample(self, i: int, rng: np.random.Generator | None = None) -> dict:
        """Everything of sample i in one dict (audio float32, frames uint8)."""
        return {
            "id": self.sample_id(i),
            "family": self.family(i),
            "question_text": self.question_text(i),
            "question_audio": self.question_audio(i, rng),
            "frames": self.frames(i),
            "is_video": self.is_video(i),
            "fps": self.fps,
            "answer_text": self.answer_text(i),
            "answer_audio": self.answer_audio(i),
            "answer_codes": self.answer_codes(i),
        }

    def describe(self) -> str:
        m = self.meta
        counts = {f: int((self.sample_family == k).sum()) for k, f in enumerate(self.families)}
        return (
            f"{self.path.name}: {len(self)} samples {counts}, {len(self.scene_frame_offset) - 1} scenes "
            f"({len(self.frames_all)} frames at {m['frame_size']} px, {self.fps} fps), "
            f"{len(self.clip_offset) - 1} question clips ({len(self.clip_mulaw) / self.sample_rate:.0f} s), "
            f"{len(self.answer_offset) - 1} answers, codec tokens: {'yes' if len(self.answer_codes_all) else 'no'}"
        )

"""A voice bank: many more spoken renderings of a pack's questions, for training only.

A pack stores each question text in two or three renderings (`omni data pack`), so
a model trained on it hears the same ~1,300 recordings again and again and learns
the recordings, not the words: its held-out voices' transcripts stay poor. The bank
renders every question text of a pack `renderings` more times, each in a voice of its
own: an accent of the world, a timbre from `BANK_VARIANTS` (every espeak-ng human
variant but the held-out ones and the assistant's), a speed and a pitch, all drawn
from a seeded generator per (text, k). Training (`voice_bank` in the recipe, device
path) then hears a random rendering of the question text at every draw.

The bank is large (about 20 KB per clip) and cheap to make (espeak-ng writes a clip
in ~15 ms), so it is written where training runs rather than carried: on the GPU
machine with a portable espeak-ng (`scripts/espeak_portable.sh`) and no sox.

File (.npz, uncompressed: it is read where it is written, and lzma would take
minutes): clip_mulaw (8-bit mu-law at 16 kHz, as in a pack), clip_offset [N + 1],
meta (JSON bytes: texts, clip_text [N] index into texts, voices; `rewordings`: how many texts
after the question texts are rewordings of them, `omni.synth.rewording`, and `reworded_of` the
question text each stands for; `sentences`: how many of the last texts are random sentences,
`omni.synth.sentences`).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .audio import mulaw_encode, to_float
from .build import parallel
from .rewording import rewordings as reword_texts
from .timbres import names as timbre_names
from .timbres import timbre_data
from .voices import (ACCENTS, BANK_VARIANTS, PITCH_RANGE, SPEED_RANGE, Voice, check_tools, synthesize,
                     variant_voice)
from .world import rng_for

BANK_VERSION = 1


def bank_voice(seed: int, text: str, k: int, timbres: int = 0) -> Voice:
    """The k-th bank rendering's voice of `text` (independent of every other draw); with
    `timbres` generated variants (`omni.synth.timbres`) they join the shipped ones."""
    rng = rng_for(seed, "voice-bank", text, k)
    variants = BANK_VARIANTS + (timbre_names(timbres) if timbres else ())
    return Voice(
        name=variant_voice(ACCENTS[int(rng.integers(len(ACCENTS)))], variants[int(rng.integers(len(variants)))]),
        speed=int(rng.integers(SPEED_RANGE[0] - 10, SPEED_RANGE[1] + 11)),
        pitch=int(rng.integers(PITCH_RANGE[0] - 10, PITCH_RANGE[1] + 11)),
        word_gap=int(rng.choice([0, 0, 0, 1, 2])),
    )


def espeak_version() -> str:
    """"eSpeak NG text-to-speech: 1.52.0" (without the data folder, a path of this machine)."""
    out = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True, check=False)
    return out.stdout.split("Data at:")[0].strip()


def build_voice_bank(texts: list[str], renderings: int, seed: int = 0, workers: int = 0,
                     progress: bool = True, timbres: int = 0, sentences: list[str] = (),
                     rewordings: int = 0, rewording_style: str = "neighbour") -> dict[str, np.ndarray]:
    """Render each of `texts` `renderings` times, in the shipped human variants and
    `timbres` generated ones (drawn from `seed`), up to `rewordings` rewordings of each
    (`omni.synth.rewording`, in `rewording_style`) once each, and each of `sentences` (e.g.
    `omni.synth.sentences.random_sentences`) once; returns the .npz arrays."""
    if renderings < 1:
        raise ValueError("renderings must be >= 1")
    texts = sorted(set(texts))
    if not texts:
        raise ValueError("no question texts to render")
    sentences = sorted(set(sentences) - set(texts))
    reworded = reword_texts(texts, rewordings, seed, rewording_style)
    sentences = [s for s in sentences if s not in {r for _, r in reworded}]
    check_tools(need_sox=False)
    jobs = [(t, k) for t in range(len(texts)) for k in range(renderings)]
    # a rewording's voice is drawn as a further rendering of its question (k >= renderings)
    jobs += [(len(texts) + j, renderings + j) for j in range(len(reworded))]
    jobs += [(len(texts) + len(reworded) + s, 0) for s in range(len(sentences))]
    reworded_of = [t for t, _ in reworded]
    texts = texts + [r for _, r in reworded] + sentences
    voices = [bank_voice(seed, texts[t], k, timbres) for t, k in jobs]
    with tempfile.TemporaryDirectory(prefix="omni-timbres-") as tmp:
        data_path = timbre_data(tmp, timbres, seed) if timbres else None

        def render(j: int) -> np.ndarray:
            return mulaw_encode(to_float(synthesize(texts[jobs[j][0]], voices[j], data_path)))

        clips = parallel(render, list(range(len(jobs))), workers or os.cpu_count() or 1, "voice bank", progress)
    offsets = np.zeros(len(clips) + 1, np.int64)
    offsets[1:] = np.cumsum([len(c) for c in clips])
    meta = {
        "version": BANK_VERSION,
        "seed": seed,
        "renderings": renderings,
        "texts": texts,
        "clip_text": [t for t, _ in jobs],
        "voices": [v.key() for v in voices],
        "timbres": timbres,  # generated variants gt0..gt{timbres-1}, drawn from `seed`
        "rewordings": len(reworded_of),  # the texts after the question texts: rewordings, one clip each
        "reworded_of": reworded_of,  # the question text (index into texts) each rewording stands for
        "rewording_style": rewording_style,  # omni.synth.rewording.STYLES
        "sentences": len(sentences),  # the last texts: random sentences, one clip each
        "espeak": espeak_version(),
    }
    return {
        "clip_mulaw": np.concatenate(clips),
        "clip_offset": offsets,
        "meta": np.frombuffer(json.dumps(meta).encode(), np.uint8),
    }


def write_voice_bank(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


@dataclass
class VoiceBank:
    """A read bank: mu-law clips, their offsets, each clip's words and the question text
    it stands for (its own words, except for a rewording)."""

    clip_mulaw: np.ndarray  # uint8 [samples]
    clip_offset: np.ndarray  # int64 [N + 1]
    clip_texts: list[str]  # [N] what each clip says
    meta: dict
    clip_questions: list[str] | None = None  # [N] the question each clip stands for (None: clip_texts)

    def __post_init__(self) -> None:
        if self.clip_questions is None:
            self.clip_questions = list(self.clip_texts)

    def __len__(self) -> int:
        return len(self.clip_offset) - 1

    @classmethod
    def load(cls, path: str | Path) -> "VoiceBank":
        try:
            with np.load(path) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: not a voice bank ({exc})") from None
        missing = {"clip_mulaw", "clip_offset", "meta"} - set(arrays)
        if missing:
            raise ValueError(f"{path}: not a voice bank (missing {sorted(missing)})")
        meta = json.loads(arrays["meta"].tobytes())
        if meta.get("version") != BANK_VERSION:
            raise ValueError(f"{path}: voice bank version {meta.get('version')}, expected {BANK_VERSION}")
        mulaw = arrays["clip_mulaw"]
        offsets = arrays["clip_offset"].astype(np.int64)
        if offsets[-1] != len(mulaw) or len(meta["clip_text"]) != len(offsets) - 1:
            raise ValueError(f"{path}: voice bank offsets do not match its audio")
        texts = meta["texts"]
        stands = list(range(len(texts)))
        first = len(texts) - int(meta.get("sentences", 0)) - int(meta.get("rewordings", 0))
        for j, t in enumerate(meta.get("reworded_of", [])):
            stands[first + j] = t
        return cls(mulaw, offsets, [texts[t] for t in meta["clip_text"]], meta,
                   [texts[stands[t]] for t in meta["clip_text"]])

    def alternatives(self, texts: list[str]) -> list[list[int]]:
        """For each of `texts`, the bank clips that say it (possibly none)."""
        by_text: dict[str, list[int]] = {}
        for c, t in enumerate(self.clip_texts):
            by_text.setdefault(t, []).append(c)
        return [by_text.get(t, []) for t in texts]

    @property
    def sentence_clips(self) -> int:
        """How many clips (the last ones) say random sentences rather than question texts."""
        return int(self.meta.get("sentences", 0))

    def without_sentences(self) -> "VoiceBank":
        """The same bank with its question clips (and rewordings) only."""
        n = len(self) - self.sentence_clips
        meta = {**self.meta, "sentences": 0}
        return VoiceBank(self.clip_mulaw[: self.clip_offset[n]], self.clip_offset[: n + 1], self.clip_texts[:n], meta,
                         self.clip_questions[:n])

    def without_rewordings(self) -> "VoiceBank":
        """The same bank without its rewordings (its question renderings and sentences)."""
        r = self.reworded_clips
        if not r:
            return self
        lo = len(self) - self.sentence_clips - r  # the rewordings are clips lo .. lo + r - 1
        o = self.clip_offset
        mulaw = np.concatenate([self.clip_mulaw[: o[lo]], self.clip_mulaw[o[lo + r]:]])
        offsets = np.concatenate([o[: lo + 1], o[lo + r + 1:] - (o[lo + r] - o[lo])])
        meta = {**self.meta, "rewordings": 0, "reworded_of": []}
        keep = lambda xs: xs[:lo] + xs[lo + r:]
        return VoiceBank(mulaw, offsets, keep(self.clip_texts), meta, keep(self.clip_questions))

    @property
    def reworded_clips(self) -> int:
        """How many clips say a rewording of a question rather than the question itself."""
        return int(self.meta.get("rewordings", 0))

"""Voices of the synthetic world and speech synthesis with espeak-ng + sox.

A user voice is an espeak-ng accent plus a voice variant (timbre). The held-out
split uses variants that never occur in train (in every accent), so held-out
speakers are unseen speakers; speed and pitch are drawn per clip on top.
The assistant speaks with one fixed voice that no user has.

espeak-ng writes 22.05 kHz WAV; sox converts it to 16 kHz mono 16-bit, the rate
of the audio encoder and the codec. espeak-ng is deterministic; sox dithers with
a random seed unless run with -R (repeatable), which it is here, so the same
text and voice always give the same samples. Where sox is missing (the GPU
machine, which synthesizes only the voice bank of `omni.synth.voice_bank`),
torchaudio's windowed-sinc resampler converts instead: the same words, samples
that differ from sox's at the quantization level.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import asdict, dataclass

import numpy as np

from .audio import SAMPLE_RATE, read_wav

ACCENTS: tuple[str, ...] = (
    "en-us",
    "en-gb",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-029",
    "en-us-nyc",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
)
TRAIN_VARIANTS: tuple[str, ...] = ("m1", "m2", "m3", "m4", "m5", "m6", "f1", "f2", "f3", "f5", "klatt2")
HELDOUT_VARIANTS: tuple[str, ...] = ("m7", "f4", "klatt4")
VOICES: dict[str, tuple[str, ...]] = {
    "train": tuple(f"{a}+{v}" for a in ACCENTS for v in TRAIN_VARIANTS),
    "heldout": tuple(f"{a}+{v}" for a in ACCENTS for v in HELDOUT_VARIANTS),
}
# More timbres for the voice bank (`omni.synth.voice_bank`): every espeak-ng variant
# of a human speaker that is neither held out nor the assistant's (klatt5), so the
# held-out variants stay unseen speakers.
BANK_VARIANTS: tuple[str, ...] = TRAIN_VARIANTS + (
    "m8", "klatt", "klatt3", "klatt6", "Alex", "Alicia", "Andrea", "Andy", "Annie", "Denis", "Diogo", "Gene",
    "Gene2", "Henrique", "Hugo", "Jacky", "Lee", "Marco", "Mario", "Michael", "Mike", "Nguyen", "Storm",
    "adam", "anika", "antonio", "aunty", "belinda", "benjamin", "boris", "caleb", "david", "ed", "edward",
    "edward2", "grandma", "grandpa", "gustave", "iven", "iven2", "iven3", "iven4", "john", "kaukovalta",
    "linda", "marcelo", "max", "michel", "miguel", "norbert", "pablo", "paul", "pedro", "quincy", "rob",
    "robert", "sandro", "shelby", "steph", "steph2", "steph3", "travis", "victor", "zac",
)


def variant_voice(accent: str, variant: str) -> str:
    """The espeak-ng voice name of `accent` spoken with timbre `variant`. espeak-ng finds a
    variant only after a voice found by file name: "en-gb" is found by its language
    attribute (its file is "en"), so "en-gb+m3" is plain "en-gb", every variant ignored;
    "en+m3" is the same accent with the timbre. (The packs' voices keep their names, so
    their "en-gb" speakers share one timbre; the voice bank uses this.)"""
    return f"{'en' if accent == 'en-gb' else accent}+{variant}"


SPEED_RANGE = (140, 195)  # words per minute
PITCH_RANGE = (30, 70)  # espeak-ng 0-99


@dataclass(frozen=True)
class Voice:
    """One espeak-ng rendering setup."""

    name: str  # "accent+variant"
    speed: int  # words per minute
    pitch: int  # 0-99
    word_gap: int = 0  # extra pause between words, 10 ms units

    def to_dict(self) -> dict:
        return asdict(self)

    def key(self) -> str:
        return f"{self.name}/s{self.speed}/p{self.pitch}/g{self.word_gap}"


# The assistant's voice: fixed, clear, not a user voice. Chosen for how well an
# independent recognizer (pocketsphinx + a grammar of all answers) hears it:
# `omni data check-voice` gives 119-121 of the 122 answers for this one (the
# dither varies); en-us+klatt3 at 150 wpm 120, en-us+klatt 118, en-us+m8 78.
ASSISTANT_VOICE = Voice(name="en-us+klatt5", speed=140, pitch=50)


def sample_voice(rng: np.random.Generator, split: str) -> Voice:
    if split not in VOICES:
        raise ValueError(f"unknown split {split!r}; known: {sorted(VOICES)}")
    return Voice(
        name=str(rng.choice(VOICES[split])),
        speed=int(rng.integers(SPEED_RANGE[0], SPEED_RANGE[1] + 1)),
        pitch=int(rng.integers(PITCH_RANGE[0], PITCH_RANGE[1] + 1)),
        word_gap=int(rng.choice([0, 0, 0, 1, 2])),
    )


def check_tools(need_sox: bool = True) -> None:
    """Clear error when the Debian speech tools are missing (e.g. on GPU machines).
    need_sox=False: sox may be missing (`synthesize` then resamples with torchaudio)."""
    missing = [t for t in ("espeak-ng", "sox")[: 2 if need_sox else 1] if shutil.which(t) is None]
    if missing:
        raise RuntimeError(
            f"{' and '.join(missing)} not found on PATH: speech synthesis needs the Debian packages "
            "espeak-ng and sox (apt-get install -y espeak-ng sox). Machines without them can "
            "train from a pack written here (`omni data pack`)."
        )


def synthesize(text: str, voice: Voice, data_path: str | None = None) -> np.ndarray:
    """int16 16 kHz mono speech of `text` spoken by `voice`, leading/trailing silence trimmed.
    `data_path`: an espeak-ng data folder's parent to use instead (ESPEAK_DATA_PATH), e.g. one
    with generated timbres (`omni.synth.timbres`)."""
    if not text.strip():
        raise ValueError("cannot synthesize empty text")
    check_tools(need_sox=False)
    cmd = ["espeak-ng", "-v", voice.name, "-s", str(voice.speed), "-p", str(voice.pitch), "-g", str(voice.word_gap)]
    env = None if data_path is None else {**os.environ, "ESPEAK_DATA_PATH": data_path}
    raw = subprocess.run(cmd + ["--stdout", text], capture_output=True, check=False, env=env)
    if raw.returncode != 0 or not raw.stdout:
        raise RuntimeError(f"espeak-ng failed for voice {voice.name!r}: {raw.stderr.decode(errors='replace')}")
    if shutil.which("sox") is None:
        return trim_silence(_resample_without_sox(raw.stdout))
    conv = subprocess.run(
        ["sox", "-R", "-t", "wav", "-", "-t", "wav", "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", "-"],
        input=raw.stdout,
        capture_output=True,
        check=False,
    )
    if conv.returncode != 0:
        raise RuntimeError(f"sox failed converting espeak-ng output: {conv.stderr.decode(errors='replace')}")
    samples, rate = read_wav(_fix_wav_sizes(conv.stdout))
    if rate != SAMPLE_RATE:
        raise RuntimeError(f"sox returned {rate} Hz, expected {SAMPLE_RATE}")
    return trim_silence(samples)


def _resample_without_sox(wav: bytes) -> np.ndarray:
    """espeak-ng's WAV stream -> int16 at SAMPLE_RATE (torchaudio's sinc resampler)."""
    import torch
    import torchaudio.functional as AF

    samples, rate = read_wav(_fix_wav_sizes(wav))
    x = torch.from_numpy(samples.astype(np.float32) / 32768.0)
    if rate != SAMPLE_RATE:
        x = AF.resample(x, rate, SAMPLE_RATE)
    return np.clip(np.round(x.numpy() * 32768.0), -32768, 32767).astype(np.int16)


def _fix_wav_sizes(data: bytes) -> bytes:
    """Streamed WAVs carry placeholder chunk sizes; rewrite them from the real length."""
    buf = bytearray(data)
    if buf[:4] != b"RIFF" or buf[8:12] != b"WAVE":
        raise RuntimeError("not a WAV stream")
    pos = 12
    while pos + 8 <= len(buf):
        cid, size = bytes(buf[pos : pos + 4]), int.from_bytes(buf[pos + 4 : pos + 8], "little")
        if cid == b"data":
            real = len(buf) - pos - 8
            real -= real % 2
            buf[pos + 4 : pos + 8] = real.to_bytes(4, "little")
            buf[4:8] = (pos + real).to_bytes(4, "little")
            return bytes(buf[: pos + 8 + real])
        pos += 8 + size + (size % 2)
    raise RuntimeError("WAV stream has no data chunk")


def trim_silence(samples: np.ndarray, threshold: int = 64, keep_s: float = 0.05) -> np.ndarray:
    """Cut leading/trailing near-silence, keeping `keep_s` seconds of margin."""
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > threshold)
    if len(loud) == 0:
        return samples
    keep = int(keep_s * SAMPLE_RATE)
    return samples[max(0, loud[0] - keep) : min(len(samples), loud[-1] + keep + 1)]

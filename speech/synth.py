"""Synthetic speech from espeak-ng (Debian package), resampled with sox.

Used to make codec training data and held-out test speech without any
download: `synthesize` renders one utterance, `generate_corpus` renders random
sentences over a grid of voices, speeds and pitches into a folder of 16 kHz WAVs
(optionally packed into one compressed `.npz`, see `speech.data`).
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import tempfile
from dataclasses import dataclass

import numpy as np

from speech.audio_io import load_wav, save_wav

# Voices are espeak-ng "language+variant" pairs. Training and evaluation use
# disjoint pairs: the variants m2, f4, m6, f3 and the bases en-us-nyc and
# en-gb-x-rp never occur in training.
TRAIN_BASES = ("en-us", "en-gb", "en-gb-scotland", "en-029", "en-gb-x-gbclan", "en-gb-x-gbcwmd")
TRAIN_VARIANTS = ("", "m1", "m3", "m4", "f1", "f2", "f5", "klatt")
EVAL_VOICES = ("en-us+m2", "en-us+f4", "en-us-nyc+m6", "en-gb-x-rp+f3")

_WORDS = """
time year people way day man thing woman life child world school state family student group country problem
hand part place case week company system program question work government number night point home water room
mother area money story fact month lot right study book eye job word business issue side kind head house
service friend father power hour game line end member law car city community name president team minute idea
kid body information back parent face others level office door health person art war history party result
change morning reason research girl guy moment air teacher force education foot boy age policy music market
sense nation plan college interest death experience effect use class control care field development role
effort rate heart drug show leader light voice wife police mind price report decision son view relationship
town road arm difference value building action model season society tax director position player record
paper space ground form event official matter center couple site project activity star table need court
oil situation cost industry figure street image phone data picture practice piece land product doctor wall
patient worker news test movie north love support technology step baby computer type attention film tree
source organization hair window evidence population site truth bank coffee garden river sugar bread winter
summer kitchen letter bridge engine island machine paper pocket rabbit sister tiger valley weather yellow
quick brown lazy happy simple strong bright quiet heavy early final local major better private social
clear recent single medical current wrong fresh ready certain modern gentle sudden silver purple orange
make take come give look find think tell become leave feel bring begin keep hold write stand hear meet
run pay sit speak lie lead read grow lose fall send build stay reach remain suggest raise pass sell
require report decide pull carry watch follow stop create open walk offer remember consider appear buy
wait serve die expect explain hope develop drive return believe allow listen jump catch throw climb
""".split()
_FUNCTION = "the a an this that my your our their his her its every some no one each".split()
_PREP = "in on at with from under over near behind before after through across into".split()
_VERBS_PAST = "saw found took gave made kept brought left held read wrote heard sent built bought caught threw".split()


def random_sentence(rng: random.Random) -> str:
    """A grammatical-ish English sentence of 5-14 words from a mixed vocabulary."""
    def np_() -> str:
        words = [rng.choice(_FUNCTION)]
        if rng.random() < 0.5:
            words.append(rng.choice(_WORDS))
        words.append(rng.choice(_WORDS))
        return " ".join(words)

    parts = [np_(), rng.choice(_VERBS_PAST), np_()]
    if rng.random() < 0.6:
        parts += [rng.choice(_PREP), np_()]
    if rng.random() < 0.3:
        parts += ["and", rng.choice(_WORDS), str(rng.randint(2, 999))]
    s = " ".join(parts)
    return s[0].upper() + s[1:] + rng.choice([".", ".", "?", "!"])


def check_tools() -> None:
    missing = [t for t in ("espeak-ng", "sox") if shutil.which(t) is None]
    if missing:
        raise RuntimeError(
            f"speech synthesis needs {' and '.join(missing)} (Debian: apt-get install espeak-ng sox)"
        )


def synthesize(text: str, voice: str = "en-us", speed: int = 160, pitch: int = 50, sample_rate: int = 16000) -> np.ndarray:
    """Render `text` with espeak-ng -> float32 mono audio at `sample_rate`."""
    check_tools()
    with tempfile.TemporaryDirectory() as tmp:
        raw, out = os.path.join(tmp, "raw.wav"), os.path.join(tmp, "out.wav")
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", raw, text],
            check=True, capture_output=True,
        )
        subprocess.run(["sox", raw, "-r", str(sample_rate), "-c", "1", "-b", "16", out], check=True, capture_output=True)
        return load_wav(out, sample_rate).numpy()


@dataclass
class Utterance:
    text: str
    voice: str
    speed: int
    pitch: int
    audio: np.ndarray


def train_voices() -> list[str]:
    return [b + (f"+{v}" if v else "") for b in TRAIN_BASES for v in TRAIN_VARIANTS]


def parse_voice_shares(spec: str) -> dict[str, float]:
    """"en-us+klatt5=0.3,en-gb=0.1" -> {voice: share of the utterances}."""
    shares: dict[str, float] = {}
    for part in filter(None, (x.strip() for x in spec.split(","))):
        voice, sep, frac = part.partition("=")
        try:
            value = float(frac)
        except ValueError:
            value = -1.0
        if not sep or not voice or not 0.0 < value < 1.0:
            raise ValueError(f"voice share {part!r}: expected VOICE=FRACTION with 0 < FRACTION < 1")
        shares[voice] = value
    if sum(shares.values()) >= 1.0:
        raise ValueError(f"voice shares add up to {sum(shares.values()):.2f}; they must leave room for the other voices")
    return shares


def generate_utterances(seconds: float, seed: int = 0, voices: list[str] | None = None, sample_rate: int = 16000,
                        progress: bool = True, voice_shares: dict[str, float] | None = None):
    """Yield random utterances until about `seconds` of audio were produced.

    `voice_shares` gives some voices a fixed share of the utterances (the rest are
    drawn from `voices`): a codec meant for one speaker, like the assistant's
    voice of the default model, should see mostly that speaker."""
    from tqdm import tqdm

    rng = random.Random(seed)
    voices = voices or train_voices()
    shares = voice_shares or {}
    total = 0.0
    bar = tqdm(total=round(seconds), unit="s", desc="espeak-ng", disable=not progress)
    while total < seconds:
        text = random_sentence(rng)
        voice, x = None, rng.random()
        for name, frac in shares.items():
            if x < frac:
                voice = name
                break
            x -= frac
        voice, speed, pitch = voice or rng.choice(voices), rng.randint(120, 200), rng.randint(25, 75)
        audio = synthesize(text, voice, speed, pitch, sample_rate)
        total += len(audio) / sample_rate
        bar.update(round(len(audio) / sample_rate, 2))
        yield Utterance(text, voice, speed, pitch, audio)
    bar.close()


def generate_corpus(out_dir: str, minutes: float, seed: int = 0, sample_rate: int = 16000, progress: bool = True,
                    voice_shares: dict[str, float] | None = None) -> list[str]:
    """Write ~`minutes` of random training speech as WAVs (+ transcripts.tsv) into `out_dir`."""
    bad = sorted(set(voice_shares or {}) & set(EVAL_VOICES))
    if bad:
        raise ValueError(f"{bad}: held-out evaluation voices must not be trained on")
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    with open(os.path.join(out_dir, "transcripts.tsv"), "w") as meta:
        for i, u in enumerate(generate_utterances(minutes * 60, seed, sample_rate=sample_rate, progress=progress,
                                                  voice_shares=voice_shares)):
            path = os.path.join(out_dir, f"utt{i:05d}.wav")
            save_wav(path, u.audio, sample_rate)
            meta.write(f"{os.path.basename(path)}\t{u.voice}\t{u.speed}\t{u.pitch}\t{u.text}\n")
            paths.append(path)
    return paths


"""An independent judge of intelligibility: pocketsphinx with a JSGF grammar.

The grammar lists sentences that differ from each other in single words
(numbers, colors, shapes, places), so a recognizer can only pick the right one
when those words are audible: a grammar of a few dissimilar sentences would
accept even speech low-passed at 1 kHz. pocketsphinx ships its English model in
the wheel; nothing is downloaded.
"""

from __future__ import annotations

import random

import numpy as np

NUMBERS = ("two", "three", "four", "five", "six", "seven", "eight", "nine")
COLORS = ("red", "blue", "green", "yellow", "black", "white", "brown", "purple")
SHAPES = ("circles", "squares", "triangles", "stars", "boxes")
PLACES = ("kitchen", "garden", "office", "station", "library", "market")


def confusable_sentences(num_base: int = 30, seed: int = 0) -> list[str]:
    """Sentences "the N C S are in the P": each base sentence plus variants changing one slot."""
    rng = random.Random(seed)
    out: list[str] = []
    seen: set[str] = set()

    def add(n, c, s, p):
        text = f"the {n} {c} {s} are in the {p}"
        if text not in seen:
            seen.add(text)
            out.append(text)

    while len(out) < num_base * 4:
        n, c, s, p = rng.choice(NUMBERS), rng.choice(COLORS), rng.choice(SHAPES), rng.choice(PLACES)
        add(n, c, s, p)
        add(rng.choice(NUMBERS), c, s, p)
        add(n, rng.choice(COLORS), s, p)
        add(n, c, rng.choice(SHAPES), p)
        add(n, c, s, rng.choice(PLACES))
    return out


def jsgf(sentences: list[str]) -> str:
    body = " |\n    ".join(f"( {s} )" for s in sentences)
    return f"#JSGF V1.0;\ngrammar confusable;\npublic <sentence> =\n    {body};\n"


class GrammarRecognizer:
    """pocketsphinx Decoder restricted to `sentences`; `recognize(audio16k) -> text`."""

    def __init__(self, sentences: list[str]) -> None:
        from pocketsphinx import Config, Decoder

        cfg = Config(lm=None, loglevel="FATAL")
        self.decoder = Decoder(cfg)
        self.decoder.add_jsgf_string("confusable", jsgf(sentences))
        self.decoder.activate_search("confusable")

    def recognize(self, audio: np.ndarray) -> str:
        pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
        self.decoder.start_utt()
        self.decoder.process_raw(pcm, full_utt=True)
        self.decoder.end_utt()
        hyp = self.decoder.hyp()
        return hyp.hypstr if hyp is not None else ""


def word_errors(ref: str, hyp: str) -> int:
    """Levenshtein distance over words."""
    r, h = ref.split(), hyp.split()
    d = list(range(len(h) + 1))
    for i, rw in enumerate(r, 1):
        prev, d[0] = d[0], i
        for j, hw in enumerate(h, 1):
            cur = min(d[j] + 1, d[j - 1] + 1, prev + (rw != hw))
            prev, d[j] = d[j], cur
    return d[len(h)]

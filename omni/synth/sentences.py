"""Random sentences over the training questions' words, for hearing words rather than sentences.

A model trained on the world's ~1,200 question texts learns to recognize those texts: the
shipped default model transcribes training texts in voices it never heard almost perfectly
and held-out wordings, even in training voices, at a word accuracy of ~0.39
(`bench/hearing_split.py`). Random word sequences over the same vocabulary have no sentence
to recall; spoken by the voice bank (`omni data voice-bank --sentences N`) they make the
audio encoder's CTC pre-training hear each word wherever it occurs. Their words are the
training texts' own, so no held-out wording leaks in.
"""

from __future__ import annotations

import numpy as np

from .world import rng_for

LENGTHS = (3, 10)  # words per sentence, inclusive: about the questions' own lengths


def vocabulary(texts: list[str]) -> list[str]:
    """The sorted words of `texts`."""
    return sorted({w for t in texts for w in t.split()})


def random_sentences(words: list[str], n: int, seed: int = 0, exclude: set[str] | frozenset = frozenset()) -> list[str]:
    """`n` distinct sentences of uniformly drawn `words`, none of them in `exclude`."""
    if n < 0:
        raise ValueError("n must be >= 0")
    if n and not words:
        raise ValueError("no words to draw sentences from")
    out: list[str] = []
    seen = set(exclude)
    k = 0
    while len(out) < n:
        rng = rng_for(seed, "sentence", k)
        k += 1
        s = " ".join(words[int(i)] for i in rng.integers(len(words), size=int(rng.integers(LENGTHS[0], LENGTHS[1] + 1))))
        if s not in seen:
            seen.add(s)
            out.append(s)
        if k > 20 * n + 100:
            raise ValueError(f"cannot draw {n} distinct sentences from {len(words)} words")
    return out

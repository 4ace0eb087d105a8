"""Rewordings of the training questions: the same question in a wording no template has.

The world asks each kind of question in 5-8 training templates, and a small model trained
on them learns the templates, not the words: asked a held-out question in a training
wording it answers 83 % right, in a held-out wording 68 % ("Worded as trained" in the
README). A rewording perturbs a training question's template words, never its object
phrase ("the red circle", the phrase to repeat), so its answer stays the question's:
a word such as "the", "is" or "you" dropped, two neighbouring template words swapped, a
prefix ("tell me", "please", ...) or a suffix ("for me", ...) added. The voice bank
(`omni data voice-bank --rewordings N`) speaks N rewordings of every question it can
reword, and training hears them in place of the question, as another rendering of it.

No held-out wording leaks in: a rewording in which a held-out template or greeting could
have said any run of words ("tell me what is moving now" holds "tell me what is moving")
is redrawn, and every word of a rewording is a word of the training texts.
Greetings and tool requests are not reworded (their wording is the whole question).
"""

from __future__ import annotations

import functools
import re

import numpy as np

from .questions import (GREETINGS, SPEECH_FAMILIES, TEMPLATES, VISUAL_FAMILIES, all_queries, all_question_texts,
                        phrases, query_phrase)
from .world import rng_for

PREFIXES: tuple[str, ...] = ("tell me", "please", "now", "so", "can you tell me", "hey", "say")
SUFFIXES: tuple[str, ...] = ("please", "for me", "now", "in the picture")
# template words a rewording may drop: the function words (never "how", "many", "color", ...)
DROPPABLE: frozenset[str] = frozenset(
    {"the", "is", "are", "do", "does", "you", "me", "can", "for", "of", "in", "please", "now", "there", "a", "to"})
P_DROP, P_SWAP, P_PREFIX, P_SUFFIX = 0.15, 0.25, 0.4, 0.2
REWORDED_FAMILIES: tuple[str, ...] = VISUAL_FAMILIES + ("repeat",)
SLOT = "{x}"


def _regex(template: str) -> re.Pattern:
    before, _, after = template.partition(SLOT)
    body = re.escape(before) + ("(.+)" if SLOT in template else "") + re.escape(after)
    return re.compile(body)


@functools.lru_cache(maxsize=1)
def _train_templates() -> list[tuple[str, str, re.Pattern, frozenset]]:
    """(family, template, its regex, the phrases its slot takes) of every rewordable kind."""
    queries = all_queries()
    out = []
    for (family, kind), splits in TEMPLATES.items():
        if family not in REWORDED_FAMILIES:
            continue
        if family in SPEECH_FAMILIES:
            slot = frozenset(phrases("train"))
        else:
            slot = frozenset(query_phrase(q) for q in queries[(family, kind)])
        out += [(family, t, _regex(t), slot) for t in splits["train"]]
    return out


@functools.lru_cache(maxsize=1)
def _heldout_patterns() -> list[re.Pattern]:
    # searched in " text ": a match starts and ends at word boundaries
    pats = [re.compile(" " + _regex(t).pattern + " ") for splits in TEMPLATES.values() for t in splits["heldout"]]
    pats += [re.compile(" " + re.escape(w) + " ") for _, _, heldout in GREETINGS.values() for w in heldout]
    return pats


@functools.lru_cache(maxsize=1)
def _train_texts() -> frozenset[str]:
    return frozenset(all_question_texts("train"))


def split_question(text: str) -> tuple[str, str, str] | None:
    """(family, template, phrase) of a training question text, or None where it is no
    rewordable training question (a greeting, a tool request, a held-out wording). Of
    several readings the one with the longest template wins."""
    best = None
    for family, template, pattern, slot in _train_templates():
        m = pattern.fullmatch(text)
        if m is None:
            continue
        phrase = m.group(1) if m.groups() else ""
        if m.groups() and phrase not in slot:
            continue
        if best is None or len(template) > len(best[1]):
            best = (family, template, phrase)
    return best


def is_heldout_wording(text: str) -> bool:
    """Whether a held-out template or greeting could say `text`, or any run of its words."""
    padded = f" {text} "
    return any(p.search(padded) for p in _heldout_patterns())


def _perturb(family: str, template: str, rng: np.random.Generator) -> str:
    words = template.split()
    words = [w for w in words if w == SLOT or w not in DROPPABLE or rng.random() >= P_DROP] or template.split()
    pairs = [k for k in range(len(words) - 1) if SLOT not in (words[k], words[k + 1])]
    if pairs and rng.random() < P_SWAP:
        k = pairs[int(rng.integers(len(pairs)))]
        words[k], words[k + 1] = words[k + 1], words[k]
    if rng.random() < P_PREFIX:
        # a phrase to repeat is said last: "say" before it would be part of the request
        pool = PREFIXES if family != "repeat" else tuple(p for p in PREFIXES if p != "say")
        words = pool[int(rng.integers(len(pool)))].split() + words
    if family != "repeat" and rng.random() < P_SUFFIX:  # after a phrase to repeat, a suffix would join it
        words = words + SUFFIXES[int(rng.integers(len(SUFFIXES)))].split()
    return " ".join(words)


def reword(text: str, seed: int, k: int, tries: int = 32) -> str | None:
    """The k-th rewording of a training question text (seeded per (text, k)), or None if
    `text` is not rewordable or no try gave a new wording that is no held-out one."""
    parts = split_question(text)
    if parts is None:
        return None
    family, template, phrase = parts
    rng = rng_for(seed, "reword", text, k)
    for _ in range(tries):
        out = _perturb(family, template, rng).replace(SLOT, phrase)
        if out != text and out not in _train_texts() and not is_heldout_wording(out):
            return out
    return None


def rewordings(texts: list[str], n: int, seed: int = 0) -> list[tuple[int, str]]:
    """Up to `n` rewordings of each of `texts`: (index of the text, rewording) pairs, in order."""
    if n < 0:
        raise ValueError("n must be >= 0")
    out = []
    for t, text in enumerate(texts):
        for k in range(n):
            r = reword(text, seed, k)
            if r is not None:
                out.append((t, r))
    return out

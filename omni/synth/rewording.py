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

Two styles (`STYLES`): `neighbour` makes only those small edits; `wide` also moves the
object phrase to the front ("the red circle what color is"), trades a word for its
training synonym ("what" for "which", "thing" for "object"), and at times shuffles all
template words, so that a question is read by its content words (color, shape, where,
how many, the object) rather than by the order a template puts them in: a held-out
wording ("the red one has which shape") shares its content words with training wordings,
not its order.

No held-out wording leaks in: a rewording in which a held-out template or greeting could
have said any run of words ("tell me what is moving now" holds "tell me what is moving")
is redrawn, and every word of a rewording is a word of the training texts.
Greetings and tool requests are not reworded (their wording is the whole question).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import numpy as np

from .questions import (GREETINGS, SPEECH_FAMILIES, TEMPLATES, VISUAL_FAMILIES, all_queries, all_question_texts,
                        phrases, query_phrase)
from .world import rng_for

PREFIXES: tuple[str, ...] = ("tell me", "please", "now", "so", "can you tell me", "hey", "say")
SUFFIXES: tuple[str, ...] = ("please", "for me", "now", "in the picture")
# template words a rewording may drop: the function words (never "how", "many", "color", ...)
DROPPABLE: frozenset[str] = frozenset(
    {"the", "is", "are", "do", "does", "you", "me", "can", "for", "of", "in", "please", "now", "there", "a", "to"})
# words a `wide` rewording may trade for one another: training words of one meaning here
SYNONYMS: tuple[frozenset[str], ...] = (frozenset({"what", "which"}), frozenset({"object", "thing"}))


@dataclass(frozen=True)
class Style:
    """How strongly a rewording departs from its template (probabilities per rewording)."""
    p_drop: float = 0.15  # each droppable word
    p_swap: float = 0.25  # two neighbouring template words
    p_prefix: float = 0.4
    p_suffix: float = 0.2
    p_front: float = 0.0  # the object phrase ("the {x}", "the {x} one") said first
    p_synonym: float = 0.0  # one word traded for its synonym
    p_shuffle: float = 0.0  # every template word in a random order (the object phrase kept whole)


STYLES: dict[str, Style] = {
    "neighbour": Style(),
    "wide": Style(p_front=0.3, p_synonym=0.3, p_shuffle=0.15),
}
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


def _object_span(words: list[str]) -> tuple[int, int] | None:
    """[start, end) of the object phrase around the slot: "the {x}", "the {x} one" or "{x}"."""
    if SLOT not in words:
        return None
    i = words.index(SLOT)
    start = i - 1 if i > 0 and words[i - 1] == "the" else i
    end = i + 2 if i + 1 < len(words) and words[i + 1] == "one" else i + 1
    return start, end


def _perturb(family: str, template: str, rng: np.random.Generator, style: Style = STYLES["neighbour"]) -> str:
    words = template.split()
    words = [w for w in words if w == SLOT or w not in DROPPABLE or rng.random() >= style.p_drop] or template.split()
    pairs = [k for k in range(len(words) - 1) if SLOT not in (words[k], words[k + 1])]
    if pairs and rng.random() < style.p_swap:
        k = pairs[int(rng.integers(len(pairs)))]
        words[k], words[k + 1] = words[k + 1], words[k]
    if style.p_synonym and rng.random() < style.p_synonym:
        at = [k for k, w in enumerate(words) if any(w in group for group in SYNONYMS)]
        if at:
            k = at[int(rng.integers(len(at)))]
            group = next(g for g in SYNONYMS if words[k] in g)
            others = sorted(group - {words[k]})
            words[k] = others[int(rng.integers(len(others)))]
    span = _object_span(words)
    # a phrase to repeat stays last: what the request ends with is what is said
    if family != "repeat" and span is not None and (style.p_front or style.p_shuffle):
        obj, rest = words[span[0]:span[1]], words[:span[0]] + words[span[1]:]
        if rest and rng.random() < style.p_shuffle:
            rest = [rest[k] for k in rng.permutation(len(rest))]
            cut = int(rng.integers(len(rest) + 1))  # the object phrase anywhere among them
            words = rest[:cut] + obj + rest[cut:]
        elif rest and rng.random() < style.p_front:
            words = obj + rest
    elif family != "repeat" and span is None and style.p_shuffle and rng.random() < style.p_shuffle:
        words = [words[k] for k in rng.permutation(len(words))]
    if rng.random() < style.p_prefix:
        # a phrase to repeat is said last: "say" before it would be part of the request
        pool = PREFIXES if family != "repeat" else tuple(p for p in PREFIXES if p != "say")
        words = pool[int(rng.integers(len(pool)))].split() + words
    if family != "repeat" and rng.random() < style.p_suffix:  # after a phrase to repeat, a suffix would join it
        words = words + SUFFIXES[int(rng.integers(len(SUFFIXES)))].split()
    return " ".join(words)


def reword(text: str, seed: int, k: int, tries: int = 32, style: str = "neighbour") -> str | None:
    """The k-th rewording of a training question text (seeded per (text, k)) in a style of
    `STYLES`, or None if `text` is not rewordable or no try gave a new wording that is no
    held-out one."""
    if style not in STYLES:
        raise ValueError(f"unknown rewording style {style!r}: one of {', '.join(STYLES)}")
    parts = split_question(text)
    if parts is None:
        return None
    family, template, phrase = parts
    # the neighbour style keeps its draws of before the styles existed (the shipped bank)
    rng = rng_for(seed, "reword", text, k) if style == "neighbour" else rng_for(seed, "reword", style, text, k)
    for _ in range(tries):
        out = _perturb(family, template, rng, STYLES[style]).replace(SLOT, phrase)
        if out != text and out not in _train_texts() and not is_heldout_wording(out):
            return out
    return None


def rewordings(texts: list[str], n: int, seed: int = 0, style: str = "neighbour") -> list[tuple[int, str]]:
    """Up to `n` rewordings of each of `texts`: (index of the text, rewording) pairs, in order."""
    if n < 0:
        raise ValueError("n must be >= 0")
    out = []
    for t, text in enumerate(texts):
        for k in range(n):
            r = reword(text, seed, k, style=style)
            if r is not None:
                out.append((t, r))
    return out

"""Question families, their wordings (split into train and held-out), and exact answers.

A question is a structured *query* (what is asked, about which object) plus a
wording template. `answer_query(scene, query)` evaluates a query on a scene and
returns None unless the scene determines exactly one answer (a definite
description such as "the square" must match exactly one object; "what is moving"
needs at most one mover; positions are asked only about still objects).
Questions are generated only where the answer is unique.

Families (the per-family report of the default model uses these names):
counting, attribute (color / shape), position, motion (what / which way), repeat,
greeting, and tool (a request the assistant serves by calling the world's tool,
`omni.synth.tool_world`; its answer depends on the tool's output). Answers are
short lower-case texts graded by exact match.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .world import COLOR_NAMES, DIRECTIONS, NUMBER_WORDS, POSITIONS, SHAPES, Scene, stable_hash

FAMILIES: tuple[str, ...] = ("counting", "attribute", "position", "motion", "repeat", "greeting", "tool")
VISUAL_FAMILIES: tuple[str, ...] = ("counting", "attribute", "position", "motion")
SPEECH_FAMILIES: tuple[str, ...] = ("repeat", "greeting")

# (family, kind) -> {split: templates}. `{x}` is filled with the object phrase.
# Held-out wordings are new sentences made of words the train wordings use (a
# model that never heard "number" cannot know it means "how many"; one that heard
# "give me the number of" can), and no held-out question text equals a train one.
TEMPLATES: dict[tuple[str, str], dict[str, tuple[str, ...]]] = {
    ("counting", "count"): {
        "train": ("how many {x} do you see", "how many {x} are there", "count the {x}", "how many {x} can you see",
                  "give me the number of {x}", "can you count the {x} for me", "say how many {x} you see",
                  "how many {x} are in the picture"),
        "heldout": ("tell me how many {x} there are", "what is the number of {x}"),
    },
    ("attribute", "color"): {
        "train": ("what color is the {x}", "which color is the {x}", "what is the color of the {x}",
                  "tell me what color the {x} is", "which color does the {x} have", "say the color of the {x}"),
        "heldout": ("tell me the color of the {x}", "the {x} has which color"),
    },
    ("attribute", "shape"): {
        "train": ("what shape is {x}", "which shape is {x}", "what is the shape of the {x} one",
                  "tell me the shape of the {x} one", "what shape has the color {x}"),
        "heldout": ("tell me which shape is {x}", "the {x} one has which shape"),
    },
    ("position", "where"): {
        "train": ("where is the {x}", "where can you see the {x}", "where is the {x} located",
                  "tell me the place of the {x}", "what place is the {x} in", "say where the {x} is"),
        "heldout": ("tell me where the {x} is", "in which place is the {x}"),
    },
    ("motion", "what"): {
        "train": ("what is moving", "which object is moving", "what moves", "tell me which thing moves",
                  "what is in motion", "which object is in motion now"),
        "heldout": ("tell me what is moving", "which thing is in motion"),
    },
    ("motion", "which_way"): {
        "train": ("which way is the {x} moving", "in which direction is the {x} moving", "where is the {x} going",
                  "where does the {x} go", "tell me the direction of the {x}", "which way does the {x} move now"),
        "heldout": ("tell me which way the {x} moves", "what direction does the {x} go"),
    },
    ("repeat", "repeat"): {
        "train": ("repeat after me {x}", "say {x}", "please say {x}", "could you please repeat {x}",
                  "now say {x}"),
        "heldout": ("can you repeat {x}", "could you say {x}"),
    },
}

# Greetings: intent -> (answer, train wordings, held-out wordings).
GREETINGS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "hello": ("hello", ("hello", "hi", "hey there", "hello there", "hi hello"), ("hi there", "hey hello")),
    "how_are_you": ("i am fine thank you", ("how are you", "how are you today", "how are you doing today"),
                    ("how are you doing",)),
    "thanks": ("you are welcome", ("thank you", "thanks a lot", "thanks", "thanks very much", "thank you so much"),
               ("thank you very much", "many thanks")),
    "goodbye": ("goodbye", ("goodbye", "bye bye", "see you", "talk to you later", "that is all for now"),
                ("see you later", "bye for now")),
    "morning": ("good morning", ("good morning", "good morning to you", "a good morning to you"),
                ("a very good morning",)),
    "name": ("i am your assistant", ("what is your name", "what are you called", "tell me what you are called"),
             ("tell me your name",)),
}

# Answers written as digits / synonyms that graders should also accept.
_ACCEPT_EXTRA: dict[str, tuple[str, ...]] = {
    **{w: (str(i),) for i, w in enumerate(NUMBER_WORDS)},
    "center": ("centre", "middle", "the center", "in the center"),
    "top": ("the top", "at the top"),
    "bottom": ("the bottom", "at the bottom"),
    "left": ("the left", "on the left"),
    "right": ("the right", "on the right"),
    "nothing": ("none", "nothing is moving"),
}
PHRASE_HELDOUT_PERCENT = 20


@dataclass(frozen=True)
class Question:
    family: str
    kind: str
    wording: str  # template id, e.g. "counting/count/train/1"
    text: str
    answer: str
    query: dict
    options: tuple[str, ...] = field(default_factory=tuple)  # multiple-choice options (visual families)

    def accept(self) -> list[str]:
        """Answers a grader should count as correct (the canonical one first)."""
        out = [self.answer] + list(_ACCEPT_EXTRA.get(self.answer, ()))
        if self.family == "motion" and self.kind == "what" and self.answer != "nothing":
            out.append("the " + self.answer)
        return out


def normalize_answer(text: str) -> str:
    """Lower case, letters/digits/spaces only, single spaces: the exact-match form."""
    kept = "".join(c if c.isalnum() or c.isspace() else " " for c in text.lower())
    return " ".join(kept.split())


# --- scene captions -----------------------------------------------------------
# A caption names every object of a still: dense supervision of what the vision
# encoder must see (each shape's color and place), where one question checks one
# fact. Objects in reading order, so the text is a function of the picture.
CAPTION_PROMPT = "describe the picture"
# Transcription: a spoken question followed by this text asks for its words, dense
# supervision of what the audio encoder must hear (an answer checks one word of it).
TRANSCRIBE_PROMPT = "write down what I said"
CAPTION_ORDER: tuple[str, ...] = ("top", "left", "center", "right", "bottom")


def scene_caption(scene: Scene, motion: bool = False) -> str:
    """"red circle top, blue star left": each object's color, shape and slot at t = 0;
    with `motion`, a mover's direction too ("blue star left moving up")."""
    objs = sorted(scene.objects, key=lambda o: CAPTION_ORDER.index(o.slot))
    return ", ".join(f"{o.color} {o.shape} {o.slot}" + (f" moving {o.direction}" if motion and o.direction else "")
                     for o in objs)


# --- object references ------------------------------------------------------


def _matches(obj, ref: dict) -> bool:
    return all(getattr(obj, k) == v for k, v in ref.items())


def ref_phrase(ref: dict) -> str:
    """Spoken phrase of a reference: {"color": "red", "shape": "star"} -> "red star"."""
    if "slot" in ref:
        where = {"center": "in the center", "top": "at the top", "bottom": "at the bottom"}
        return "shape " + where.get(ref["slot"], f"on the {ref['slot']}")
    if "color" in ref and "shape" in ref:
        return f"{ref['color']} {ref['shape']}"
    if "shape" in ref:
        return ref["shape"]
    return f"{ref['color']} one"


def count_phrase(query: dict) -> str:
    c, s = query.get("color"), query.get("shape")
    return " ".join(p for p in (c, f"{s}s" if s else "shapes") if p)


def answer_query(scene: Scene | None, query: dict) -> str | None:
    """The unique answer of `query` on `scene`, or None when the scene does not determine one."""
    q = query["type"]
    if q == "repeat":
        return query["phrase"]
    if q == "greeting":
        return GREETINGS[query["intent"]][0]
    if q == "tool":  # what the assistant says once the tool's output is in
        from .tool_world import ToolCase

        return ToolCase.of("", query).answer
    if scene is None:
        return None
    objs = list(scene.objects)
    if q == "count":
        ref = {k: query[k] for k in ("color", "shape") if query.get(k)}
        return NUMBER_WORDS[sum(_matches(o, ref) for o in objs)]
    if q == "what_moving":
        if scene.kind != "video":
            return None
        movers = scene.movers
        if len(movers) > 1:
            return None
        return f"{movers[0].color} {movers[0].shape}" if movers else "nothing"
    hits = [o for o in objs if _matches(o, query["ref"])]
    if len(hits) != 1:
        return None
    (obj,) = hits
    if "slot" in query["ref"] and scene.movers:
        return None  # "the shape on the left" is unclear once things move around
    if q == "color_of":
        return obj.color
    if q == "shape_of":
        return obj.shape
    if q == "where":
        return None if obj.moving else obj.slot
    if q == "which_way":
        return obj.direction if scene.kind == "video" and obj.moving else None
    raise ValueError(f"unknown query type {q!r}")


def visual_queries(scene: Scene) -> dict[tuple[str, str], list[dict]]:
    """Every answerable visual query of a scene, grouped by (family, kind)."""
    colors = sorted({o.color for o in scene.objects})
    shapes = sorted({o.shape for o in scene.objects})
    refs: list[dict] = []
    for o in scene.objects:
        refs += [{"color": o.color, "shape": o.shape}, {"shape": o.shape}, {"color": o.color}]
    refs = [dict(t) for t in sorted({tuple(sorted(r.items())) for r in refs})]
    out: dict[tuple[str, str], list[dict]] = {k: [] for k in TEMPLATES if k[0] in VISUAL_FAMILIES}
    counts = [{"type": "count"}] + [{"type": "count", "shape": s} for s in SHAPES]
    counts += [{"type": "count", "color": c} for c in colors]
    counts += [{"type": "count", "color": c, "shape": s} for c in colors for s in SHAPES]
    out[("counting", "count")] = counts
    out[("attribute", "color")] = [{"type": "color_of", "ref": {"shape": s}} for s in shapes] + [
        {"type": "color_of", "ref": {"slot": o.slot}} for o in scene.objects
    ]
    out[("attribute", "shape")] = [{"type": "shape_of", "ref": {"color": c}} for c in colors]
    out[("position", "where")] = [{"type": "where", "ref": r} for r in refs]
    if scene.kind == "video":
        out[("motion", "what")] = [{"type": "what_moving"}]
        out[("motion", "which_way")] = [{"type": "which_way", "ref": r} for r in refs]
    return {k: [q for q in v if answer_query(scene, q) is not None] for k, v in out.items()}


def query_phrase(query: dict) -> str:
    if query["type"] == "count":
        return count_phrase(query)
    if query["type"] == "shape_of":
        return query["ref"]["color"]
    if query["type"] == "repeat":
        return query["phrase"]
    return ref_phrase(query["ref"]) if "ref" in query else ""


def make_question(
    scene: Scene | None, family: str, kind: str, query: dict, split: str, rng: np.random.Generator
) -> Question:
    """Word a query with a random template of `split` and attach MCQ options."""
    answer = answer_query(scene, query)
    if answer is None:
        raise ValueError(f"query {query} has no unique answer on scene {scene.scene_id if scene else None}")
    wording, text = word_query(family, kind, query, split, rng)
    options = _options(scene, query, answer, rng) if family in VISUAL_FAMILIES else ()
    return Question(family, kind, wording, text, answer, query, options)


def word_query(family: str, kind: str, query: dict, split: str, rng: np.random.Generator) -> tuple[str, str]:
    """(wording id, text): the query asked in a random wording of `split` (one draw of `rng`)."""
    if family == "greeting":
        words = GREETINGS[query["intent"]][1 if split == "train" else 2]
        i = int(rng.integers(len(words)))
        return f"greeting/{query['intent']}/{split}/{i}", words[i]
    templates = TEMPLATES[(family, kind)][split]
    i = int(rng.integers(len(templates)))
    return f"{family}/{kind}/{split}/{i}", templates[i].format(x=query_phrase(query))


def _options(scene: Scene | None, query: dict, answer: str, rng: np.random.Generator) -> tuple[str, ...]:
    """Four distinct options, the answer among them, in random order."""
    q = query["type"]
    pool: list[str]
    if q == "count":
        pool = list(NUMBER_WORDS)
    elif q == "color_of":
        pool = list(COLOR_NAMES)
    elif q == "shape_of":
        pool = list(SHAPES)
    elif q == "where":
        pool = list(POSITIONS)
    elif q == "which_way":
        pool = list(DIRECTIONS)
    else:  # what_moving: the scene's other objects first, then "nothing" and made-up ones
        present = [f"{o.color} {o.shape}" for o in (scene.objects if scene else ())]
        pool = present + ["nothing"] + [f"{c} {s}" for c in COLOR_NAMES for s in SHAPES]
    distractors = [p for p in dict.fromkeys(pool) if p != answer]
    if q == "what_moving":
        near, far = distractors[: len(present) + 1], distractors[len(present) + 1 :]
        picked = list(near[:3]) + [str(x) for x in rng.choice(far, size=max(0, 3 - len(near[:3])), replace=False)]
    else:
        picked = [str(x) for x in rng.choice(distractors, size=3, replace=False)]
    opts = picked + [answer]
    return tuple(str(opts[i]) for i in rng.permutation(4))


# --- speech tasks -----------------------------------------------------------


def all_phrases() -> list[str]:
    """Every "repeat after me" phrase the world can produce, in a fixed order."""
    out = [f"{c} {s}" for c in COLOR_NAMES for s in SHAPES]
    out += [f"i see a {c} {s}" for c in COLOR_NAMES for s in SHAPES]
    out += [f"{n} {s}s" for n in NUMBER_WORDS[2:] for s in SHAPES]
    out += [f"the {s} is on the {p}" for s in SHAPES for p in ("left", "right")]
    out += [f"{a} and {b}" for a in COLOR_NAMES for b in COLOR_NAMES if a < b]
    out += [f"{a} and {b}" for a in SHAPES for b in SHAPES if a < b]
    out += [f"move it {d}" for d in DIRECTIONS]
    return out


def phrase_split(phrase: str) -> str:
    return "heldout" if stable_hash("phrase:" + phrase) % 100 < PHRASE_HELDOUT_PERCENT else "train"


def phrases(split: str) -> list[str]:
    return [p for p in all_phrases() if phrase_split(p) == split]


def speech_query(rng: np.random.Generator, split: str) -> tuple[str, str, dict]:
    """(family, kind, query) of a random speech-task question of `split`."""
    if rng.random() < 0.5:
        pool = phrases(split)
        return "repeat", "repeat", {"type": "repeat", "phrase": str(pool[int(rng.integers(len(pool)))])}
    intents = sorted(GREETINGS)
    return "greeting", "greeting", {"type": "greeting", "intent": str(intents[int(rng.integers(len(intents)))])}


def all_wordings(split: str) -> list[str]:
    """Every template / fixed wording of a split (the corpus and the split test read these)."""
    out = [t for v in TEMPLATES.values() for t in v[split]]
    out += [w for _, tr, ho in GREETINGS.values() for w in (tr if split == "train" else ho)]
    return out


def answer_space() -> list[str]:
    """Every answer any question can have (for recognizer grammars and MCQ checks); the
    tool's answers are `omni.synth.tool_world.answer_texts`."""
    out = list(NUMBER_WORDS) + list(COLOR_NAMES) + list(SHAPES) + list(POSITIONS) + list(DIRECTIONS)
    out += ["nothing"] + [f"{c} {s}" for c in COLOR_NAMES for s in SHAPES]
    out += [a for a, _, _ in GREETINGS.values()] + all_phrases()
    return list(dict.fromkeys(out))


def all_queries() -> dict[tuple[str, str], list[dict]]:
    """Every query the world can ask, scene-independent, grouped by (family, kind)."""
    refs = [{"color": c, "shape": s} for c in COLOR_NAMES for s in SHAPES]
    refs += [{"shape": s} for s in SHAPES] + [{"color": c} for c in COLOR_NAMES]
    counts = [{"type": "count"}] + [{"type": "count", "shape": s} for s in SHAPES]
    counts += [{"type": "count", "color": c} for c in COLOR_NAMES]
    counts += [{"type": "count", "color": c, "shape": s} for c in COLOR_NAMES for s in SHAPES]
    return {
        ("counting", "count"): counts,
        ("attribute", "color"): [{"type": "color_of", "ref": {"shape": s}} for s in SHAPES]
        + [{"type": "color_of", "ref": {"slot": p}} for p in POSITIONS],
        ("attribute", "shape"): [{"type": "shape_of", "ref": {"color": c}} for c in COLOR_NAMES],
        ("position", "where"): [{"type": "where", "ref": r} for r in refs],
        ("motion", "what"): [{"type": "what_moving"}],
        ("motion", "which_way"): [{"type": "which_way", "ref": r} for r in refs],
        ("repeat", "repeat"): [{"type": "repeat", "phrase": p} for p in all_phrases()],
    }


def all_question_texts(split: str) -> list[str]:
    """Every question text `split` can contain (its wordings x every query), in a fixed order."""
    out: list[str] = []
    for key, queries in all_queries().items():
        for q in queries:
            if q["type"] == "repeat" and phrase_split(q["phrase"]) != split:
                continue
            out += [t.format(x=query_phrase(q)) for t in TEMPLATES[key][split]]
    out += [w for _, tr, ho in GREETINGS.values() for w in (tr if split == "train" else ho)]
    return list(dict.fromkeys(out))

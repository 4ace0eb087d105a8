"""Planning a split: which scenes, which questions, which voices and noise (no I/O).

A plan is a pure function of (seed, split, sizes): scene i, the questions of scene
i, speech sample j, the rendering of clip (text, k) and the noise of sample n each
draw from their own seeded generator, so changing one size never reshuffles the
rest, and two machines produce the same data.

Spoken questions come from a bank of clean clips: each distinct question text is
rendered `renderings_per_text` times (different voice, speed, pitch); samples pick
one of them and add their own noise. The bank is what keeps the GPU pack small.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from .audio import random_noise_params
from .questions import Question, make_question, speech_query, visual_queries
from .tool_world import REQUESTS, draw_case
from .voices import Voice, sample_voice
from .world import Scene, rng_for, sample_scene

# Relative weight of each (family, kind) when drawing a scene's questions: motion
# is boosted because only video scenes (40%) can have it.
KIND_WEIGHTS: dict[tuple[str, str], float] = {
    ("counting", "count"): 1.0,
    ("attribute", "color"): 0.5,
    ("attribute", "shape"): 0.5,
    ("position", "where"): 1.0,
    ("motion", "what"): 1.5,
    ("motion", "which_way"): 1.5,
}
ZERO_COUNT_PROB = 0.2  # share of counting questions whose answer is "zero"


@dataclass(frozen=True)
class Clip:
    """One clean spoken rendering of a question text."""

    clip_id: str
    text: str
    voice: Voice


@dataclass(frozen=True)
class Noise:
    kind: str
    snr_db: float
    lead_s: float
    tail_s: float
    gain_db: float
    seed: int

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Sample:
    sample_id: str
    split: str
    scene_id: str | None
    question: Question
    clip_id: str
    noise: Noise


@dataclass
class Plan:
    seed: int
    split: str
    scenes: list[Scene]
    samples: list[Sample]
    clips: dict[str, Clip] = field(default_factory=dict)

    def scene(self, scene_id: str | None) -> Scene | None:
        if scene_id is None:
            return None
        return self._by_id[scene_id]

    def __post_init__(self) -> None:
        self._by_id = {s.scene_id: s for s in self.scenes}


def clip_for(seed: int, split: str, text: str, k: int) -> Clip:
    voice = sample_voice(rng_for(seed, "clip", split, text, k), split)
    digest = hashlib.sha256(f"{seed}|{split}|{text}|{k}".encode()).hexdigest()[:12]
    return Clip(f"{split[0]}{digest}", text, voice)


def _noise(seed: int, split: str, index: int) -> Noise:
    rng = rng_for(seed, "noise", split, index)
    return Noise(**random_noise_params(rng), seed=int(rng.integers(2**31)))


def _scene_questions(scene: Scene, split: str, n: int, rng: np.random.Generator) -> list[Question]:
    cands = visual_queries(scene)
    out: list[Question] = []
    while len(out) < n:
        keys = [k for k, v in cands.items() if v]
        if not keys:
            break
        w = np.array([KIND_WEIGHTS[k] for k in keys])
        family, kind = keys[int(rng.choice(len(keys), p=w / w.sum()))]
        pool = cands[(family, kind)]
        if family == "counting":
            # Draw the answer first so that "one" does not swamp the other counts;
            # "zero" (asking about absent things) keeps a fixed small share.
            by_count: dict[int, list[dict]] = {}
            for q in pool:
                by_count.setdefault(_count(scene, q), []).append(q)
            nonzero = sorted(c for c in by_count if c > 0)
            if 0 in by_count and (not nonzero or rng.random() < ZERO_COUNT_PROB):
                pool_pick = by_count[0]
            else:
                pool_pick = by_count[nonzero[int(rng.integers(len(nonzero)))]]
        else:
            pool_pick = pool
        query = pool_pick[int(rng.integers(len(pool_pick)))]
        pool.remove(query)
        out.append(make_question(scene, family, kind, query, split, rng))
    return out


def _count(scene: Scene, query: dict) -> int:
    return sum(all(getattr(o, k) == query[k] for k in ("color", "shape") if query.get(k)) for o in scene.objects)


def build_plan(
    seed: int,
    split: str,
    num_scenes: int,
    questions_per_scene: int = 3,
    speech_ratio: float = 0.2,
    renderings_per_text: int = 3,
    video_fraction: float = 0.4,
    tool_ratio: float = 0.0,
) -> Plan:
    """Plan `num_scenes` scenes with their questions, plus speech-task samples.

    speech_ratio: speech-task samples (repeat, greeting) per visual sample.
    tool_ratio: requests served by the world's tool (`tool_world`) per visual sample;
    their answer is what the assistant says once the tool's output is in.
    """
    if num_scenes < 1 or questions_per_scene < 1 or renderings_per_text < 1:
        raise ValueError("num_scenes, questions_per_scene and renderings_per_text must be >= 1")
    if tool_ratio < 0:
        raise ValueError(f"tool_ratio must be >= 0, got {tool_ratio}")
    scenes = [sample_scene(seed, split, i, video_fraction) for i in range(num_scenes)]
    pending: list[tuple[str | None, Question, np.random.Generator]] = []
    for i, scene in enumerate(scenes):
        rng = rng_for(seed, "questions", split, i)
        for q in _scene_questions(scene, split, questions_per_scene, rng):
            pending.append((scene.scene_id, q, rng))
    num_visual = len(pending)
    num_speech = int(round(speech_ratio * num_visual))
    for j in range(num_speech):
        rng = rng_for(seed, "speech", split, j)
        family, kind, query = speech_query(rng, split)
        # Half of the speech turns happen with the camera on a scene, which they ignore.
        scene = scenes[int(rng.integers(len(scenes)))] if rng.random() < 0.5 else None
        q = make_question(scene, family, kind, query, split, rng)
        pending.append((scene.scene_id if scene else None, q, rng))
    for j in range(int(round(tool_ratio * num_visual))):
        rng = rng_for(seed, "tool", split, j)
        case = draw_case(rng, split)
        scene = scenes[int(rng.integers(len(scenes)))] if rng.random() < 0.5 else None  # the camera may be on
        wording = f"tool/{'on' if case.on else 'off'}/{split}/{REQUESTS[case.on][split].index(case.request)}"
        q = Question("tool", "set_light", wording, case.request, case.answer, case.query)
        pending.append((scene.scene_id if scene else None, q, rng))
    clips: dict[str, Clip] = {}
    samples: list[Sample] = []
    for n, (scene_id, q, rng) in enumerate(pending):
        clip = clip_for(seed, split, q.text, int(rng.integers(renderings_per_text)))
        clips.setdefault(clip.clip_id, clip)
        samples.append(Sample(f"{split}-{n:06d}", split, scene_id, q, clip.clip_id, _noise(seed, split, n)))
    return Plan(seed, split, scenes, samples, clips)

"""The default model's curriculum: stage mixes and the stage manifests written from a pack.

In the spirit of LongCat-Flash-Omni's staged pre-training, each stage adds a
modality and keeps replaying the earlier ones:

    speech    text <-> speech alignment: "say {answer}" for every answer, the speech
              tasks (repeat, greetings) asked in text and spoken, and transcription
              of every spoken question (visual ones included) and, with a voice bank
              that has them, of random sentences of the questions' words
    vision    still images with text questions (the offline `omni chat --image` layout;
              motion questions, which need the video, are left out of it) and
              captions naming every object of a still
    dialogue  spoken questions with the camera on, chunk-interleaved in 1 s
              `second{t}:` blocks (the streaming layout of `omni serve`), greetings
              and repeats among them (the camera shows a picture they do not ask
              about), and the requests the world's tool serves, where the pack has them

Visual questions are re-paired with other scenes (`Pack.answer_on_scene`) when
the scene determines a unique answer, which multiplies pairs without new audio.
"""

from __future__ import annotations

import json
import os

import numpy as np

from mdp.curriculum.data import DECLARABLE, SPEECH_FAMILIES

# stage -> [(weight, layout, question kind, voice reply)]; kind: speech | visual |
# answer | scene (a caption of any scene) | clip (any spoken question, transcribed) |
# sentence (a random sentence of the voice bank, transcribed: words heard in any order,
# not sentences recalled; left out where the bank has none) | tool (a request served by the
# world's tool: the call, its output, the answer; left out where the pack has none).
# Weights are relative within a stage.
STAGES: dict[str, list[tuple[float, str, str, bool]]] = {
    "speech": [
        (0.30, "say", "answer", True),
        (0.20, "text", "speech", True),
        (0.10, "text", "speech", False),
        (0.30, "audio", "speech", True),
        (0.10, "audio", "speech", False),
        (0.25, "transcribe", "clip", False),
        (0.25, "transcribe", "sentence", False),
    ],
    "vision": [
        (0.45, "image", "visual", True),
        (0.25, "image", "visual", False),
        (0.10, "say", "answer", True),
        (0.20, "audio", "speech", True),
        (0.25, "caption", "scene", False),
    ],
    "dialogue": [
        (0.50, "stream", "visual", True),
        (0.10, "stream", "visual", False),
        (0.07, "audio", "speech", True),
        (0.10, "stream", "speech", True),
        (0.15, "image", "visual", True),
        (0.10, "image", "visual", False),
        (0.10, "caption", "scene", False),
        (0.05, "transcribe", "clip", False),
        (0.05, "transcribe", "sentence", False),
        (0.08, "tool", "tool", True),
    ],
}
STAGE_ORDER = ("speech", "vision", "dialogue")
TYPED_TOOL_SHARE = 0.25  # of the tool conversations, the request typed (a text client), not spoken
REPAIR_PROB = 0.5  # visual questions asked of another scene, when its answer is unique
# Layouts that show a single still (scene frame 0), and the question families that need
# the frames of a video: a motion question shown one still has no answer in its input
# (18 % of the visual questions of an 800-scene train pack); the stream layout,
# which shows the video's frame pairs, keeps them.
STILL_LAYOUTS = ("image",)
# Layouts that show the camera while the user speaks. The server always streams the camera
# when it is on, so greetings and repeats are asked there as well: a model that only ever
# heard them without a picture answers "hello" seen through a camera with what it sees
# ("one", "bottom"): half of the held-out greetings and repeats, before they were.
CAMERA_LAYOUTS = ("stream",)
# Typed greetings and repeats after the speech stage (`curriculum.typed_speech_weight`, off by
# default, 0.015 in the shipped model's run): only the speech stage asks them typed, without a
# picture, and a model trained without these lines has forgotten them by the end (`omni chat
# --text "hello"`: typed greetings 14 %, repeats 11 % on held-out wordings). With a weight W
# these lines join the later stages' mixes, W each: typed alone and typed beside a still of some
# scene (`omni chat --image --text`), text and spoken replies. Appended after the STAGES lines,
# so the default recipe's draws do not change.
TYPED_SPEECH_STAGES = ("vision", "dialogue")
TYPED_SPEECH_LINES = (("text", "speech", True), ("text", "speech", False),
                      ("image", "speech", True), ("image", "speech", False))
# Questions typed beside a video (`curriculum.typed_video_weight`, off by default, 0.015 in the
# shipped model's run): `omni chat --video clip.mp4 --text ...` shows the clip's 2 FPS frame
# pairs in 1 s chunks and then the question, a layout no other line trains (a model trained
# without these answers typed motion questions 15 % of the time). With a weight W the dialogue
# stage draws these lines, W each.
TYPED_VIDEO_STAGES = ("dialogue",)
TYPED_VIDEO_LINES = (("video", "visual", True), ("video", "visual", False))
# layouts that show a picture with a greeting or a repeat: the camera, or a typed question's still
PICTURE_LAYOUTS = CAMERA_LAYOUTS + STILL_LAYOUTS
VIDEO_FAMILIES = ("motion",)


def stage_plan(steps: dict[str, int]) -> list[tuple[str, int]]:
    """The recipe's `curriculum.stage_steps` ({stage: steps}, in curriculum order) as
    [(name, steps)], checked: known stages, at least one step each."""
    out = []
    for name, n in steps.items():
        if name not in STAGES:
            raise ValueError(f"recipe curriculum.stage_steps: unknown stage {name!r}; known: {list(STAGES)}")
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"recipe curriculum.stage_steps: stage {name} needs >= 1 step, got {n!r}")
        out.append((name, n))
    if not out:
        raise ValueError("recipe curriculum.stage_steps is empty")
    return out


def stage_seq_lens(lengths: dict[str, int], default: int) -> dict[str, int]:
    """The recipe's `curriculum.stage_seq_len` for every stage; stages not named get `default`."""
    for name, n in lengths.items():
        if name not in STAGES or not isinstance(n, int) or n < 1:
            raise ValueError(f"recipe curriculum.stage_seq_len: {name}:{n} must be STAGE:LENGTH with a stage of "
                             f"{list(STAGES)}")
    return {name: lengths.get(name, default) for name in STAGES}


def write_stage_manifest(pack, stage: str, path: str, num_samples: int, seed: int,
                         caption_weight: float | None = None, transcribe_weight: float | None = None,
                         sentences: int = 0, sentence_weight: float | None = None,
                         tool_weight: float | None = None, tools_declared: float = 0.0,
                         typed_speech_weight: float | None = None, typed_video_weight: float | None = None) -> dict:
    """Draw `num_samples` lines of `stage`'s mix from the pack; returns counts per layout.

    `caption_weight` / `transcribe_weight` / `sentence_weight` / `tool_weight` replace the
    relative weight of the stage's captions / transcriptions of questions / of random
    sentences / tool conversations (0: none; None: the STAGES weight); `typed_speech_weight`
    (0 / None: none) adds `TYPED_SPEECH_LINES` to the `TYPED_SPEECH_STAGES`, that weight each,
    and `typed_video_weight` the `TYPED_VIDEO_LINES` to the `TYPED_VIDEO_STAGES`.
    `sentences`: how many random sentences the voice bank has (a sentence line names one,
    "sentence": index; other lines have no such field). `tools_declared`: in a stage that draws tool conversations, this
    share of its question lines (`DECLARABLE` layouts) is asked with the tool declared ("system":
    true), drawn apart from the rest so that the other lines are the same with or without it;
    `TYPED_TOOL_SHARE` of the tool conversations have their request typed ("typed": true)."""
    rng = np.random.default_rng([seed, STAGE_ORDER.index(stage) if stage in STAGE_ORDER else 99])
    fam = np.array([pack.family(i) for i in range(len(pack))])
    speech = np.flatnonzero(np.isin(fam, SPEECH_FAMILIES))
    visual = np.flatnonzero(~np.isin(fam, SPEECH_FAMILIES + ("tool",)) & (pack.sample_scene >= 0))
    still = visual[~np.isin(fam[visual], VIDEO_FAMILIES)]
    num_answers = len(pack.answer_offset) - 1
    weight = {"caption": caption_weight, "clip": transcribe_weight, "sentence": sentence_weight, "tool": tool_weight}
    key_of = lambda m: m[2] if m[1] == "transcribe" else m[1]
    mix = [(weight[key_of(m)], *m[1:]) if weight.get(key_of(m)) is not None else m for m in STAGES[stage]]
    if typed_speech_weight and stage in TYPED_SPEECH_STAGES:
        mix += [(typed_speech_weight, *line) for line in TYPED_SPEECH_LINES]
    if typed_video_weight and stage in TYPED_VIDEO_STAGES:
        mix += [(typed_video_weight, *line) for line in TYPED_VIDEO_LINES]
    pools = {"speech": speech, "visual": visual, "answer": np.arange(num_answers), "scene": np.arange(pack.num_scenes),
             "clip": np.arange(len(pack)), "sentence": np.arange(sentences), "tool": np.flatnonzero(fam == "tool")}
    pool = lambda layout, kind: still if kind == "visual" and layout in STILL_LAYOUTS else pools[kind]
    usable = [m for m in mix if len(pool(m[1], m[2])) and m[0] > 0]
    if not usable:
        raise ValueError(f"pack {pack.path} has no samples for stage {stage}")
    teaches_tool = any(m[1] == "tool" for m in usable)
    declared_rng = np.random.default_rng([seed, STAGE_ORDER.index(stage) if stage in STAGE_ORDER else 99, 11])
    w = np.array([m[0] for m in usable])
    w = w / w.sum()
    counts: dict[str, int] = {}
    lines = []
    answer_sample = {int(a): int(i) for i, a in enumerate(pack.sample_answer)}
    for _ in range(num_samples):
        _, layout, kind, voice = usable[int(rng.choice(len(usable), p=w))]
        extra: dict = {}
        if kind == "answer":
            a = int(rng.choice(pools["answer"]))
            i, scene = answer_sample.get(a, 0), -1
        elif kind == "scene":  # the caption is made from the scene record at build time
            i, scene, a = 0, int(rng.choice(pools["scene"])), 0
        elif kind == "clip":  # the reply is the question's own text
            i = int(rng.choice(pools["clip"]))
            scene, a = -1, int(pack.sample_answer[i])
        elif kind == "sentence":  # the reply is the sentence (the pack sample is a placeholder)
            i, scene, a = 0, -1, 0
            extra = {"sentence": int(rng.choice(pools["sentence"]))}
        else:
            i = int(rng.choice(pool(layout, kind)))
            scene, a = int(pack.sample_scene[i]), int(pack.sample_answer[i])
            if kind == "speech" and layout in PICTURE_LAYOUTS and scene < 0:
                scene = int(rng.integers(pack.num_scenes))  # a greeting or a repeat: any picture will do
            if kind == "visual" and rng.random() < REPAIR_PROB:
                k = int(rng.integers(pack.num_scenes))
                b = pack.answer_on_scene(i, k)
                if b >= 0:
                    scene, a = k, b
        if teaches_tool and layout in DECLARABLE and declared_rng.random() < tools_declared:
            extra["system"] = True
        if layout == "tool" and declared_rng.random() < TYPED_TOOL_SHARE:
            extra["typed"] = True
        key = f"{layout}/{'voice' if voice else 'text'}" + "".join(
            f"/{name}" for field, name in (("sentence", "sentence"), ("system", "declared"), ("typed", "typed"))
            if field in extra)
        counts[key] = counts.get(key, 0) + 1
        lines.append(json.dumps({"i": i, "layout": layout, "scene": scene, "answer": a, "voice": voice,
                                 "seed": int(rng.integers(2**62)), **extra}))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    os.replace(tmp, path)
    return counts

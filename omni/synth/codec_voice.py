"""The default world's speech in the assistant's voice, for the codec that must say it.

The default model (omni/synth) speaks its answers in one voice (ASSISTANT_VOICE); a codec
that must reproduce that speaker trains on it saying exactly those answers
(`omni data codec-voice`, then `omni train-codec --data` on the folder). Renderings vary
speed and pitch around the voice's own; the ones that `omni data check-voice --renderings`
judges are never drawn, so that judge hears speech the codec never saw.
"""

from __future__ import annotations

import os
import random

import numpy as np

from speech.audio_io import save_wav
from speech.data import pack_npz
from speech.synth import EVAL_VOICES, random_sentence, synthesize

from .audio import to_float
from .questions import all_question_texts, answer_space
from .recognize import RENDERING_OFFSETS, voice_renderings
from .voices import ASSISTANT_VOICE, Voice
from .voices import synthesize as world_synthesize

WORLD_SPEED_RANGE = (120, 165)
WORLD_PITCH_RANGE = (35, 65)
WORLD_TAIL_S = (0.1, 0.3)  # silence after each utterance (an answer decoded alone is followed by zeros)


def _judged_renderings() -> set[tuple[int, int]]:
    return {(v.speed, v.pitch) for v in voice_renderings(ASSISTANT_VOICE, len(RENDERING_OFFSETS))}


def parse_focus(spec: str) -> dict[str, int]:
    """"one:8,good morning:4" -> {"one": 8, "good morning": 4}: answers said that many times a round."""
    out: dict[str, int] = {}
    known = set(answer_space())
    for part in filter(None, (p.strip() for p in spec.split(","))):
        text, sep, times = part.rpartition(":")
        if not sep or not times.strip().isdigit() or int(times) < 1:
            raise ValueError(f"{part!r}: expected ANSWER:TIMES with TIMES >= 1, e.g. one:8")
        if text.strip() not in known:
            raise ValueError(f"{text.strip()!r} is not an answer of the default world")
        out[text.strip()] = int(times)
    return out


def answer_round(focus: dict[str, int] | None = None) -> list[str]:
    """One round of answers: every answer once, those in `focus` that many times."""
    focus = focus or {}
    return [a for a in answer_space() for _ in range(focus.get(a, 1))]


def generate_world_utterances(seconds: float, seed: int = 0, answer_share: float = 0.75, progress: bool = True,
                              focus: dict[str, int] | None = None):
    """Yield (text, speed, pitch, float32 audio with trailing silence) in the assistant's voice.

    Answers come in turn (every answer once per shuffled round; an answer in `focus`
    that many times a round: the ones the codec says worst get more of the data),
    questions of the world's train split at random; each utterance gets its own
    speed and pitch."""
    from tqdm import tqdm

    rng = random.Random(seed)
    questions = all_question_texts("train")
    answers = answer_round(focus)
    judged = _judged_renderings()
    queue: list[str] = []
    total = 0.0
    bar = tqdm(total=round(seconds), unit="s", desc="assistant voice", disable=not progress)
    while total < seconds:
        if rng.random() < answer_share:
            if not queue:
                queue = rng.sample(answers, len(answers))
            text = queue.pop()
        else:
            text = rng.choice(questions)
        while True:
            speed, pitch = rng.randint(*WORLD_SPEED_RANGE), rng.randint(*WORLD_PITCH_RANGE)
            if (speed, pitch) not in judged:
                break
        speech = to_float(world_synthesize(text, Voice(ASSISTANT_VOICE.name, speed, pitch, ASSISTANT_VOICE.word_gap)))
        audio = np.concatenate([speech, np.zeros(int(rng.uniform(*WORLD_TAIL_S) * 16000), np.float32)])
        total += len(audio) / 16000
        bar.update(round(len(audio) / 16000, 2))
        yield text, speed, pitch, audio
    bar.close()


def generate_world_corpus(out_dir: str, minutes: float, seed: int = 0, answer_share: float = 0.75,
                          progress: bool = True, focus: dict[str, int] | None = None) -> list[str]:
    """Write ~`minutes` of the assistant's voice saying the world's answers (+ questions) as WAVs + transcripts.tsv."""
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    with open(os.path.join(out_dir, "transcripts.tsv"), "w") as meta:
        for i, (text, speed, pitch, audio) in enumerate(generate_world_utterances(minutes * 60, seed, answer_share, progress, focus)):
            path = os.path.join(out_dir, f"world{i:05d}.wav")
            save_wav(path, audio, 16000)
            meta.write(f"{os.path.basename(path)}\t{ASSISTANT_VOICE.name}\t{speed}\t{pitch}\t{text}\n")
            paths.append(path)
    return paths


def write_eval_pack(path: str, seed: int = 1000, user_utterances: int = 12) -> dict:
    """A held-out evaluation pack for `--eval-data`: label "assistant" = every answer in the
    assistant's own rendering (judged, never trained on), label "users" = the held-out voices
    (EVAL_VOICES) saying random sentences (not the benchmark's grammar)."""
    rng = random.Random(seed)
    clips, labels = [], []
    for a in answer_space():
        clips.append(to_float(world_synthesize(a, ASSISTANT_VOICE)))
        labels.append("assistant")
    for i in range(user_utterances):
        voice = EVAL_VOICES[i % len(EVAL_VOICES)]
        clips.append(synthesize(random_sentence(rng), voice, rng.randint(140, 180), rng.randint(35, 65)))
        labels.append("users")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    pack_npz(clips, path, labels=labels)
    return {"clips": len(clips), "assistant": labels.count("assistant"), "users": labels.count("users"),
            "seconds": round(sum(len(c) for c in clips) / 16000, 1), "mb": round(os.path.getsize(path) / 1e6, 2)}

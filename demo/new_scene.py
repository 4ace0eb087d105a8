"""A new scene of the default model's world, made on the spot for the virtual camera.

The shipped scene folder (`demo.scenes`) holds a few held-out scenes whose questions
were checked through the server. "new scene" draws another one from the world's
held-out split (content never in the model's training, `omni.synth.world`), renders
it as the camera would show it (a still, or a video's frames at 2 FPS), and words a
few questions about it in held-out wordings, spoken by held-out voices (espeak-ng),
with their answers. Nobody has checked how the model does on it: the page shows no ✓.

Only the synthetic world is imported (numpy, PIL, espeak-ng; never torch or the
model): the demo stays a client of the server.
"""

from __future__ import annotations

import threading
import wave
from pathlib import Path

import numpy as np

from demo.scenes import Question, Scene

FPS = 2.0  # the virtual camera's frame rate, as the model was trained
SIZE = 224
QUESTIONS = 4  # questions per new scene, one per kind of question where the scene has enough


def _write_png(frame: np.ndarray, path: Path) -> None:
    from PIL import Image

    Image.fromarray(frame).save(path)


def _write_wav(samples: np.ndarray, path: Path, rate: int = 16000) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.asarray(samples, dtype="<i2").tobytes())


def make_scene(root: Path, name: str, seed: int, questions: int = QUESTIONS) -> Scene:
    """Scene `name` drawn with `seed` into folder `root` (created): frames, question clips."""
    from omni.synth.questions import make_question, scene_caption, visual_queries
    from omni.synth.render import render_clip
    from omni.synth.voices import sample_voice, synthesize
    from omni.synth.world import sample_scene

    rng = np.random.default_rng(seed)
    world = sample_scene(seed, "heldout", 0)
    root.mkdir(parents=True, exist_ok=True)
    frames = []
    for k, frame in enumerate(render_clip(world, FPS, SIZE)):
        path = root / f"{name}_{k:02d}.png"
        _write_png(frame, path)
        frames.append(path)
    kinds = [(key, qs) for key, qs in visual_queries(world).items() if qs]
    rng.shuffle(kinds)
    asked = []
    for (family, kind), queries in kinds[:questions]:
        q = make_question(world, family, kind, queries[int(rng.integers(len(queries)))], "heldout", rng)
        clip = root / f"{name}_q{len(asked)}.wav"
        _write_wav(synthesize(q.text, sample_voice(rng, "heldout")), clip)
        asked.append(Question(q.text, q.answer, clip, None))
    return Scene(name, frames[0], scene_caption(world), tuple(asked), tuple(frames), fresh=True)


class SceneMaker:
    """Makes new scenes into one folder for the life of the page (shared by its tabs)."""

    def __init__(self, root: Path, seed: int | None = None) -> None:
        self.root = root
        self.rng = np.random.default_rng(seed)
        self.lock = threading.Lock()
        self.made = 0

    def __call__(self) -> Scene:
        with self.lock:
            self.made += 1
            name, seed = f"new{self.made:03d}", int(self.rng.integers(1 << 31))
        return make_scene(self.root, name, seed)

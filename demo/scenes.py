"""The demo's virtual camera: scenes of the default model's world with questions about them.

A scene folder (`omni data demo-scenes` writes one into a model directory's `demo/`)
holds held-out stills, each with a few held-out spoken questions (16 kHz WAVs in
voices the model never heard) and whether the model answered each right when asked
the way this page asks (through the server; else offline, where that is all it says).
The page streams the chosen still to the server as the camera would (2 frames a
second) and plays a question into the conversation as the microphone would. Read with
the standard library, numpy and PIL only: the demo never imports the model.
"""

from __future__ import annotations

import io
import json
import threading
import wave
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

QUESTION_PAD_S = (0.3, 1.5)  # silence before and after a played question (the end of turn needs a pause)


@dataclass(frozen=True)
class Question:
    text: str
    answer: str
    audio: Path
    ok: bool | None  # answered right as the page asks it (None: not judged)
    tool: str | None = None  # a request for this function tool (the world's light), not a question


@dataclass(frozen=True)
class Scene:
    id: str
    image: Path  # the first frame (the preview)
    caption: str
    questions: tuple[Question, ...]
    frames: tuple[Path, ...] = ()  # a video's frames at 2 FPS; a still: (image,)
    fresh: bool = False  # made just now by "new scene" (demo.new_scene): nobody checked its questions

    def label(self, k: int) -> str:
        kind = "video, at the start: " if len(self.frames) > 1 else ""
        name = f"{'new ' if self.fresh else ''}scene {k + 1}"
        return f"{name}: {kind}{self.caption}" if self.caption else name

    def frame_at(self, seconds: float) -> Path:
        """The camera's frame `seconds` after the video (re)started: 2 FPS, then the last
        frame held for 1 s, then again from the start (a still: always the one frame)."""
        n = len(self.frames)
        if n <= 1:
            return self.image
        k = int(max(0.0, seconds) * 2) % (n + 2)
        return self.frames[min(k, n - 1)]


def _ok(q: dict) -> bool | None:
    """The judgement the page shows: the streamed one where it was made, else the offline one."""
    return q.get("stream_ok") if q.get("stream_ok") is not None else q.get("offline_ok")


class SceneSet:
    """The scenes of one folder, in order; `load` returns None where there is no folder.
    `requests` (the folder's, where the model's card names the world's light): the light asked
    for, listed after every scene's own questions, new scenes' too."""

    def __init__(self, root: Path, scenes: list[Scene], requests: tuple[Question, ...] = ()) -> None:
        self.root, self.requests = root, requests
        self.scenes = [self._with_requests(s) for s in scenes]
        self.lock = threading.Lock()

    def _with_requests(self, scene: Scene) -> Scene:
        # a new scene's questions are unchecked, and so are the requests with it on the camera
        requests = tuple(replace(q, ok=None) for q in self.requests) if scene.fresh else self.requests
        return replace(scene, questions=scene.questions + requests)

    def add(self, scene: Scene) -> str:
        """Append a scene (a new one, shared by every tab of the page); -> its label."""
        with self.lock:
            self.scenes.append(self._with_requests(scene))
            return scene.label(len(self.scenes) - 1)

    @classmethod
    def load(cls, root: str | Path | None) -> "SceneSet | None":
        if root is None or not (Path(root) / "scenes.json").is_file():
            return None
        root = Path(root)
        try:
            doc = json.loads((root / "scenes.json").read_text())
            question = lambda q: Question(q["text"], q["answer"], root / q["audio"], _ok(q), q.get("tool"))
            scenes = [Scene(s["id"], root / s["image"], str(s.get("caption") or ""),
                            tuple(question(q) for q in s["questions"]),
                            tuple(root / f for f in s.get("frames") or [s["image"]]))
                      for s in doc["scenes"]]
            requests = tuple(question(q) for q in doc.get("requests") or [])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{root}/scenes.json is not a demo scene list ({exc})") from None
        missing = [str(p) for s in scenes for p in (s.image, *s.frames, *[q.audio for q in s.questions])
                   if not p.is_file()] + [str(q.audio) for q in requests if not q.audio.is_file()]
        if missing:
            raise ValueError(f"{root}: scenes.json names missing files: {missing[:3]}")
        return cls(root, scenes, requests) if scenes else None

    def choices(self) -> list[str]:
        return [s.label(k) for k, s in enumerate(self.scenes)]

    def by_label(self, label: str | None) -> Scene | None:
        for k, s in enumerate(self.scenes):
            if s.label(k) == label:
                return s
        return None

    def next_label(self, label: str | None) -> str:
        labels = self.choices()
        k = labels.index(label) if label in labels else -1
        return labels[(k + 1) % len(labels)]


def question_choices(scene: Scene | None) -> list[str]:
    """One entry per question; the ones the model answered right offline are marked."""
    if scene is None:
        return []
    return [q.text + ("  ✓" if q.ok else "") for q in scene.questions]


def question_for(scene: Scene | None, choice: str | None) -> Question | None:
    if scene is None or not choice:
        return None
    for q, c in zip(scene.questions, question_choices(scene)):
        if c == choice:
            return q
    return None


def ask_note(scene: Scene | None) -> str:
    """The page's Markdown of what to ask about the scene."""
    if scene is None:
        return "No scenes of the model's world here: point the webcam at something and talk."
    note = "**Ask about this scene** (say it, or play it in a held-out voice below)."
    if any(q.tool for q in scene.questions):  # the folder's light requests
        note += " Or ask the assistant to switch the light (the last suggestions): it calls the page's light."
    if scene.fresh:
        note += (" A new scene of the model's world, never seen in its training; nobody has checked how the "
                 "model does on these questions (it is small, and these voices and wordings are new to it).")
    elif any(q.ok is not None for q in scene.questions):
        note += (" ✓: the model answered it right when asked this way; it got the others wrong (it is small, "
                 "and these voices and wordings are new to it).")
    return note


def read_question(q: Question) -> np.ndarray:
    """The question's 16 kHz mono samples as float32 in [-1, 1]."""
    with wave.open(str(q.audio)) as w:
        if w.getnchannels() != 1 or w.getsampwidth() != 2 or w.getframerate() != 16000:
            raise ValueError(f"{q.audio}: expected 16 kHz mono 16-bit PCM")
        x = np.frombuffer(w.readframes(w.getnframes()), np.int16)
    return x.astype(np.float32) / 32768.0


def pad_question(pcm: np.ndarray) -> np.ndarray:
    """A question's samples as the page plays them: QUESTION_PAD_S of silence before and after."""
    lead, tail = (np.zeros(int(16000 * t), np.float32) for t in QUESTION_PAD_S)
    return np.concatenate([lead, pcm, tail])


def frame_jpeg(image: np.ndarray | Path, quality: int = 95) -> bytes:
    """A camera frame as JPEG bytes (the only format `input_image_buffer.append` takes)."""
    from PIL import Image

    if isinstance(image, Path):
        with Image.open(image) as im:
            rgb = im.convert("RGB")
    else:
        rgb = Image.fromarray(np.asarray(image, dtype=np.uint8)).convert("RGB")
    buf = io.BytesIO()
    rgb.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()

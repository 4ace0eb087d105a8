"""The synthetic world: its vocabulary, the scene description, and scene sampling.

A scene is 1-4 flat shapes (circle, square, triangle, star) in one of six colors,
each in its own slot of a five-slot layout (left, right, top, bottom, center).
Video scenes may have objects moving in a direction (left, right, up, down).
Everything a question can ask about is in the `Scene` record; rendering
(`render.py`) and questions (`questions.py`) read it, never the pixels.

Splits are by scene *content*: a scene's signature (its objects' shape, color,
slot and motion, plus still/video) hashes into train or held-out, so a held-out
scene never appears in train, whatever the seeds.
"""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import asdict, dataclass, field

import numpy as np

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star")
# Saturated, far apart in RGB so they stay distinct at 112 px and through H.264.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 38, 38),
    "green": (34, 177, 76),
    "blue": (40, 90, 235),
    "yellow": (245, 215, 35),
    "purple": (150, 55, 205),
    "white": (240, 240, 240),
}
COLOR_NAMES: tuple[str, ...] = tuple(COLORS)
# Slot centers in unit canvas coordinates (x right, y down).
SLOTS: dict[str, tuple[float, float]] = {
    "center": (0.5, 0.5),
    "left": (0.18, 0.5),
    "right": (0.82, 0.5),
    "top": (0.5, 0.18),
    "bottom": (0.5, 0.82),
}
POSITIONS: tuple[str, ...] = tuple(SLOTS)
DIRECTIONS: dict[str, tuple[float, float]] = {
    "left": (-1.0, 0.0),
    "right": (1.0, 0.0),
    "up": (0.0, -1.0),
    "down": (0.0, 1.0),
}
NUMBER_WORDS: tuple[str, ...] = ("zero", "one", "two", "three", "four")
MAX_OBJECTS = 4
SPLITS: tuple[str, ...] = ("train", "heldout")
HELDOUT_PERCENT = 15  # share of scene signatures reserved for the held-out split


@dataclass(frozen=True)
class SceneObject:
    shape: str
    color: str
    slot: str  # where it starts (and stays, unless it moves)
    x: float  # start center, unit canvas coordinates
    y: float
    radius: float  # unit canvas (circumscribed radius)
    angle: float  # rotation in degrees (squares, triangles, stars)
    direction: str | None = None  # None = static
    travel: float = 0.0  # distance covered over the whole clip, unit canvas

    def center_at(self, t: float, duration: float) -> tuple[float, float]:
        """Center at time t (seconds); motion is uniform over the clip."""
        if self.direction is None or duration <= 0:
            return self.x, self.y
        dx, dy = DIRECTIONS[self.direction]
        frac = min(max(t / duration, 0.0), 1.0)
        return self.x + dx * self.travel * frac, self.y + dy * self.travel * frac

    @property
    def moving(self) -> bool:
        return self.direction is not None


@dataclass(frozen=True)
class Scene:
    scene_id: str
    split: str
    kind: str  # "image" or "video"
    duration: float  # seconds; 0 for still images
    background: tuple[int, int, int]
    objects: tuple[SceneObject, ...] = field(default_factory=tuple)

    @property
    def movers(self) -> list[SceneObject]:
        return [o for o in self.objects if o.moving]

    def signature(self) -> str:
        """Content identity used for the split (ignores jitter, size, background)."""
        parts = sorted(f"{o.shape}.{o.color}.{o.slot}.{o.direction or '-'}" for o in self.objects)
        return self.kind + "|" + ",".join(parts)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["background"] = list(self.background)
        return d

    @staticmethod
    def from_dict(d: dict) -> "Scene":
        try:
            objs = tuple(SceneObject(**o) for o in d["objects"])
            return Scene(
                scene_id=d["scene_id"],
                split=d["split"],
                kind=d["kind"],
                duration=float(d["duration"]),
                background=tuple(d["background"]),
                objects=objs,
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed scene record {d.get('scene_id', '?')!r}: {exc}") from None


@functools.lru_cache(maxsize=65536)
def stable_hash(text: str) -> int:
    """Process-independent hash (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def split_of_signature(signature: str) -> str:
    return "heldout" if stable_hash("scene:" + signature) % 100 < HELDOUT_PERCENT else "train"


def rng_for(seed: int, *keys: str | int) -> np.random.Generator:
    """Independent generator per (seed, keys): item i never depends on items before it."""
    words = [seed & 0xFFFFFFFF] + [k if isinstance(k, int) else stable_hash(k) & 0xFFFFFFFF for k in keys]
    return np.random.default_rng(np.random.SeedSequence(words))


# Stars and triangles reach beyond `radius` (render.py scales them up to 1.15x
# and shifts triangles down): collision and border tests use this bound.
EXTENT = 1.25


def clear_path(obj: SceneObject, others: list[SceneObject], duration: float, gap: float = 0.02) -> bool:
    """True when `obj` stays inside the canvas and apart from every other object, all clip long."""
    steps = 20 if obj.moving or any(o.moving for o in others) else 0
    for step in range(steps + 1):
        t = duration * step / max(steps, 1)
        x, y = obj.center_at(t, duration)
        ext = obj.radius * EXTENT
        if not (ext <= x <= 1 - ext and ext <= y <= 1 - ext):
            return False
        for o in others:
            ox, oy = o.center_at(t, duration)
            if math.hypot(x - ox, y - oy) < (obj.radius + o.radius) * EXTENT + gap:
                return False
    return True


def _sample_objects(rng: np.random.Generator, kind: str, duration: float) -> list[SceneObject]:
    n = int(rng.integers(1, MAX_OBJECTS + 1))
    slots = list(rng.permutation(POSITIONS)[:n])
    # Duplicate (shape, color) pairs are allowed on purpose: counting needs them.
    objs: list[SceneObject] = []
    for slot in slots:
        sx, sy = SLOTS[slot]
        objs.append(
            SceneObject(
                shape=str(rng.choice(SHAPES)),
                color=str(rng.choice(COLOR_NAMES)),
                slot=str(slot),
                x=round(sx + float(rng.uniform(-0.02, 0.02)), 4),
                y=round(sy + float(rng.uniform(-0.02, 0.02)), 4),
                radius=round(float(rng.uniform(0.085, 0.115)), 4),
                angle=round(float(rng.uniform(-15, 15)), 2),
            )
        )
    if kind != "video":
        return objs
    # Videos: usually one mover, sometimes two, sometimes none ("nothing is moving").
    num_movers = int(rng.choice([0, 1, 1, 1, 2]))
    for i in [int(j) for j in rng.permutation(len(objs))][:num_movers]:
        travel = round(float(rng.uniform(0.22, 0.32)), 4)
        for d in [str(x) for x in rng.permutation(list(DIRECTIONS))]:
            cand = SceneObject(**{**asdict(objs[i]), "direction": d, "travel": travel})
            if clear_path(cand, objs[:i] + objs[i + 1 :], duration):
                objs[i] = cand
                break
    return objs


def sample_scene(seed: int, split: str, index: int, video_fraction: float = 0.4, max_tries: int = 200) -> Scene:
    """Scene `index` of `split`: deterministic in (seed, split, index) alone."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {SPLITS}")
    rng = rng_for(seed, "scene", split, index)
    for _ in range(max_tries):
        kind = "video" if rng.random() < video_fraction else "image"
        duration = round(float(rng.uniform(2.0, 6.0)), 1) if kind == "video" else 0.0
        objs = _sample_objects(rng, kind, duration)
        if not all(clear_path(o, objs[:i] + objs[i + 1 :], duration) for i, o in enumerate(objs)):
            continue  # jitter made two shapes touch: draw again
        base = int(rng.integers(12, 56))
        tint = rng.integers(-10, 11, size=3)
        background = tuple(int(np.clip(base + t, 0, 70)) for t in tint)
        scene = Scene(f"{split}-s{index:06d}", split, kind, duration, background, tuple(objs))  # type: ignore[arg-type]
        if split_of_signature(scene.signature()) == split:
            return scene
    raise RuntimeError(f"no {split} scene found for seed {seed}, index {index} in {max_tries} tries")

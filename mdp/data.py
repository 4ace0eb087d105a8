"""Local manifests of interleaved training samples, and their batching.

A manifest is a JSON-lines file; each line is one sample, a list of segments in
sequence order:

    {"segments": [
        {"text": [17, 42, 99]},                               # plain text ids (pure-text loss)
        {"image": "img/0.pt"},                                # {"patches": [n, 1176], "grid": [h, w]}
        {"video": "vid/0.pt"},                                # {"patches": [n, 1176], "grids": [[h, w], ...]}
        {"audio": "aud/0.pt"},                                # {"features": [frames, dim]} encoder input
        {"speech": {"text": [5, 6], "codes": [[c0, c1, c2, c3], ...]}}   # spoken reply: text + 4 codebooks
    ]}

Paths are relative to the manifest. Modality segments become `n` placeholder
positions (`image_pad_id` / `audio_pad_id`) whose embeddings the encoders provide;
`n` comes from the encoder (`num_tokens`). Labels follow the stage-1 loss: text
targets are next-token ids (category pure-text or audio-text), the four audio
heads predict the codec frame of the next position (category audio, and
first-audio for the first frame of each spoken reply).

The global batch of step s is a pure function of (seed, s), so a resumed run
reads exactly the stream the uninterrupted run would have read.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Callable

import torch

IGNORE = -100
# label categories -> stage-1 loss weights (spec 1.5). CAT_AUDIO_ONLY: a spoken reply's rows
# whose speech is trained and whose text is not (`curriculum.speech_swap`): audio labels only
CAT_NONE, CAT_TEXT, CAT_AUDIO_TEXT, CAT_AUDIO_ONLY = 0, 1, 2, 3
MODALITIES = ("image", "video", "audio")


class ManifestError(ValueError):
    pass


@dataclass
class ModalityItem:
    kind: str  # image | video | audio
    data: dict  # the loaded tensors
    num_tokens: int
    cost: float  # encoder work estimate for BalanceData


@dataclass
class Sample:
    ids: torch.Tensor  # [L] input ids
    codec: torch.Tensor  # [L, 4] codec ids fed at the input (pad where none)
    text_labels: torch.Tensor  # [L]
    text_cat: torch.Tensor  # [L] CAT_*
    audio_labels: torch.Tensor  # [L, 4]
    first_audio: torch.Tensor  # [L] bool: first frame of a spoken reply
    items: list[ModalityItem] = field(default_factory=list)
    answer: torch.Tensor | None = None  # [L] bool: labels of a question's answer (`answer_weight`); None: none


@dataclass
class Layout:
    """Ids the sequence builder needs; they come from the recipe."""

    image_pad_id: int
    audio_pad_id: int
    pad_id: int
    codec_pad: int = 3


def default_layout(pad_id: int, codec_pad: int) -> Layout:
    """Placeholder ids of the project tokenizer (`omni.tokenizer`), which manifests use."""
    from omni.tokenizer import load_tokenizer

    sp = load_tokenizer().special
    return Layout(image_pad_id=sp.image_pad, audio_pad_id=sp.audio_pad, pad_id=pad_id, codec_pad=codec_pad)


def iter_jsonl(path: str, what: str = "manifest"):
    """Yield (line number, record) of a JSON-lines file; blank lines are skipped.
    A missing file or a line that is not JSON raises ManifestError naming it."""
    if not os.path.isfile(path):
        raise ManifestError(f"{what} {path} does not exist")
    with open(path) as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield n, json.loads(line)
            except json.JSONDecodeError as e:
                raise ManifestError(f"{path}:{n}: not JSON ({e})") from None


def read_manifest(path: str) -> list[list[dict]]:
    """Parse and validate the manifest (structure only; files are read lazily)."""
    out = []
    for n, rec in iter_jsonl(path):
        segs = rec.get("segments") if isinstance(rec, dict) else None
        if not isinstance(segs, list) or not segs:
            raise ManifestError(f"{path}:{n}: field 'segments' must be a non-empty list")
        for j, seg in enumerate(segs):
            if not isinstance(seg, dict) or len(seg) != 1:
                raise ManifestError(f"{path}:{n}: segments[{j}] must be an object with one key")
            (key, val), = seg.items()
            if key == "text":
                if not (isinstance(val, list) and all(isinstance(t, int) and t >= 0 for t in val)):
                    raise ManifestError(f"{path}:{n}: segments[{j}].text must be a list of ids >= 0")
            elif key in MODALITIES:
                if not isinstance(val, str):
                    raise ManifestError(f"{path}:{n}: segments[{j}].{key} must be a file path")
            elif key == "speech":
                codes = val.get("codes") if isinstance(val, dict) else None
                if not (isinstance(codes, list) and codes and all(isinstance(c, list) and len(c) == 4 for c in codes)):
                    raise ManifestError(f"{path}:{n}: segments[{j}].speech.codes must be a list of 4-code frames")
            else:
                raise ManifestError(
                    f"{path}:{n}: segments[{j}] has unknown kind {key!r} (text, image, video, audio, speech)"
                )
        out.append(segs)
    if not out:
        raise ManifestError(f"manifest {path} has no samples")
    return out


class Dataset:
    """Turns manifest samples into `Sample`s; `num_tokens(kind, data)` comes from the encoders."""

    def __init__(
        self,
        path: str,
        layout: Layout,
        seq_len: int,
        num_tokens: Callable[[str, dict], int],
        cost: Callable[[str, dict], float],
    ) -> None:
        self.path, self.root = path, os.path.dirname(os.path.abspath(path))
        self.records = read_manifest(path)
        self.layout, self.seq_len = layout, seq_len
        self.num_tokens, self.cost = num_tokens, cost

    def __len__(self) -> int:
        return len(self.records)

    def _load(self, rel: str, n: int) -> dict:
        full = os.path.join(self.root, rel)
        if not os.path.isfile(full):
            raise ManifestError(f"{self.path}: sample {n} refers to missing file {rel}")
        return torch.load(full, map_location="cpu", weights_only=True)

    def sample(self, n: int) -> Sample:
        lay = self.layout
        ids: list[int] = []
        codec: list[list[int]] = []
        text_cat: list[int] = []  # category of the *target* at each position
        audio_tgt: list[list[int]] = []
        first: list[bool] = []
        items: list[ModalityItem] = []
        pad4 = [lay.codec_pad] * 4
        for seg in self.records[n]:
            (key, val), = seg.items()
            if key == "text":
                ids += val
                codec += [pad4] * len(val)
                text_cat += [CAT_TEXT] * len(val)
                audio_tgt += [[IGNORE] * 4] * len(val)
                first += [False] * len(val)
            elif key in MODALITIES:
                data = self._load(val, n)
                k = self.num_tokens(key, data)
                items.append(ModalityItem(key, data, k, self.cost(key, data)))
                ids += [lay.image_pad_id if key in ("image", "video") else lay.audio_pad_id] * k
                codec += [pad4] * k
                text_cat += [CAT_NONE] * k
                audio_tgt += [[IGNORE] * 4] * k
                first += [False] * k
            else:  # speech: text and codec frames aligned position by position (text padded)
                text, codes = list(val.get("text", [])), val["codes"]
                m = max(len(text), len(codes))
                text = text + [lay.pad_id] * (m - len(text))
                rows = codes + [pad4] * (m - len(codes))
                ids += text
                codec += rows
                text_cat += [CAT_AUDIO_TEXT] * m
                audio_tgt += rows
                first += [True] + [False] * (m - 1)
        L = len(ids)
        if L > self.seq_len + 1:
            raise ManifestError(f"{self.path}: sample {n} has {L} positions > seq_len + 1 = {self.seq_len + 1}")
        ids_t = torch.tensor(ids, dtype=torch.long)
        # next-position targets; pad to seq_len + 1 first
        pad = self.seq_len + 1 - L
        ids_p = torch.cat([ids_t, torch.full((pad,), lay.pad_id, dtype=torch.long)])
        codec_p = torch.tensor(codec + [pad4] * pad, dtype=torch.long)
        cat_p = torch.tensor(text_cat + [CAT_NONE] * pad, dtype=torch.long)
        aud_p = torch.tensor(audio_tgt + [[IGNORE] * 4] * pad, dtype=torch.long)
        first_p = torch.tensor(first + [False] * pad)
        text_labels = torch.where(cat_p[1:] > CAT_NONE, ids_p[1:], IGNORE)
        return Sample(
            ids=ids_p[:-1],
            codec=codec_p[:-1],
            text_labels=text_labels,
            text_cat=cat_p[1:],
            audio_labels=aud_p[1:],
            first_audio=first_p[1:],
            items=items,
        )

    def step_indices(self, seed: int, step: int, global_batch: int) -> list[int]:
        """Sample ids of one global batch: epochs of seeded permutations, read in order."""
        out, pos = [], step * global_batch
        while len(out) < global_batch:
            epoch, off = divmod(pos, len(self))
            perm = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed * 100003 + epoch))
            take = min(global_batch - len(out), len(self) - off)
            out += perm[off : off + take].tolist()
            pos += take
        return out


def shard_batch(dataset: Dataset, indices: list[int], dp: int) -> list[list[int]]:
    """Split a global batch over DP ranks, longest samples dealt round-robin
    (similar load per DP group, fewer EP bubbles)."""
    if len(indices) % dp:
        raise ValueError(f"global batch {len(indices)} is not divisible by dp={dp}")
    lengths = {i: sum(len(next(iter(s.values()))) if isinstance(next(iter(s.values())), list) else 1
                      for s in dataset.records[i]) for i in indices}
    order = sorted(range(len(indices)), key=lambda j: (-lengths[indices[j]], j))
    return [sorted(indices[j] for j in order[r::dp]) for r in range(dp)]


def stack(samples: list[Sample]) -> dict[str, torch.Tensor]:
    return {
        "ids": torch.stack([s.ids for s in samples]),
        "codec": torch.stack([s.codec for s in samples]),
        "text_labels": torch.stack([s.text_labels for s in samples]),
        "text_cat": torch.stack([s.text_cat for s in samples]),
        "audio_labels": torch.stack([s.audio_labels for s in samples]),
        "first_audio": torch.stack([s.first_audio for s in samples]),
        "answer": torch.stack([s.answer if s.answer is not None else torch.zeros_like(s.first_audio) for s in samples]),
    }

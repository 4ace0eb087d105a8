"""Writing a training pack (`pack.py` describes the format) from a written split.

Frames are re-rendered from the scene records at the pack's size (no lossy video
round trip). Question clips are stored clean as 8-bit mu-law, lzma-compressed
(about 11 KB per second of speech); noise is added when reading. If the clips
exceed the size budget, extra renderings of a text are dropped first (least used
first) and their samples are pointed at a kept rendering of the same text: no
sample is lost, only voice variety. If even one rendering per text does not fit,
writing fails and says so.
"""

from __future__ import annotations

import json
import lzma
import os
import zlib
from collections import Counter
from pathlib import Path

import numpy as np

from .audio import NOISE_KINDS, mulaw_encode, read_wav, to_float
from .build import read_jsonl
from .pack import PACK_VERSION
from .questions import FAMILIES
from .render import render_clip
from .world import Scene

LZMA_PRESET = 9 | lzma.PRESET_EXTREME


def _mulaw_of(path: Path) -> np.ndarray:
    samples, rate = read_wav(path)
    if rate != 16000:
        raise ValueError(f"{path}: {rate} Hz, the pack stores 16 kHz audio")
    return mulaw_encode(to_float(samples))


def _blob(chunks: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(chunks) + 1, np.int64)
    offsets[1:] = np.cumsum([len(c) for c in chunks])
    stream = np.concatenate(chunks) if chunks else np.zeros(0, np.uint8)
    return np.frombuffer(lzma.compress(stream.tobytes(), preset=LZMA_PRESET), np.uint8), offsets


def _choose_clips(rows: list[dict], clip_bytes: dict[str, int], budget: int | None) -> dict[str, str]:
    """Map every used clip to the clip stored for it, dropping extra renderings to fit `budget` bytes."""
    uses = Counter(r["question_clip"] for r in rows)
    by_text: dict[str, list[str]] = {}
    for r in rows:
        lst = by_text.setdefault(r["question_text"], [])
        if r["question_clip"] not in lst:
            lst.append(r["question_clip"])
    for lst in by_text.values():
        lst.sort(key=lambda c: (-uses[c], c))
    firsts = [lst[0] for lst in by_text.values()]
    extras = sorted((c for lst in by_text.values() for c in lst[1:]), key=lambda c: (-uses[c], c))
    kept = list(firsts)
    if budget is not None and sum(clip_bytes[c] for c in firsts) > budget:
        need = sum(clip_bytes[c] for c in firsts) / 2**20
        raise ValueError(
            f"one rendering per question text needs ~{need:.1f} MB of compressed audio, over the budget of "
            f"{budget / 2**20:.1f} MB: raise --max-mb or build the split with fewer scenes / texts"
        )
    used = sum(clip_bytes[c] for c in kept)
    for c in extras:
        if budget is None or used + clip_bytes[c] <= budget:
            kept.append(c)
            used += clip_bytes[c]
    keep = set(kept)
    return {c: (c if c in keep else lst[0]) for lst in by_text.values() for c in lst}


def write_pack(
    data_dir: str | Path,
    out_path: str | Path,
    frame_size: int = 112,
    fps: float = 2.0,
    max_mb: float | None = 30.0,
    progress: bool = True,
    limit: int | None = None,
) -> dict:
    """Pack the split in data_dir into out_path (.npz); returns a summary dict.

    limit: keep only this many samples, taken at an even stride through the
    manifest (so every family and scene kind stays represented).
    """
    root = Path(data_dir)
    if frame_size % 2 or frame_size < 16:
        raise ValueError(f"frame_size must be even and >= 16, got {frame_size}")
    rows = read_jsonl(root / "manifest.jsonl")
    if not rows:
        raise ValueError(f"{root / 'manifest.jsonl'} holds no samples")
    if limit is not None and 0 < limit < len(rows):
        rows = [rows[int(k)] for k in np.linspace(0, len(rows) - 1, limit).round().astype(int)]
    scenes = {d["scene_id"]: Scene.from_dict(d) for d in read_jsonl(root / "scenes.jsonl")}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=4, desc="pack", unit="step", dynamic_ncols=True)

    # 1. frames of every scene a sample uses, in first-use order
    scene_ids = list(dict.fromkeys(r["scene_id"] for r in rows if r["scene_id"]))
    missing = [s for s in scene_ids if s not in scenes]
    if missing:
        raise ValueError(f"{root / 'manifest.jsonl'}: scene ids {missing[:3]} are not in scenes.jsonl")
    clips_of_scene = [render_clip(scenes[s], fps, frame_size) for s in scene_ids]
    frames = np.concatenate(clips_of_scene) if clips_of_scene else np.zeros((0, frame_size, frame_size, 3), np.uint8)
    scene_offset = np.zeros(len(scene_ids) + 1, np.int64)
    scene_offset[1:] = np.cumsum([len(c) for c in clips_of_scene])
    if bar:
        bar.update()

    # 2. question clips, within the budget (answers and frames are counted first)
    answer_texts = sorted({r["answer_text"] for r in rows})
    answer_path = {r["answer_text"]: r["answer_audio"] for r in rows}
    answer_chunks = [_mulaw_of(root / answer_path[a]) for a in answer_texts]
    answer_blob, answer_offset = _blob(answer_chunks)
    codes, code_offset = _answer_codes(root, rows, answer_texts)
    # What np.savez_compressed will make of the frames (zlib), measured per scene.
    frames_bytes = sum(len(zlib.compress(c.tobytes(), 6)) for c in clips_of_scene)
    fixed = answer_blob.nbytes + codes.nbytes + frames_bytes
    all_clips = sorted({r["question_clip"] for r in rows})
    mulaw = {c: _mulaw_of(root / c) for c in all_clips}
    ratio = len(_blob([mulaw[c] for c in all_clips[:50]])[0]) / max(1, sum(len(mulaw[c]) for c in all_clips[:50]))
    clip_bytes = {c: int(len(m) * ratio) + 1 for c, m in mulaw.items()}
    budget = None if max_mb is None else int(max_mb * 2**20 * 0.97 - fixed)
    mapping = _choose_clips(rows, clip_bytes, budget)
    stored = sorted(set(mapping.values()))
    index = {c: k for k, c in enumerate(stored)}
    clip_blob, clip_offset = _blob([mulaw[c] for c in stored])
    if bar:
        bar.update()

    # 3. per-sample tables
    fam = {f: k for k, f in enumerate(FAMILIES)}
    scene_index = {s: k for k, s in enumerate(scene_ids)}
    n = len(rows)
    arrays = {
        "frames": frames,
        "scene_frame_offset": scene_offset,
        "clip_audio": clip_blob,
        "clip_offset": clip_offset,
        "answer_audio": answer_blob,
        "answer_offset": answer_offset,
        "answer_codes": codes,
        "answer_code_offset": code_offset,
        "sample_scene": np.array([scene_index[r["scene_id"]] if r["scene_id"] else -1 for r in rows], np.int32),
        "sample_clip": np.array([index[mapping[r["question_clip"]]] for r in rows], np.int32),
        "sample_answer": np.array([answer_texts.index(r["answer_text"]) for r in rows], np.int32),
        "sample_family": np.array([fam[r["family"]] for r in rows], np.int8),
        "sample_noise": np.array(
            [[r["noise"][k] for k in ("snr_db", "lead_s", "tail_s", "gain_db")] for r in rows], np.float64
        ).reshape(n, 4),  # float64: float32 would move a pad by one sample
        "sample_noise_kind": np.array([NOISE_KINDS.index(r["noise"]["kind"]) for r in rows], np.int8),
        "sample_seed": np.array([r["noise"]["seed"] for r in rows], np.int64),
    }
    clip_text = {r["question_clip"]: r["question_text"] for r in rows}
    meta = {
        "version": PACK_VERSION,
        "source_split": rows[0]["split"],
        "sample_rate": 16000,
        "frame_size": frame_size,
        "fps": fps,
        "families": list(FAMILIES),
        "noise_kinds": list(NOISE_KINDS),
        "sample_ids": [r["id"] for r in rows],
        "sample_kinds": [r["kind"] for r in rows],
        "sample_wordings": [r["wording"] for r in rows],
        "sample_options": [r["options"] for r in rows],
        "sample_answer_letters": [r["answer_letter"] for r in rows],
        "sample_queries": [r["query"] for r in rows],
        "clip_texts": [clip_text[c] for c in stored],
        "clip_files": stored,
        "babble_order": [index[mapping[c]] for c in all_clips],
        "answer_texts": answer_texts,
        "scene_ids": scene_ids,
        "scene_kinds": [scenes[s].kind for s in scene_ids],
        "scenes": [scenes[s].to_dict() for s in scene_ids],
        # the codec's silent frame (omni/synth/codes.py), with the answers' codes
        "silence_frame": _silence_frame(root) if len(codes) else None,
    }
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    if bar:
        bar.update()

    # 4. write (tmp + rename) and check the budget for real
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, out)
    if bar:
        bar.update()
        bar.close()
    size_mb = out.stat().st_size / 2**20
    summary = {
        "path": str(out),
        "size_mb": round(size_mb, 2),
        "samples": n,
        "scenes": len(scene_ids),
        "frames": int(len(frames)),
        "clips_stored": len(stored),
        "clips_dropped": len(all_clips) - len(stored),
        "clip_seconds": round(int(clip_offset[-1]) / 16000, 1),
        "answers": len(answer_texts),
        "answer_codes": bool(len(codes)),
    }
    if max_mb is not None and size_mb > max_mb:
        raise ValueError(f"pack {out} is {size_mb:.1f} MB, over --max-mb {max_mb} (audio compressed worse than estimated)")
    return summary


def _answer_codes(root: Path, rows: list[dict], answer_texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Codec tokens of the answers when `omni data codes` has run on this split (else empty)."""
    path_of = {r["answer_text"]: r["answer_codes"] for r in rows}
    if any(path_of[a] is None for a in answer_texts):
        return np.zeros((0, 4), np.int16), np.zeros(len(answer_texts) + 1, np.int64)
    chunks = []
    for a in answer_texts:
        c = np.load(root / path_of[a])
        if c.ndim != 2 or c.shape[0] != 4:
            raise ValueError(f"{root / path_of[a]}: codes must be [4, T], got {c.shape}")
        chunks.append(c.T.astype(np.int16))
    offsets = np.zeros(len(chunks) + 1, np.int64)
    offsets[1:] = np.cumsum([len(c) for c in chunks])
    return np.concatenate(chunks), offsets


def _silence_frame(root: Path) -> list[int] | None:
    info = root / "codes/info.json"
    return json.loads(info.read_text()).get("silence_frame") if info.exists() else None

"""Writing a planned split to disk: media, spoken questions and answers, the manifest.

Layout of a split directory (all paths in the JSONL files are relative to it):

    info.json            seed, sizes, counts, timings, split rules
    scenes.jsonl         one scene record per line (world.Scene.to_dict)
    manifest.jsonl       one training sample per line (see `sample_record`)
    media/               <scene>.png (+ <scene>.still.mp4) or <scene>.mp4
    audio/clips/         clean question clips (the bank), 16 kHz mono int16 WAV
    audio/questions/     per-sample question audio: a clip + silence + noise
    audio/answers/       the assistant's spoken answers, one per distinct answer
    av_mcq.jsonl, spoken_qa.jsonl   the eval-format sets (evalsets.py)

Every file is written to a temporary name and renamed, and existing files are
kept, so an interrupted build resumes where it stopped and gives identical bytes.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from .audio import augment, read_wav, to_float, to_int16, write_wav
from .plan import Plan, Sample
from .questions import normalize_answer
from .render import write_scene_media
from .voices import ASSISTANT_VOICE, check_tools, synthesize
from .world import rng_for

FORMAT_VERSION = 1


def _progress(items: Iterable, total: int, desc: str, enabled: bool):
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, total=total, desc=desc, unit="item", dynamic_ncols=True)


def parallel(fn: Callable, items: list, workers: int, desc: str, progress: bool) -> list:
    """Run fn over items on `workers` threads (the work is in subprocesses, PIL and av)."""
    if workers <= 1:
        return [fn(x) for x in _progress(items, len(items), desc, progress)]
    with ThreadPoolExecutor(workers) as pool:
        return list(_progress(pool.map(fn, items), len(items), desc, progress))


def _atomic_wav(path: Path, samples: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write_wav(tmp, samples)
    os.replace(tmp, path)


def answer_slug(answer: str) -> str:
    return normalize_answer(answer).replace(" ", "_") or "empty"


def sample_record(s: Sample, media: dict[str, str | None]) -> dict:
    """One manifest line: everything needed to train on or grade a sample."""
    q = s.question
    letter = "ABCD"[q.options.index(q.answer)] if q.options else None
    return {
        "id": s.sample_id,
        "split": s.split,
        "family": q.family,
        "kind": q.kind,
        "wording": q.wording,
        "scene_id": s.scene_id,
        "image": media.get("image"),
        "video": media.get("video"),
        "stream_video": media.get("stream_video"),
        "question_text": q.text,
        "question_audio": f"audio/questions/{s.sample_id}.wav",
        "question_clip": f"audio/clips/{s.clip_id}.wav",
        "answer_text": q.answer,
        "accept": q.accept(),
        "answer_audio": f"audio/answers/{answer_slug(q.answer)}.wav",
        "answer_codes": None,
        "options": list(q.options),
        "answer_letter": letter,
        "query": q.query,
        "noise": s.noise.to_dict(),
    }


def build_split(
    out_dir: str | Path, plan: Plan, workers: int = 2, progress: bool = True, still_videos: bool | None = None
) -> dict:
    """Write every file of `plan` under out_dir; returns the info dict (also in info.json).

    still_videos: write a still clip per image scene for streaming clients
    (default: for the held-out split only, the one `omni client` replays).
    """
    if still_videos is None:
        still_videos = plan.split == "heldout"
    check_tools()
    out = Path(out_dir)
    _check_same_settings(out, plan)
    for sub in ("media", "audio/clips", "audio/questions", "audio/answers"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    write_jsonl(out / "scenes.jsonl", [s.to_dict() for s in plan.scenes])
    used = {s.scene_id for s in plan.samples if s.scene_id}
    scenes = [s for s in plan.scenes if s.scene_id in used]

    def media_of(scene):
        return scene.scene_id, _scene_media(scene, out / "media", still_videos)

    media = dict(parallel(media_of, scenes, workers, f"{plan.split}: scenes", progress))
    timings["render_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    clips = sorted(plan.clips.values(), key=lambda c: c.clip_id)

    def synth_clip(clip):
        path = out / "audio/clips" / f"{clip.clip_id}.wav"
        if not path.exists():
            _atomic_wav(path, synthesize(clip.text, clip.voice))
        return clip.clip_id

    parallel(synth_clip, clips, workers, f"{plan.split}: question clips", progress)
    answers = sorted({s.question.answer for s in plan.samples})

    def synth_answer(text):
        path = out / "audio/answers" / f"{answer_slug(text)}.wav"
        if not path.exists():
            _atomic_wav(path, synthesize(text, ASSISTANT_VOICE))
        return text

    parallel(synth_answer, answers, workers, f"{plan.split}: answers", progress)
    timings["speech_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    bank = {c.clip_id: to_float(read_wav(out / "audio/clips" / f"{c.clip_id}.wav")[0]) for c in clips}
    bank_ids = sorted(bank)

    def noisy(sample: Sample):
        path = out / "audio/questions" / f"{sample.sample_id}.wav"
        if not path.exists():
            _atomic_wav(path, to_int16(noisy_question(sample, bank, bank_ids)))
        return sample.sample_id

    parallel(noisy, plan.samples, workers, f"{plan.split}: noisy questions", progress)
    timings["noise_s"] = time.perf_counter() - t0

    records = [sample_record(s, media.get(s.scene_id, {}) if s.scene_id else {}) for s in plan.samples]
    write_jsonl(out / "manifest.jsonl", records)
    info = {
        "format_version": FORMAT_VERSION,
        "split": plan.split,
        "seed": plan.seed,
        "num_scenes": len(plan.scenes),
        "num_samples": len(plan.samples),
        "num_clips": len(clips),
        "num_answers": len(answers),
        "audio_seconds": round(sum(len(v) for v in bank.values()) / 16000, 1),
        "families": _count_by(records, "family"),
        "assistant_voice": ASSISTANT_VOICE.to_dict(),
        "timings": {k: round(v, 2) for k, v in timings.items()},
    }
    (out / "info.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def _check_same_settings(out: Path, plan: Plan) -> None:
    """Resuming keeps existing files, so they must come from the same settings."""
    info_path = out / "info.json"
    if not info_path.exists():
        return
    old = json.loads(info_path.read_text())
    new = {"format_version": FORMAT_VERSION, "split": plan.split, "seed": plan.seed, "assistant_voice": ASSISTANT_VOICE.to_dict()}
    diff = {k: (old.get(k), v) for k, v in new.items() if old.get(k) != v}
    if diff:
        raise ValueError(f"{out} was written with other settings {diff} (old, new): write to a fresh directory")


def noisy_question(sample: Sample, bank: dict[str, np.ndarray], bank_ids: list[str]) -> np.ndarray:
    """The microphone version of a sample's clip (deterministic from its noise seed)."""
    rng = rng_for(sample.noise.seed, "mix")
    others = [bank[bank_ids[int(i)]] for i in rng.integers(len(bank_ids), size=3)]
    n = sample.noise
    return augment(bank[sample.clip_id], rng, n.kind, n.snr_db, n.lead_s, n.tail_s, n.gain_db, others)


def _scene_media(scene, media_dir: Path, still_video: bool) -> dict[str, str | None]:
    # Existing media are kept (resume); the names are fixed by the scene id.
    sid = scene.scene_id
    if scene.kind == "video":
        if (media_dir / f"{sid}.mp4").exists():
            return {"image": None, "video": f"media/{sid}.mp4", "stream_video": f"media/{sid}.mp4"}
    elif (media_dir / f"{sid}.png").exists() and (not still_video or (media_dir / f"{sid}.still.mp4").exists()):
        still = f"media/{sid}.still.mp4" if still_video else None
        return {"image": f"media/{sid}.png", "video": None, "stream_video": still}
    return write_scene_media(scene, media_dir, still_video)


def _count_by(records: list[dict], key: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in records:
        out[r[key]] = out.get(r[key], 0) + 1
    return dict(sorted(out.items()))


def write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as fh:
        for row in rows:
            fh.write(json.dumps(row, sort_keys=True) + "\n")
    os.replace(tmp, path)


def read_jsonl(path: str | Path) -> list[dict]:
    """Rows of a JSONL file; a malformed line raises naming the file and line."""
    rows = []
    with open(path) as fh:
        for i, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{i}: not valid JSON ({exc.msg})") from None
    return rows

"""Checking a written split: schema of every JSONL line, files present and decodable,
answers consistent with the scene they are about.

`validate_split(dir)` returns a list of problems, each naming the file, the line
(sample id) and the field; an empty list means the split is sound. `omni data
validate` prints them.
"""

from __future__ import annotations

from pathlib import Path

from .audio import SAMPLE_RATE, read_wav
from .build import read_jsonl
from .evalsets import AV_MCQ_FILE, AV_MCQ_KEYS, SPOKEN_QA_FILE, SPOKEN_QA_KEYS
from .questions import FAMILIES, VISUAL_FAMILIES, answer_query, normalize_answer
from .world import Scene

MANIFEST_KEYS: dict[str, type | tuple[type, ...]] = {
    "id": str,
    "split": str,
    "family": str,
    "kind": str,
    "wording": str,
    "scene_id": (str, type(None)),
    "image": (str, type(None)),
    "video": (str, type(None)),
    "stream_video": (str, type(None)),
    "question_text": str,
    "question_audio": str,
    "question_clip": str,
    "answer_text": str,
    "accept": list,
    "answer_audio": str,
    "answer_codes": (str, type(None)),
    "options": list,
    "answer_letter": (str, type(None)),
    "query": dict,
    "noise": dict,
}


def _check_wav(path: Path, where: str, problems: list[str]) -> None:
    if not path.exists():
        problems.append(f"{where}: file {path} is missing")
        return
    try:
        samples, rate = read_wav(path)
    except ValueError as exc:
        problems.append(f"{where}: {exc}")
        return
    if rate != SAMPLE_RATE or len(samples) < SAMPLE_RATE // 10:
        problems.append(f"{where}: {path} has rate {rate} and {len(samples)} samples (want 16 kHz, >= 0.1 s)")


def _check_media(path: Path, where: str, problems: list[str], decode: bool) -> None:
    if not path.exists():
        problems.append(f"{where}: file {path} is missing")
        return
    if not decode:
        return
    try:
        if path.suffix == ".png":
            from PIL import Image

            with Image.open(path) as im:
                im.load()
        else:
            from .render import read_mp4

            read_mp4(path)
    except Exception as exc:  # any decoder failure is a problem of this file
        problems.append(f"{where}: {path} does not decode ({exc})")


def validate_split(data_dir: str | Path, decode: bool = True, check_files: bool = True) -> list[str]:
    root = Path(data_dir)
    problems: list[str] = []
    manifest = root / "manifest.jsonl"
    if not manifest.exists():
        return [f"{manifest}: missing"]
    scenes = {}
    if (root / "scenes.jsonl").exists():
        scenes = {d["scene_id"]: Scene.from_dict(d) for d in read_jsonl(root / "scenes.jsonl")}
    else:
        problems.append(f"{root / 'scenes.jsonl'}: missing")
    seen_media: set[str] = set()
    for r in read_jsonl(manifest):
        where = f"{manifest} [{r.get('id', '?')}]"
        bad = [k for k, t in MANIFEST_KEYS.items() if k not in r or not isinstance(r[k], t)]
        if bad:
            problems.append(f"{where}: missing or mistyped fields {bad}")
            continue
        if r["family"] not in FAMILIES:
            problems.append(f"{where}: family {r['family']!r} is not one of {FAMILIES}")
        if not r["accept"] or r["accept"][0] != r["answer_text"]:
            problems.append(f"{where}: accept must start with answer_text")
        if normalize_answer(r["answer_text"]) != r["answer_text"]:
            problems.append(f"{where}: answer_text {r['answer_text']!r} is not in normalized form")
        if r["family"] in VISUAL_FAMILIES:
            opts, letter = r["options"], r["answer_letter"]
            if len(opts) != 4 or len(set(opts)) != 4 or letter not in "ABCD" or opts["ABCD".index(letter)] != r["answer_text"]:
                problems.append(f"{where}: options/answer_letter inconsistent: {opts} / {letter}")
            if r["scene_id"] is None or not (r["image"] or r["video"]):
                problems.append(f"{where}: visual question without a scene or media")
        scene = scenes.get(r["scene_id"]) if r["scene_id"] else None
        if r["scene_id"] and scene is None and scenes:
            problems.append(f"{where}: scene_id {r['scene_id']!r} not in scenes.jsonl")
        elif scenes or not r["scene_id"]:
            got = answer_query(scene, r["query"])
            if got != r["answer_text"]:
                problems.append(f"{where}: query {r['query']} gives {got!r} on its scene, manifest says {r['answer_text']!r}")
        if not check_files:
            continue
        for key in ("question_audio", "question_clip", "answer_audio"):
            _check_wav(root / r[key], f"{where}.{key}", problems)
        for key in ("image", "video", "stream_video"):
            if r[key] and r[key] not in seen_media:
                seen_media.add(r[key])
                _check_media(root / r[key], f"{where}.{key}", problems, decode)
    for name, keys in ((AV_MCQ_FILE, AV_MCQ_KEYS), (SPOKEN_QA_FILE, SPOKEN_QA_KEYS)):
        path = root / name
        if not path.exists():
            continue
        for r in read_jsonl(path):
            missing = [k for k in keys if k not in r]
            if missing:
                problems.append(f"{path} [{r.get('id', '?')}]: missing fields {missing}")
            for key in ("audio", "image", "video"):
                if check_files and r.get(key) and not (root / r[key]).exists():
                    problems.append(f"{path} [{r.get('id', '?')}].{key}: file {r[key]} is missing")
    return problems

"""Manifests of the four evaluation tasks (JSONL, one sample per line).

Paths inside a manifest are relative to the data directory. Accepted shapes:

- asr (LibriSpeech / NeMo style): {"id", "audio" | "audio_filepath", "text" | "transcript"}
- av-mcq (OmniBench / WorldSense / VideoMME style): {"id", "question",
  "options": ["..", ..] or {"A": "..", ..}, "answer": "B", "video"?, "audio"?,
  "image"?, "category" | "task_type"?}
- spoken-qa (VoiceBench style): {"id", "audio", "reference" | "answer",
  "rule" | "scoring": "mcq" | "exact" (or "exact_match") | "refusal",
  "accept"? (more accepted answers), "options"? (for mcq), "image"?, "video"?;
  "prompt" is the transcript of the spoken question and is NOT shown to the model;
  "instruction"? is extra text given along with the audio}
- speech-out: {"id", "question"? (text), "audio"?, "image"?, "video"?}

The manifest is `DIR/<task>.jsonl`, `DIR/<task with _>.jsonl` (e.g. av_mcq.jsonl,
as `omni data` writes) or `DIR/manifest.jsonl`.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TASKS = ("asr", "av-mcq", "spoken-qa", "speech-out")
RULES = ("mcq", "exact", "refusal")
_RULE_ALIASES = {"exact_match": "exact", "multiple_choice": "mcq", "choice": "mcq", "refuse": "refusal"}
_ALIASES = {
    "audio": ("audio", "audio_filepath", "audio_path", "wav"),
    "video": ("video", "video_path"),
    "image": ("image", "image_path"),
    "text": ("text", "transcript", "sentence"),
    "category": ("category", "task_type", "domain"),
    "options": ("options", "choices"),
    "reference": ("reference", "answer"),
}


class ManifestError(ValueError):
    pass


@dataclass
class Sample:
    id: str
    task: str
    audio: str | None = None
    video: str | None = None
    image: str | None = None
    question: str | None = None
    options: dict[str, str] = field(default_factory=dict)
    answer: str | None = None  # letter (av-mcq) / reference text / transcript
    accept: list[str] = field(default_factory=list)  # more accepted answers (exact rule)
    rule: str | None = None
    category: str = "all"
    raw: dict[str, Any] = field(default_factory=dict)


def _get(rec: dict, name: str) -> Any:
    for key in _ALIASES.get(name, (name,)):
        if key in rec and rec[key] not in (None, ""):
            return rec[key]
    return None


def find_manifest(data_dir: Path, task: str) -> Path:
    for name in (f"{task}.jsonl", f"{task.replace('-', '_')}.jsonl", "manifest.jsonl"):
        if (data_dir / name).is_file():
            return data_dir / name
    raise ManifestError(f"no manifest in {data_dir}: expected {task}.jsonl or manifest.jsonl")


def _options(value: Any, where: str) -> dict[str, str]:
    if isinstance(value, dict):
        return {str(k).strip().upper(): str(v) for k, v in value.items()}
    if isinstance(value, list):
        if len(value) > 26:
            raise ManifestError(f"{where}: more than 26 options")
        out = {}
        for i, v in enumerate(value):
            v = str(v)
            # "A. red" style entries keep their own letter
            if len(v) > 2 and v[0] in string.ascii_uppercase and v[1] in ".):":
                out[v[0]] = v[2:].strip()
            else:
                out[string.ascii_uppercase[i]] = v
        return out
    raise ManifestError(f"{where}: 'options' must be a list or an object")


def parse_sample(rec: dict, task: str, where: str, index: int) -> Sample:
    if not isinstance(rec, dict):
        raise ManifestError(f"{where}: each line must be a JSON object")
    s = Sample(
        id=str(rec.get("id", rec.get("question_id", index))),
        task=task,
        audio=_get(rec, "audio"),
        video=_get(rec, "video"),
        image=_get(rec, "image"),
        question=rec.get("question") or rec.get("prompt"),
        category=str(_get(rec, "category") or "all"),
        raw=rec,
    )
    if task == "asr":
        s.answer = _get(rec, "text")
        if not s.audio or s.answer is None:
            raise ManifestError(f"{where}: asr samples need 'audio' and 'text'")
    elif task == "av-mcq":
        if not s.question or _get(rec, "options") is None or not rec.get("answer"):
            raise ManifestError(f"{where}: av-mcq samples need 'question', 'options' and 'answer'")
        s.options = _options(_get(rec, "options"), where)
        s.answer = str(rec["answer"]).strip().upper()[:1]
        if s.answer not in s.options:
            raise ManifestError(f"{where}: answer {rec['answer']!r} is not one of the options {sorted(s.options)}")
        if not (s.video or s.audio or s.image):
            raise ManifestError(f"{where}: av-mcq samples need at least one of 'video', 'audio', 'image'")
    elif task == "spoken-qa":
        s.answer = _get(rec, "reference")
        rule = str(rec.get("rule", rec.get("scoring", "exact")))
        s.rule = _RULE_ALIASES.get(rule, rule)
        s.accept = [str(a) for a in rec.get("accept", [])]
        if s.rule not in RULES:
            raise ManifestError(f"{where}: unknown rule {s.rule!r}; known: {list(RULES)}")
        if not s.audio:
            raise ManifestError(f"{where}: spoken-qa samples need 'audio'")
        if s.rule != "refusal" and s.answer is None:
            raise ManifestError(f"{where}: rule {s.rule!r} needs a 'reference'")
        if s.rule == "mcq":
            if _get(rec, "options") is not None:
                s.options = _options(_get(rec, "options"), where)
            else:
                s.options = {c: "" for c in "ABCD"}
            s.answer = str(s.answer).strip().upper()[:1]
    elif task == "speech-out":
        if not (s.question or s.audio):
            raise ManifestError(f"{where}: speech-out samples need 'question' text or 'audio'")
    else:
        raise ManifestError(f"unknown task {task!r}; known: {list(TASKS)}")
    return s


def load_manifest(data_dir: str | Path, task: str) -> list[Sample]:
    if task not in TASKS:
        raise ManifestError(f"unknown task {task!r}; known: {list(TASKS)}")
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise ManifestError(f"data directory {data_dir} does not exist")
    path = find_manifest(data_dir, task)
    samples, seen = [], set()
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise ManifestError(f"{where}: not valid JSON ({e.msg})") from None
        s = parse_sample(rec, task, where, len(samples))
        if s.id in seen:
            raise ManifestError(f"{where}: duplicate sample id {s.id!r}")
        seen.add(s.id)
        samples.append(s)
    if not samples:
        raise ManifestError(f"{path} holds no samples")
    return samples


def mcq_prompt(question: str, options: dict[str, str]) -> str:
    """The text the model sees for a multiple-choice question."""
    opts = " ".join(f"{k}. {v}" for k, v in sorted(options.items()))
    return f"{question}\nOptions: {opts}\nAnswer with the letter of the correct option."

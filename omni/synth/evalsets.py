"""The eval-format sets `omni eval` reads, written from a split's manifest.

`av_mcq.jsonl` (shape of OmniBench / WorldSense / VideoMME; visual families only):

    {"id": "heldout-000012", "question": "how many red circles do you see",
     "options": ["two", "zero", "one", "four"], "answer": "C", "answer_text": "one",
     "category": "counting", "sub_category": "count",
     "image": "media/heldout-s000004.png" | null, "video": "media/....mp4" | null,
     "audio": "audio/questions/heldout-000012.wav", "audio_role": "question"}

    `options` are the choice texts in letter order (A, B, C, D); `answer` is the
    letter. `audio` speaks `question` (noisy, held-out voice), so a model can be
    asked in text, in speech, or both.

`spoken_qa.jsonl` (VoiceBench style; every family, speech tasks included, but the tool's
requests, whose answer needs the tool's output):

    {"id": ..., "audio": "audio/questions/heldout-000012.wav",
     "transcript": "how many red circles do you see", "reference": "one",
     "accept": ["one", "1"], "rule": "exact", "category": "counting",
     "image": ... | null, "video": ... | null, "stream_video": ... | null}

    The question is only spoken: `transcript` is for people and recognizers, not a
    text prompt (`omni eval` sends a "prompt" field as text next to the audio).
    rule "exact" (the `omni eval` rule names: mcq / exact / refusal): correct when
    the normalized reply equals the reference; `accept` lists the spellings a
    grader may also take ("1" for "one", "the left" for "left").

Paths are relative to the JSONL file's directory.
"""

from __future__ import annotations

from pathlib import Path

from .build import write_jsonl, read_jsonl
from .questions import VISUAL_FAMILIES

AV_MCQ_FILE = "av_mcq.jsonl"
SPOKEN_QA_FILE = "spoken_qa.jsonl"
AV_MCQ_KEYS = ("id", "question", "options", "answer", "category")
SPOKEN_QA_KEYS = ("id", "audio", "transcript", "reference", "accept", "rule", "category")


def av_mcq_record(r: dict) -> dict:
    return {
        "id": r["id"],
        "question": r["question_text"],
        "options": r["options"],
        "answer": r["answer_letter"],
        "answer_text": r["answer_text"],
        "category": r["family"],
        "sub_category": r["kind"],
        "image": r["image"],
        "video": r["video"],
        "audio": r["question_audio"],
        "audio_role": "question",
    }


def spoken_qa_record(r: dict) -> dict:
    return {
        "id": r["id"],
        "audio": r["question_audio"],
        "transcript": r["question_text"],
        "reference": r["answer_text"],
        "accept": r["accept"],
        "rule": "exact",
        "category": r["family"],
        "sub_category": r["kind"],
        "image": r["image"],
        "video": r["video"],
        "stream_video": r["stream_video"],
    }


def write_eval_sets(data_dir: str | Path) -> dict[str, int]:
    """Write av_mcq.jsonl and spoken_qa.jsonl next to a split's manifest.jsonl."""
    root = Path(data_dir)
    manifest = root / "manifest.jsonl"
    if not manifest.exists():
        raise FileNotFoundError(f"{manifest} not found: build the split first (omni data build)")
    rows = read_jsonl(manifest)
    mcq = [av_mcq_record(r) for r in rows if r["family"] in VISUAL_FAMILIES]
    sqa = [spoken_qa_record(r) for r in rows if r["family"] != "tool"]  # a tool's answer needs the tool's output
    write_jsonl(root / AV_MCQ_FILE, mcq)
    write_jsonl(root / SPOKEN_QA_FILE, sqa)
    return {AV_MCQ_FILE: len(mcq), SPOKEN_QA_FILE: len(sqa)}

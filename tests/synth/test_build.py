"""Written splits: every file exists and decodes, manifests validate, same seed -> same bytes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from omni.eval.manifest import load_manifest
from omni.synth.audio import read_wav
from omni.synth.build import build_split, read_jsonl
from omni.synth.evalsets import write_eval_sets
from omni.synth.render import FILE_SIZE, read_mp4, render_clip, VIDEO_FPS
from omni.synth.validate import validate_split
from omni.synth.voices import ASSISTANT_VOICE, VOICES
from omni.synth.world import Scene


def _digest(root: Path, suffixes: tuple[str, ...]) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix in suffixes
    }


def test_splits_validate_and_every_file_decodes(built) -> None:
    for split, root in built.items():
        assert validate_split(root, decode=True) == [], split
        rows = read_jsonl(root / "manifest.jsonl")
        info = json.loads((root / "info.json").read_text())
        assert info["num_samples"] == len(rows) and info["split"] == split
        for r in rows:
            for key in ("question_audio", "question_clip", "answer_audio"):
                samples, rate = read_wav(root / r[key])
                assert rate == 16000 and len(samples) > 1600 and np.abs(samples).max() > 1000
        scenes = {d["scene_id"]: Scene.from_dict(d) for d in read_jsonl(root / "scenes.jsonl")}
        videos = {r["video"]: r["scene_id"] for r in rows if r["video"]}
        assert videos, "tiny split should contain a video scene"
        for rel, sid in videos.items():
            frames = read_mp4(root / rel)
            expect = render_clip(scenes[sid], VIDEO_FPS, FILE_SIZE)
            assert frames.shape == expect.shape
            # H.264 at crf 18 on flat shapes: close to the rendered pixels
            assert np.abs(frames.astype(int) - expect.astype(int)).mean() < 3.0


def test_voices_of_the_written_clips_follow_the_split(built, tiny_plan) -> None:
    for split, root in built.items():
        plan = tiny_plan(split)
        for clip in plan.clips.values():
            assert (root / "audio/clips" / f"{clip.clip_id}.wav").exists()
            assert clip.voice.name in VOICES[split] and clip.voice.name != ASSISTANT_VOICE.name


def test_eval_sets_load_with_omni_eval(built) -> None:
    root = built["heldout"]
    mcq = load_manifest(root, "av-mcq")
    sqa = load_manifest(root, "spoken-qa")
    rows = {r["id"]: r for r in read_jsonl(root / "manifest.jsonl")}
    assert len(sqa) == len(rows) and 0 < len(mcq) < len(rows)
    for s in mcq:
        r = rows[s.id]
        assert s.options[s.answer] == r["answer_text"] and s.category == r["family"]
        assert (root / s.audio).exists() and (root / (s.image or s.video)).exists()
    for s in sqa:
        assert s.rule == "exact" and s.answer == rows[s.id]["answer_text"]
        assert "prompt" not in s.raw  # the question must reach the model as speech only


def test_same_seed_same_bytes_and_resume(built, tiny_plan, tmp_path) -> None:
    again = tmp_path / "again"
    build_split(again, tiny_plan("heldout"), workers=1, progress=False)
    write_eval_sets(again)
    suffixes = (".wav", ".png", ".jsonl")
    first = _digest(built["heldout"], suffixes)
    assert first == _digest(again, suffixes)
    for rel in (p for p in first if p.endswith(".mp4")):
        assert np.array_equal(read_mp4(built["heldout"] / rel), read_mp4(again / rel))
    # resume: delete some outputs, build again, identical result
    victims = sorted((again / "audio/questions").iterdir())[:3] + sorted((again / "media").glob("*.png"))[:1]
    for v in victims:
        v.unlink()
    build_split(again, tiny_plan("heldout"), workers=2, progress=False)
    write_eval_sets(again)
    assert _digest(again, suffixes) == first


def test_validate_names_the_broken_field(built, tmp_path) -> None:
    import shutil

    copy = tmp_path / "broken"
    shutil.copytree(built["train"], copy)
    rows = read_jsonl(copy / "manifest.jsonl")
    visual = next(r for r in rows if r["options"])
    visual["answer_text"] = next(o for o in visual["options"] if o != visual["answer_text"])
    visual["accept"] = [visual["answer_text"]]
    (copy / rows[1]["question_audio"]).unlink()
    with open(copy / "manifest.jsonl", "w") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)
    problems = "\n".join(validate_split(copy, decode=False))
    assert visual["id"] in problems and "options/answer_letter inconsistent" in problems
    assert "gives" in problems  # the query re-evaluated on the scene disagrees
    assert f"[{rows[1]['id']}].question_audio" in problems and "missing" in problems


def test_resume_refuses_a_directory_of_other_settings(built, tiny_plan, tmp_path) -> None:
    import shutil

    import pytest

    copy = tmp_path / "other"
    shutil.copytree(built["heldout"], copy)
    with pytest.raises(ValueError, match="other settings.*seed"):
        build_split(copy, tiny_plan("heldout", seed=1), progress=False)

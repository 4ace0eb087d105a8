"""`omni eval` end to end on the debug model with fixtures made on the spot:
batched, resumable, failed media reported, reports written."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from omni.cli import main as cli_main
from omni.eval.runner import run_eval


def test_av_mcq_batched_resumable_with_failures(debug_model, tmp_path, make_video):
    data = tmp_path / "data"
    data.mkdir()
    make_video(data / "clip.mp4")
    Image.fromarray(np.full((56, 84, 3), 120, dtype=np.uint8)).save(data / "scene.png")
    (data / "broken.mp4").write_bytes(b"this is not a video")
    rows = [
        {"id": "v1", "question": "What is moving?", "options": ["a red bar", "a blue dot"], "answer": "A", "video": "clip.mp4", "category": "motion"},
        {"id": "i1", "question": "What color?", "options": {"A": "gray", "B": "pink"}, "answer": "A", "image": "scene.png", "category": "color"},
        {"id": "x1", "question": "?", "options": ["a", "b"], "answer": "B", "video": "missing.mp4", "category": "motion"},
        {"id": "x2", "question": "?", "options": ["a", "b"], "answer": "B", "video": "broken.mp4", "category": "motion"},
    ]
    (data / "av-mcq.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "report"
    batches = []
    s = run_eval("av-mcq", data, debug_model, out, "debug", batch_size=2, max_new_tokens=3, progress=False,
                 on_batch=batches.append)
    assert batches == [0, 1]
    assert s["num_samples"] == 4 and s["num_failed"] == 2 and s["num_scored"] == 2
    lines = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    failed = {r["id"]: r["error"] for r in lines if r["status"] == "failed"}
    assert "file not found" in failed["x1"] and "broken.mp4" in failed["x2"]
    assert set(s["per_category"]) == {"motion", "color"}
    assert (out / "report.md").read_text().count("| x") == 2 and (out / "report.png").stat().st_size > 1000
    assert json.loads((out / "summary.json").read_text())["accuracy"] == s["accuracy"]
    # a rerun does no work; a cut last line (killed run) re-runs only that sample
    batches.clear()
    run_eval("av-mcq", data, debug_model, out, "debug", batch_size=2, max_new_tokens=3, progress=False, on_batch=batches.append)
    assert batches == []
    text = (out / "samples.jsonl").read_text().splitlines()
    keep = [x for x in text if json.loads(x)["id"] != "i1"]
    (out / "samples.jsonl").write_text("\n".join(keep) + '\n{"id": "i1", "sta')
    s2 = run_eval("av-mcq", data, debug_model, out, "debug", batch_size=2, max_new_tokens=3, progress=False, on_batch=batches.append)
    assert batches == [0] and s2["num_scored"] == 2


def test_speech_tasks_cli(debug_model, tmp_path, speak, capsys):
    data = tmp_path / "data"
    data.mkdir()
    speak("what color is the star", data / "q1.wav")
    speak("is the circle on the left", data / "q2.wav")
    asr = [{"id": "a1", "audio": "q1.wav", "text": "what color is the star"}]
    qa = [
        {"id": "s1", "audio": "q1.wav", "reference": "red", "rule": "exact", "category": "attribute"},
        {"id": "s2", "audio": "q2.wav", "reference": "B", "rule": "mcq", "options": ["yes", "no"]},
        {"id": "s3", "audio": "q2.wav", "rule": "refusal"},
    ]
    sp = [{"id": "o1", "question": "say hello", "audio": "q1.wav"}]
    for name, rows in (("asr", asr), ("spoken-qa", qa), ("speech-out", sp)):
        (data / f"{name}.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    common = ["--data", str(data), "--max-new-tokens", "6", "--batch-size", "4"]
    s = run_eval("asr", data, debug_model, tmp_path / "asr", "debug", batch_size=4, max_new_tokens=6, progress=False)
    assert s["ref_words"] == 5 and s["num_scored"] == 1
    s = run_eval("spoken-qa", data, debug_model, tmp_path / "qa", "debug", batch_size=4, max_new_tokens=6, progress=False)
    assert set(s["per_rule"]) == {"exact", "mcq", "refusal"}
    # the command line, on its default (random debug) model
    assert cli_main(["eval", "--task", "speech-out", "--out", str(tmp_path / "so"), *common]) == 0
    rec = json.loads((tmp_path / "so/samples.jsonl").read_text().splitlines()[0])
    assert rec["status"] == "ok" and rec["audio_seconds"] > 0 and "heard" in rec
    assert (tmp_path / "so/audio/o1.wav").exists()
    # resuming into a folder of another task is refused
    assert cli_main(["eval", "--task", "asr", "--out", str(tmp_path / "qa"), *common]) == 2
    assert "holds results of task" in capsys.readouterr().err

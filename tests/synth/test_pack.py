"""Packs: what the GPU machine reads equals what was written on disk, within the size budget."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from omni.synth.audio import read_wav, to_float
from omni.synth.build import read_jsonl
from omni.synth.pack import Pack
from omni.synth.packing import _choose_clips, write_pack
from omni.synth.render import render_clip
from omni.synth.questions import answer_query
from omni.synth.world import Scene


def _snr(ref: np.ndarray, est: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(ref**2) / np.sum((ref - est) ** 2)))


@pytest.fixture(scope="module")
def packed(built, tmp_path_factory):
    out = tmp_path_factory.mktemp("pack") / "train.pack.npz"
    summary = write_pack(built["train"], out, frame_size=56, fps=2.0, max_mb=10, progress=False)
    return out, summary


def test_pack_reproduces_the_split(built, packed) -> None:
    path, summary = packed
    pack = Pack(path)
    root = built["train"]
    rows = read_jsonl(root / "manifest.jsonl")
    scenes = {d["scene_id"]: Scene.from_dict(d) for d in read_jsonl(root / "scenes.jsonl")}
    assert len(pack) == len(rows) == summary["samples"] and summary["clips_dropped"] == 0
    for i, r in enumerate(rows):
        assert pack.sample_id(i) == r["id"] and pack.family(i) == r["family"]
        assert pack.question_text(i) == r["question_text"] and pack.answer_text(i) == r["answer_text"]
        assert pack.options(i) == r["options"]
        # stored conditions: the noisy WAV on disk, up to 8-bit mu-law rounding
        disk = to_float(read_wav(root / r["question_audio"])[0])
        got = pack.question_audio(i)
        assert got.shape == disk.shape and _snr(disk, got) > 30.0
        ans = to_float(read_wav(root / r["answer_audio"])[0])
        assert _snr(ans, pack.answer_audio(i)) > 30.0
        frames = pack.frames(i)
        if r["scene_id"] is None:
            assert frames is None
        else:
            assert np.array_equal(frames, render_clip(scenes[r["scene_id"]], 2.0, 56))
            assert pack.is_video(i) == (r["video"] is not None)
    assert pack.answer_codes(0) is None  # no codec run on this split


def test_repairing_questions_with_other_scenes(packed) -> None:
    pack = Pack(packed[0])
    paired = 0
    for i in range(len(pack)):
        own = pack.answer_on_scene(i, int(pack.sample_scene[i])) if pack.sample_scene[i] >= 0 else -1
        if pack.family(i) in ("repeat", "greeting"):
            assert own == -1
            continue
        assert pack.meta["answer_texts"][own] == pack.answer_text(i)  # its own scene: its own answer
        for k in range(pack.num_scenes):
            a = pack.answer_on_scene(i, k)
            if a >= 0:
                scene = Scene.from_dict(pack.meta["scenes"][k])
                assert answer_query(scene, pack.meta["sample_queries"][i]) == pack.meta["answer_texts"][a]
                paired += 1
    assert paired > len(pack)


def test_fresh_augmentation_differs_per_draw_but_keeps_the_speech(packed) -> None:
    pack = Pack(packed[0])
    a = pack.question_audio(0, np.random.default_rng(1))
    b = pack.question_audio(0, np.random.default_rng(2))
    assert a.dtype == np.float32 and not (len(a) == len(b) and np.allclose(a, b))
    assert np.max(np.abs(a)) <= 0.98 + 1e-6
    clean = pack.clean_question(0)
    assert 0.8 * len(clean) < len(a) < 1.25 * len(clean) + 16000 * 1.2  # speed 0.9-1.1 plus padding


def test_budget_drops_renderings_not_samples() -> None:
    rows = [
        {"question_text": "hello", "question_clip": "a1"},
        {"question_text": "hello", "question_clip": "a1"},
        {"question_text": "hello", "question_clip": "a2"},
        {"question_text": "say red", "question_clip": "b1"},
        {"question_text": "say red", "question_clip": "b2"},
        {"question_text": "say red", "question_clip": "b2"},
        {"question_text": "say red", "question_clip": "b3"},
    ]
    size = {c: 10 for c in ("a1", "a2", "b1", "b2", "b3")}
    assert _choose_clips(rows, size, None) == {c: c for c in size}
    # 30 bytes: one rendering per text (the most used: a1, b2) plus one extra
    mapping = _choose_clips(rows, size, 30)
    assert mapping["a1"] == "a1" and mapping["b2"] == "b2"
    assert len(set(mapping.values())) == 3
    for clip, kept in mapping.items():  # every sample still hears its own text
        assert clip[0] == kept[0]
    with pytest.raises(ValueError, match="one rendering per question text"):
        _choose_clips(rows, size, 15)


def test_pack_over_budget_fails_clearly(built, tmp_path) -> None:
    with pytest.raises(ValueError, match="one rendering per question text"):
        write_pack(built["train"], tmp_path / "tiny.npz", frame_size=56, max_mb=0.01, progress=False)


def test_pack_reader_needs_only_numpy(packed) -> None:
    # GPU machines have no av, PIL or espeak-ng: the reader must not import them.
    code = textwrap.dedent(f"""
        import sys
        for name in ("av", "PIL", "torch"):
            sys.modules[name] = None  # any import of these now fails
        from omni.synth.pack import Pack
        p = Pack({str(packed[0])!r})
        x = p.question_audio(0, __import__("numpy").random.default_rng(0))
        print(len(p), x.shape[0] > 0)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[1] == "True"


def test_bad_pack_errors_name_the_file(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="nothing.npz"):
        Pack(tmp_path / "nothing.npz")
    np.savez(tmp_path / "wrong.npz", frames=np.zeros(3))
    with pytest.raises(ValueError, match="wrong.npz.*lacks arrays"):
        Pack(tmp_path / "wrong.npz")
    meta = json.dumps({"version": 99}).encode()
    with pytest.raises(ValueError):
        np.savez(tmp_path / "old.npz", meta=np.frombuffer(meta, np.uint8))
        Pack(tmp_path / "old.npz")

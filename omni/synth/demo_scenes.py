"""Scenes a newcomer can show the default model: held-out stills with questions about
them, spoken in held-out voices, for the live demo's virtual camera.

`omni data demo-scenes` picks held-out scenes (stills, and videos at 2 frames a second)
of a written split and, for each,
up to `per_scene` of its held-out spoken questions. With a model, every candidate
question is asked offline (its clean clip, the still as a 2 FPS camera, as
`bench/default_model.py` asks, after the system prompt of the tools the model's card names,
which the page declares): the ones answered right come first, marked
`offline_ok`, and a scene is kept only if one of its questions was. The page's promise
is about questions asked its own way, through the server: `python -m demo.check_scenes`
then asks them so, adds `stream_ok`, and keeps what works (`demo/check_scenes.py`).
Writes (a model directory's `demo/` folder is where `omni demo` looks):

    scenes.json   {"version": 1, "model": name, "scenes": [{"id", "image", "frames", "video", "caption",
                   "questions": [{"text", "answer", "accept", "family", "audio",
                   "offline_ok", "offline_reply"}]}],
                   "requests": [{... as a question, "tool", "arguments"}]}
    images/ID.png (a video: ID_NN.png, its frames), questions/QID.wav (16 kHz mono)

`requests` (where the model's card names the world's light): the light asked for in held-out
wordings and voices, suggested beside every scene; `demo.check_scenes` judges them.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from omni.model_card import read_card

from .tool_world import LIGHT

SCENES_VERSION = 1
VIDEO_FPS = 2.0  # a video scene's frames, as the camera sends them and as the model was trained
# the light asked for, where the model's card names it: (on, index into the held-out wordings)
LIGHT_REQUESTS = ((True, 1), (False, 1))  # "please turn the light on" / "... off"
# each request is recorded in this many held-out voices (takes); demo.check_scenes suggests the
# first take the model gets right the page's way, as it keeps the questions it answers right
LIGHT_TAKES = 4


def _candidates(data: Path) -> dict[str, list[dict]]:
    """Held-out scenes (stills and videos) -> their visual questions (manifest rows), in split order."""
    from .build import read_jsonl

    by_scene: dict[str, list[dict]] = {}
    for r in read_jsonl(data / "manifest.jsonl"):
        if (r.get("image") or r.get("video")) and r.get("family") in ("counting", "attribute", "position", "motion"):
            by_scene.setdefault(r["scene_id"], []).append(r)
    return by_scene


def _frames(data: Path, row: dict, scene) -> list[np.ndarray]:
    """What the camera shows: the still, or the video re-rendered at VIDEO_FPS from its scene
    record (the split's mp4 has another frame rate; the pack renders the same way)."""
    from PIL import Image

    from .render import render_clip

    if row.get("video"):
        return list(render_clip(scene, VIDEO_FPS, 224))
    with Image.open(data / row["image"]) as im:
        return [np.asarray(im.convert("RGB"))]


def card_system_prompt(model_dir: str | None) -> str | None:
    """The system prompt the demo page's session has with this model: the page declares the
    tools its card names (`demo/tools.py`), and the server puts them in the system prompt."""
    from omni.tool_calls import Tool, tool_section

    tools = (read_card(model_dir) or {}).get("tools") or []
    return tool_section([Tool.from_json(t) for t in tools]) or None


def light_requests(out: Path, seed: int = 0, takes: int = LIGHT_TAKES) -> list[dict]:
    """The world's light asked for in held-out wordings, each spoken by `takes` held-out voices
    (espeak-ng) into `out`/questions/: the page suggests them beside every scene (`audio`, the
    first take until demo.check_scenes picks the first one the model gets right from `takes`),
    and the answer is the one the page's light (answering) makes the model say."""
    from .audio import write_wav
    from .tool_world import REQUESTS, state_answer
    from .voices import sample_voice, synthesize

    rng = np.random.default_rng(seed)
    listed = []
    for on, k in LIGHT_REQUESTS:
        text, state = REQUESTS[on]["heldout"][k], "on" if on else "off"
        names = [f"questions/light-{state}-{i}.wav" for i in range(takes)]
        for name in names:
            write_wav(out / name, synthesize(text, sample_voice(rng, "heldout")))
        listed.append({"text": text, "answer": state_answer(on), "accept": [], "family": "tool", "audio": names[0],
                       "takes": names, "tool": LIGHT.name, "arguments": {"on": on}, "offline_ok": None,
                       "offline_reply": None})
    return listed


def _ask(model, rows: list[dict], data: Path, records: dict, batch: int, progress: bool,
         system: str | None = None) -> list[dict]:
    """Answer every row's clean question clip with its scene as the camera (2 FPS, from the
    question's start; a video holds its last frame), after the system prompt `system`."""
    from .audio import read_wav, to_float
    from .heldout import answer, score, select

    items = []
    for r in rows:
        items.append({"id": r["id"], "family": r["family"], "frames": _frames(data, r, records[r["scene_id"]]),
                      "question_text": r["question_text"],
                      "audio": to_float(read_wav(data / r["question_clip"])[0]), "caption": None,
                      "answer": r["answer_text"], "accept": r.get("accept") or [r["answer_text"]]})
    items = select(items, 0, "spoken")
    answer(model, items, batch, "spoken", progress=progress, system=system)
    score(items, "spoken")
    return items


def write_demo_scenes(data: str | Path, out: str | Path, model_dir: str | None = None, scenes: int = 10,
                      per_scene: int = 3, batch: int = 16, progress: bool = True) -> dict:
    """Write the demo's scene folder (see the module docstring); returns a summary."""
    from .build import read_jsonl
    from .questions import scene_caption
    from .world import Scene

    data, out = Path(data), Path(out)
    if not (data / "manifest.jsonl").is_file():
        raise FileNotFoundError(f"{data}: no manifest.jsonl (write a held-out split with `omni data default`)")
    by_scene = _candidates(data)
    if not by_scene:
        raise ValueError(f"{data}: no scenes with visual questions")
    records = {d["scene_id"]: Scene.from_dict(d) for d in read_jsonl(data / "scenes.jsonl")}
    answers: dict[str, dict] = {}
    name = None
    if model_dir:
        from omni.model import OmniModel

        model = OmniModel.from_pretrained(model_dir).eval()
        name = os.path.basename(os.path.normpath(model_dir))
        rows = [r for rs in by_scene.values() for r in rs]
        system = card_system_prompt(model_dir)
        answers = {it["id"]: it for it in _ask(model, rows, data, records, batch, progress, system)}
    offline = lambda r: bool(answers.get(r["id"], {}).get("text_ok"))
    chosen = []
    for sid, rows in by_scene.items():
        rows = sorted(rows, key=lambda r: not offline(r))[:per_scene]  # right answers first, else split order
        if model_dir and not offline(rows[0]):
            continue
        chosen.append((sid, rows))
        if len(chosen) == scenes:
            break
    if os.path.exists(out / "scenes.json"):  # rewrite the folder whole: no stale files
        shutil.rmtree(out)
    (out / "images").mkdir(parents=True)
    (out / "questions").mkdir()
    listed = []
    from .render import write_png

    for sid, rows in chosen:
        frames = _frames(data, rows[0], records[sid])
        names = [f"images/{sid}.png"] if len(frames) == 1 else [f"images/{sid}_{k:02d}.png" for k in range(len(frames))]
        for name_k, frame in zip(names, frames):
            write_png(frame, out / name_k)
        qs = []
        for r in rows:
            shutil.copyfile(data / r["question_clip"], out / "questions" / f"{r['id']}.wav")
            it = answers.get(r["id"], {})
            qs.append({"text": r["question_text"], "answer": r["answer_text"], "accept": r.get("accept") or [],
                       "family": r["family"], "audio": f"questions/{r['id']}.wav",
                       "offline_ok": bool(it.get("text_ok")) if model_dir else None,
                       "offline_reply": it.get("text") if model_dir else None})
        listed.append({"id": sid, "image": names[0], "frames": names, "video": len(names) > 1,
                       "caption": scene_caption(records[sid]) if sid in records else "", "questions": qs})
    doc = {"version": SCENES_VERSION, "model": name, "source": str(data), "scenes": listed}
    if model_dir and any(t["name"] == LIGHT.name for t in (read_card(model_dir) or {}).get("tools") or []):
        doc["requests"] = light_requests(out)  # judged the page's way by demo.check_scenes
    (out / "scenes.json").write_text(json.dumps(doc, indent=1) + "\n")
    asked = sum(len(s["questions"]) for s in listed)
    right = sum(bool(q["offline_ok"]) for s in listed for q in s["questions"])
    return {"scenes": len(listed), "questions": asked, "offline_ok": right,
            "candidates_asked": len(answers), "candidates_ok": sum(bool(a.get("text_ok")) for a in answers.values())}

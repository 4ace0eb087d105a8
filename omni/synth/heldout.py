"""Held-out questions of the synthetic world, asked of a model and scored.

One place for what the default model's bench (`bench/default_model.py`) and the
training's held-out probe (`mdp.curriculum.heldout`) both do: read held-out items
from a pack, build the request a question kind asks for, answer a batch greedily,
and score exact answers per question family.

    items = items_from_pack("runs/data/heldout.pack.npz", limit=120)
    answer(model, items, batch=64)                  # fills it["text"]
    score(items, "spoken"); per_family(items, "text_ok")["all"]["accuracy"]

Question kinds: `spoken` (the question's audio with the camera on, the layout
`omni serve` builds: what the bars judge), `text` (the question as text beside
the picture), `transcribe` (write down the spoken question) and `caption`
(describe the picture).
"""

from __future__ import annotations

import math
import sys

import numpy as np

QUESTIONS = ("spoken", "text", "transcribe", "caption")


def stream_frames(frames: list, num_samples: int, sample_rate: int = 16000) -> tuple[list, list[float]]:
    """The camera over the question: 2 FPS for each started second of audio (a still
    repeats; a video past its end holds its last frame), as the model was trained."""
    n = 2 * max(1, math.ceil(num_samples / sample_rate))
    out = [frames[min(j, len(frames) - 1)] for j in range(n)]
    return out, [j / 2 for j in range(n)]


def items_from_pack(path: str, limit: int = 0, question: str = "spoken", tail_s: float | None = None) -> list[dict]:
    """Held-out samples of a pack: question audio, camera frames, answer, family. `tail_s`:
    every question followed by this much silence instead of its own (0.3-0.7 s)."""
    from omni.synth.pack import Pack
    from omni.synth.questions import scene_caption

    pack = Pack(path)
    if tail_s is not None:  # columns: snr_db, lead_s, tail_s, gain_db
        pack.sample_noise = np.array(pack.sample_noise, dtype=np.float64)
        pack.sample_noise[:, 2] = tail_s
    # a tool request is answered after the tool's output (bench/tool_world.py asks those)
    index = [i for i in range(len(pack)) if pack.family(i) != "tool"]
    if limit and limit < len(index) and question != "caption":  # read only the chosen samples
        index = [index[k] for k in _stride(len(index), limit)]
    items = []
    for i in index:
        frames = pack.frames(i)
        k = int(pack.sample_scene[i])
        items.append({"id": pack.sample_id(i), "family": pack.family(i), "audio": pack.question_audio(i),
                      "question_text": pack.question_text(i),
                      "caption": scene_caption(pack.scene(k)) if k >= 0 else None,
                      "frames": None if frames is None else list(frames), "answer": pack.answer_text(i),
                      "accept": [pack.answer_text(i)]})
    return select(items, limit, question)


def select(items: list[dict], limit: int, question: str) -> list[dict]:
    """Normalized accepted answers; for captions one item per scene; `limit` items
    at an even stride over the split (every family keeps its share)."""
    from omni.synth.questions import normalize_answer

    for it in items:
        it["accept_norm"] = sorted({normalize_answer(a) for a in it["accept"] + [it["answer"]]})
    if question == "caption":  # pictures only; a scene asked about several times counts once
        seen: set = set()
        items = [it for it in items if it["caption"] and not (it["caption"] in seen or seen.add(it["caption"]))]
    if limit and limit < len(items):
        items = [items[k] for k in _stride(len(items), limit)]
    return items


def rerender(items: list[dict], pack_path: str, voice_split: str, seed: int = 0) -> list[dict]:
    """Copies of `items` (of the pack at `pack_path`) whose audio is the question text spoken
    by a fresh voice of `voice_split` ("train" or "heldout", `voices.sample_voice`), heard
    through the sample's stored microphone: the same question in another kind of voice."""
    from .audio import to_float
    from .pack import Pack
    from .voices import sample_voice, synthesize
    from .world import rng_for

    pack = Pack(pack_path)
    index = {pack.sample_id(i): i for i in range(len(pack))}
    out = []
    for it in items:
        voice = sample_voice(rng_for(seed, "rerender", it["id"], voice_split), voice_split)
        clean = to_float(synthesize(it["question_text"], voice))
        out.append({**it, "voice": voice.key(), "audio": pack.question_audio(index[it["id"]], clean=clean)})
    return out


def reword(items: list[dict], pack_path: str, split: str = "train", seed: int = 0) -> list[dict]:
    """Copies of `items` whose question asks the same query in a random wording of `split`
    (`questions.TEMPLATES` / `GREETINGS`): a held-out question in a training wording, the
    scene, answer and phrase unchanged. `question_text` changes; the audio does not (pass
    the copies to `rerender` to hear the new words)."""
    from .pack import Pack
    from .questions import word_query
    from .world import rng_for

    pack = Pack(pack_path)
    index = {pack.sample_id(i): i for i in range(len(pack))}
    out = []
    for it in items:
        i = index[it["id"]]
        family, kind = pack.meta["sample_wordings"][i].split("/")[:2]
        _, text = word_query(family, kind, pack.meta["sample_queries"][i], split, rng_for(seed, "reword", it["id"], split))
        out.append({**it, "question_text": text})
    return out


def _stride(n: int, limit: int) -> list[int]:
    return [int(k) for k in np.linspace(0, n - 1, limit).round().astype(int)]


def request(it: dict, question: str = "spoken", system: str | None = None):
    """The OmniRequest of one item for a question kind (after `system`, e.g. a tool's
    declaration, when given)."""
    req = _request(it, question)
    req.system = system
    return req


def _request(it: dict, question: str):
    from omni.generation import OmniRequest
    from omni.synth.questions import CAPTION_PROMPT, TRANSCRIBE_PROMPT

    frames = it["frames"]
    if question == "transcribe":
        return OmniRequest(audio=it["audio"], text=TRANSCRIBE_PROMPT)
    if question == "caption":
        return OmniRequest(text=CAPTION_PROMPT, images=[frames[0]])
    if question == "text":  # the `omni chat --image --text` layout; a video as its 2 FPS frames
        if not frames:
            return OmniRequest(text=it["question_text"])
        if len(frames) == 1:
            return OmniRequest(text=it["question_text"], images=list(frames))
        return OmniRequest(text=it["question_text"], video=list(frames), video_times=[k * 0.5 for k in range(len(frames))])
    if frames is None:
        return OmniRequest(audio=it["audio"])
    frames, times = stream_frames(frames, len(it["audio"]))
    return OmniRequest(audio=it["audio"], video=frames, video_times=times)


def answer(model, items: list[dict], batch: int, question: str = "spoken", max_steps: int = 80,
           decode_audio: bool = False, progress: bool = True, system: str | None = None) -> None:
    """Fill it["text"] (and it["reply_audio"] with `decode_audio`) for every item, greedy, batched;
    every request after the system prompt `system` when given."""
    from tqdm import tqdm

    from omni.generation import GenerationOptions, generate

    # the probes' replies were trained as text (`ASSISTANT:`), the questions' in both modes
    opts = GenerationOptions(max_new_tokens=max_steps, speech=question in ("spoken", "text"), decode_audio=decode_audio)
    for k in tqdm(range(0, len(items), batch), desc="held-out", unit="batch", file=sys.stderr, disable=not progress):
        chunk = items[k : k + batch]
        for it, rep in zip(chunk, generate(model, [request(it, question, system) for it in chunk], opts)):
            it["text"] = rep.text
            it["frames_out"] = int(len(rep.frames))
            if decode_audio:
                it["reply_audio"] = rep.audio


def word_accuracy(ref: str, hyp: str) -> float:
    """1 - word error rate (Levenshtein over words), floored at 0."""
    from speech.judge import word_errors

    return max(0.0, 1.0 - word_errors(ref, hyp) / max(1, len(ref.split())))


def caption_f1(ref: str, hyp: str) -> float:
    """F1 of the objects a caption names ("red circle top"), against the scene's."""
    objs = lambda c: {" ".join(p.split()) for p in c.split(",") if p.strip()}
    a, b = objs(ref), objs(hyp)
    hit = len(a & b)
    return 0.0 if not hit else 2 * hit / (len(a) + len(b))


def score(items: list[dict], question: str) -> None:
    """it["text_ok"] (exact, normalized) and it["score"] (a partial credit in [0, 1])."""
    from omni.synth.questions import normalize_answer

    for it in items:
        got = normalize_answer(it["text"])
        if question == "transcribe":
            ref = normalize_answer(it["question_text"])
            it["text_ok"], it["score"] = got == ref, word_accuracy(ref, got)
        elif question == "caption":
            it["text_ok"] = it["text"].strip().lower() == it["caption"]
            it["score"] = caption_f1(it["caption"], it["text"].lower())
        else:
            it["text_ok"] = got in it["accept_norm"]


def per_family(items: list[dict], key: str) -> dict:
    """{family: {n, accuracy}} and "all", over the items that have `key`."""
    fams: dict[str, list[bool]] = {}
    for it in items:
        if key in it:
            fams.setdefault(it["family"], []).append(bool(it[key]))
    out = {f: {"n": len(v), "accuracy": round(sum(v) / len(v), 4)} for f, v in sorted(fams.items())}
    allv = [bool(it[key]) for it in items if key in it]
    out["all"] = {"n": len(allv), "accuracy": round(sum(allv) / max(1, len(allv)), 4)}
    return out

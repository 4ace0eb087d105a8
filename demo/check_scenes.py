"""Ask a scene folder's questions the way the demo page asks them, and keep what works.

    python -m demo.check_scenes --scenes omni/pretrained/default/demo --model omni/pretrained/default

`omni data demo-scenes` judges questions offline; the page asks through the server: the
scene streamed as the camera at 2 frames a second from 2 s before the question, the
held-out recording with 0.3 s of silence before and 1.5 s after, in real time, the tools
the model's card names declared and run as the page runs them. The
two inputs differ (the stream layout, the timing), and so do the answers, often. This
starts `omni serve` on the model (as `omni demo` does), asks every question marked
`offline_ok` the page's way, records `stream_ok` / `stream_reply`, and rewrites the
folder: per scene the questions answered right this way first (then the offline
ones), `--per-scene` of them; only scenes with one such question, `--keep` of them;
the files of what was dropped are deleted. The folder's light requests (where the model's
card names the light) are asked the same way, the first kept scene on the camera: right when
the model makes exactly the asked call and then says what the page's light answered. Each
request comes in several held-out voices (takes): they are asked in turn until one is right,
and the page suggests that one (else the first, marked wrong); `takes_asked` records how many.
Real time: about 6 s a question.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

from demo.app import fetch_session
from demo.scenes import QUESTION_PAD_S, Question, Scene, SceneSet, frame_jpeg, pad_question, read_question
from demo.tools import CALL_DONE, PageTools, card_tools
from demo.turns import page_turn_detection, play_as_microphone
from streaming.client import RealtimeClient

CAMERA_LEAD_S = 2.0  # the page's camera runs before a question is played


def normalize(text: str) -> str:
    """Lower case, letters and digits, single spaces: the world's exact-match form
    (`omni.synth.questions.normalize_answer`, written again: the demo never imports omni)."""
    kept = "".join(c if c.isalnum() or c.isspace() else " " for c in text.lower())
    return " ".join(kept.split())


async def ask_like_the_page(url: str, scene: Scene, audio: Path, timeout: float = 60.0) -> tuple[str, list]:
    """One question (or light request) as the page asks it, the tools the model's card names
    declared and run by the page's own `PageTools`: (what the assistant said last, the calls
    it made as (name, arguments)). A reply that calls a tool gets the page's outputs, and its
    text is that of the reply the page then asks for."""
    jpegs = {f: frame_jpeg(f) for f in scene.frames}
    clip = read_question(Question("", "", audio, None))
    async with RealtimeClient(url) as c:
        tools = card_tools(c.session)  # the page declares the tools the model's card names
        await c.configure(input_rate=16000, output_rate=24000, transcription=None,
                          **({"tools": tools, "tool_choice": "auto"} if tools else {}),
                          **page_turn_detection(c.session))  # and ends turns as the page does
        if tools:
            PageTools().start(c)
        t0 = [time.perf_counter()]  # a video starts with the camera, and again with the question

        async def camera() -> None:
            while True:
                await c.append_image(jpegs[scene.frame_at(time.perf_counter() - t0[0])])
                await asyncio.sleep(0.5)

        cam = asyncio.create_task(camera())
        try:
            await asyncio.sleep(CAMERA_LEAD_S)
            t0[0] = time.perf_counter()
            n = len(c.events)
            await play_as_microphone(c, pad_question(clip))
            reply = await c.wait_response(timeout, start=n)
            calls = [(e["name"], e["arguments"]) for e in c.events[n:] if e["type"] == CALL_DONE]
            if calls:  # the page answers them and asks for the next reply
                first = reply.id
                done = await c.wait_for(lambda e: e["type"] == "response.done" and e["response"]["id"] != first,
                                        timeout, start=n)
                reply = c.replies[done["response"]["id"]]
        finally:
            cam.cancel()
    return reply.transcript, calls


def judge_request(q: dict, said: str, calls: list) -> bool:
    """A light request went right: exactly the asked call, and the answer its output calls for."""
    made = [(name, json.loads(arguments)) for name, arguments in calls]
    return made == [(q["tool"], q["arguments"])] and normalize(said) == normalize(q["answer"])


def check(doc: dict, root: Path, url: str, keep: int, per_scene: int, progress: bool = True,
          videos: int = 0, turns: dict | str = "server default") -> dict:
    """Ask, judge and prune `doc` (scenes.json) in place; returns a summary. Up to `videos`
    of the `keep` scenes are videos (when that many have a question answered right); `turns`,
    the turn detection the page asks of this server (recorded with the results)."""
    asked = right = 0
    kept, kept_videos = [], []
    loaded = {s.id: s for s in SceneSet.load(root).scenes}
    for scene in doc["scenes"]:
        is_video = bool(scene.get("video"))
        if (len(kept_videos) if is_video else len(kept)) >= (videos if is_video else keep - videos):
            continue  # this kind's quota is full: no need to ask
        for q in scene["questions"]:
            if q.get("offline_ok"):
                q["stream_reply"], _ = asyncio.run(ask_like_the_page(url, loaded[scene["id"]], root / q["audio"]))
                accept = {normalize(a) for a in [q["answer"], *q.get("accept", [])]}
                q["stream_ok"] = normalize(q["stream_reply"]) in accept
                asked, right = asked + 1, right + q["stream_ok"]
            else:
                q["stream_ok"], q["stream_reply"] = False, None
        if any(q["stream_ok"] for q in scene["questions"]):
            scene["questions"] = sorted(scene["questions"], key=lambda q: (not q["stream_ok"], not q.get("offline_ok")))
            scene["questions"] = scene["questions"][:per_scene]
            (kept_videos if is_video else kept).append(scene)
            if progress:
                print(f"check_scenes: {len(kept)} stills, {len(kept_videos)} videos ({scene['id']}; "
                      f"{right}/{asked} right so far)", file=sys.stderr, flush=True)
        if len(kept) >= keep - videos and len(kept_videos) >= videos:
            break
    order = {s["id"]: k for k, s in enumerate(doc["scenes"])}
    kept = video_second(sorted(kept[: keep - len(kept_videos)] + kept_videos, key=lambda s: order[s["id"]]))
    doc["scenes"] = kept
    # the light requests (listed beside every scene), asked with the first scene on the camera;
    # each take (another held-out voice) in turn until the model gets one right: the page
    # suggests that one (else the first), and `takes_asked` says how many it took
    requests = doc.get("requests") or []
    for q in requests if kept else []:
        takes = q.get("takes") or [q["audio"]]
        for n, take in enumerate(takes, 1):
            said, calls = asyncio.run(ask_like_the_page(url, loaded[kept[0]["id"]], root / take))
            ok = judge_request(q, said, calls)
            if ok or n == 1:
                q["audio"], q["stream_reply"], q["stream_calls"] = take, said, [list(c) for c in calls]
                q["stream_ok"] = ok
            if ok:
                break
        q["takes_asked"] = n
        q["takes"] = [q["audio"]]  # the others are dropped with their files
    doc["stream_check"] = {"camera_lead_s": CAMERA_LEAD_S, "question_pad_s": list(QUESTION_PAD_S),
                           "turn_detection": turns, "asked": asked, "right": right}
    return {"scenes": len(kept), "asked": asked, "right": right,
            "requests": len(requests), "requests_right": sum(bool(q.get("stream_ok")) for q in requests),
            "request_takes_asked": sum(q.get("takes_asked", 0) for q in requests),
            "videos": sum(bool(s.get("video")) for s in kept), "suggestions": sum(len(s["questions"]) for s in kept),
            "suggestions_right": sum(q["stream_ok"] for s in kept for q in s["questions"])}


def video_second(scenes: list[dict]) -> list[dict]:
    """The page opens on the first scene; "next scene" shows the second. Open on a still
    (the simplest questions) and make the next a video, so that one click shows motion."""
    stills = [s for s in scenes if not s.get("video")]
    videos = [s for s in scenes if s.get("video")]
    if not stills or not videos:
        return scenes
    rest = [s for s in scenes if s is not stills[0] and s is not videos[0]]
    return [stills[0], videos[0], *rest]


def prune_files(doc: dict, root: Path) -> int:
    """Delete the images and recordings scenes.json no longer names; returns how many."""
    named = {root / f for s in doc["scenes"] for f in [s["image"], *s.get("frames", [])]}
    named |= {root / q["audio"] for s in doc["scenes"] for q in s["questions"]}
    named |= {root / q["audio"] for q in doc.get("requests") or []}
    gone = 0
    for sub in ("images", "questions"):
        for f in (root / sub).glob("*"):
            if f not in named:
                f.unlink()
                gone += 1
    return gone


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m demo.check_scenes", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenes", required=True, help="scene folder (scenes.json), rewritten in place")
    p.add_argument("--model", required=True, help="the model directory the server runs")
    p.add_argument("--keep", type=int, default=10, help="scenes to keep (default 10)")
    p.add_argument("--per-scene", type=int, default=3, help="questions per scene (default 3)")
    p.add_argument("--videos", type=int, default=3, help="of the kept scenes, up to this many videos (default 3)")
    p.add_argument("--device", default="cpu", help="the server's device (default cpu)")
    p.add_argument("--server-timeout", type=float, default=300.0, help="seconds to wait for the server")
    args = p.parse_args(argv)
    root = Path(args.scenes)
    if not (root / "scenes.json").is_file():
        p.error(f"--scenes: {root} holds no scenes.json (write one with `omni data demo-scenes`)")
    if args.keep < 1 or args.per_scene < 1:
        p.error("--keep and --per-scene must be >= 1")
    from demo.cli import start_server

    doc = json.loads((root / "scenes.json").read_text())
    server_args = argparse.Namespace(server_port=None, device=args.device, flavor=None, model=args.model, api_key=None,
                                     server_timeout=args.server_timeout)
    t0 = time.perf_counter()
    proc, url = start_server(server_args)
    try:
        # the turn detection the page (and so every question here) asks of this server (demo.turns)
        turns = page_turn_detection(asyncio.run(fetch_session(url))).get("turn_detection", "server default")
        summary = check(doc, root, url, args.keep, args.per_scene, videos=min(args.videos, args.keep), turns=turns)
    finally:
        proc.terminate()
        proc.wait(30)
    (root / "scenes.json").write_text(json.dumps(doc, indent=1) + "\n")
    summary["files_deleted"] = prune_files(doc, root)
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

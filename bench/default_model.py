"""Quality bars of the default model on held-out scenes, voices and wordings.

    python bench/default_model.py --model MODEL_DIR --data runs/data/heldout            # CPU, from files
    python bench/default_model.py --model MODEL_DIR --pack runs/data/heldout.pack.npz   # any device, numpy only

1. Text answers: the spoken question with the camera on (the chunk-interleaved
   layout `omni serve` builds: 2 FPS frames over the question's seconds), answered
   offline by `omni.generation.generate` (greedy); exact match after
   normalization against the accepted answers, per question family (bar: 90%).
2. Spoken answers (`--data` only): the reply's audio, decoded by the model's
   codec, recognized by pocketsphinx restricted to a JSGF grammar of every
   possible answer (`omni.synth.recognize`); right when it hears the right answer
   (bar: 80%).
3. Streaming (`--stream N`, `--data` only): N held-out questions through a real
   `omni serve` on this machine and `omni client` in real time (question WAV +
   the scene's stream video): accuracy next to the offline answers of the same
   questions, the client- and server-side latency breakdown, and the server's
   real-time figures; `--turn-detection semantic_vad` ends the turns by the
   model's judgment instead of silence.

`--declare-tools` asks every question after the system prompt declaring the world's tool
(`set_light`), as a served session that declares it: a model trained with the tool must
answer them as well as without, and call nothing.

`--question` picks a diagnostic instead of the bars' spoken questions, to tell
whether a model that fails them cannot see or cannot hear:
  text        the same questions as text beside the picture (`omni chat --image --text`);
  transcribe  the spoken question + "write down what I said": exact transcripts and
              word accuracy (1 - word error rate) against the question's text;
  caption     each question's picture + "describe the picture": exact captions and
              the F1 of the named objects (color, shape, place) against the scene.

Writes a JSON report (default bench/results/default_model.json). Untrained or
smoke checkpoints run too; their numbers are meaningless.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

# run as a script: the repository root, not bench/ (bench/encoders.py would shadow the package)
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from omni.commands.argtypes import float_between, int_between  # noqa: E402
from omni.synth.heldout import QUESTIONS, answer, per_family, score  # noqa: E402

BARS = {"text": 0.90, "speech": 0.80}


def load_items(args) -> list[dict]:
    """Held-out samples: question audio, camera frames, answer, accepted forms, family."""
    from omni.synth.heldout import items_from_pack, select

    if args.pack:
        return items_from_pack(args.pack, args.limit, args.question, tail_s=args.tail_s)
    from encoders.media import read_video
    from omni.synth.audio import read_wav, to_float
    from omni.synth.build import read_jsonl
    from omni.synth.questions import scene_caption
    from omni.synth.world import Scene

    # a tool request is answered after the tool's output, not from the files (bench/tool_world.py asks those)
    rows = [r for r in read_jsonl(os.path.join(args.data, "manifest.jsonl")) if r["family"] != "tool"]
    scenes = {d["scene_id"]: Scene.from_dict(d) for d in read_jsonl(os.path.join(args.data, "scenes.jsonl"))}
    items = []
    for r in rows:
        frames = None
        if r.get("video"):
            frames = list(read_video(os.path.join(args.data, r["video"])).frames)
        elif r.get("image"):
            from PIL import Image

            with Image.open(os.path.join(args.data, r["image"])) as im:
                frames = [np.asarray(im.convert("RGB"))]
        wav = to_float(read_wav(os.path.join(args.data, r["question_audio"]))[0])
        items.append({"id": r["id"], "family": r["family"], "audio": wav, "frames": frames,
                      "question_text": r["question_text"],
                      "caption": scene_caption(scenes[r["scene_id"]]) if r.get("scene_id") in scenes else None,
                      "answer": r["answer_text"], "accept": r.get("accept") or [r["answer_text"]],
                      "question_audio": r["question_audio"], "stream_video": r.get("stream_video")})
    return select(items, args.limit, args.question)


def mean_score(items: list[dict]) -> dict:
    fams: dict[str, list[float]] = {}
    for it in items:
        fams.setdefault(it["family"], []).append(it["score"])
        fams.setdefault("all", []).append(it["score"])
    return {f: {"n": len(v), "mean": round(sum(v) / len(v), 4)} for f, v in sorted(fams.items(), key=lambda x: x[0] == "all")}


def judge_speech(items: list[dict], sample_rate: int) -> None:
    from omni.synth.questions import answer_space, normalize_answer
    from omni.synth.recognize import AnswerRecognizer

    rec = AnswerRecognizer(answer_space())
    for it in items:
        wav = it.pop("reply_audio", None)
        heard = rec.recognize(np.asarray(wav, np.float32), sample_rate) if wav is not None and len(wav) else ""
        it["heard"] = heard
        it["speech_ok"] = heard != "" and heard in it["accept_norm"] + [normalize_answer(it["answer"])]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def streaming(args, items: list[dict]) -> dict:
    """N questions through `omni serve` + `omni client` (real time), one after another."""
    from omni.synth.questions import normalize_answer

    port = _free_port()
    env = dict(os.environ, PYTHONPATH=os.getcwd(), HF_HUB_OFFLINE="1")
    log = tempfile.TemporaryFile("w+")  # the server's output: shown only if it fails to start
    server = subprocess.Popen([sys.executable, "-m", "omni.cli", "serve", "--model", args.model, "--port", str(port),
                               "--device", "cpu"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        t0 = time.time()
        while True:
            try:  # the health check, not a bare TCP probe (the server logs those as bad handshakes)
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).read()
                break
            except OSError:
                if server.poll() is not None or time.time() - t0 > 120:
                    log.seek(0)
                    raise RuntimeError("omni serve did not start; its output ends:\n" + log.read()[-2000:])
                time.sleep(0.5)
        chosen = items[:: max(1, len(items) // args.stream)][: args.stream]
        reply_wav = os.path.join(os.path.dirname(os.path.abspath(args.out)), "default_model_stream_reply.wav")
        rows = []
        for it in chosen:
            cmd = [sys.executable, "-m", "omni.cli", "client", "--url", f"ws://127.0.0.1:{port}", "--json",
                   "--wav", os.path.join(args.data, it["question_audio"]), "--out", reply_wav, "--timeout", "60",
                   "--turn-detection", args.turn_detection]
            if args.speculative_silence_ms is not None:
                cmd += ["--speculative-silence-ms", str(args.speculative_silence_ms)]
            if it.get("stream_video"):
                cmd += ["--video", os.path.join(args.data, it["stream_video"])]
            res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180)
            out = res.stdout
            text = ""
            for line in out.splitlines():
                if line.startswith("assistant: "):
                    text = line[len("assistant: "):]
            js = out[out.find("{"):] if "{" in out else "{}"
            try:
                report = json.loads(js)
            except json.JSONDecodeError:
                report = {}
            rows.append({"id": it["id"], "family": it["family"], "text": text, "rc": res.returncode,
                         "ok": normalize_answer(text) in it["accept_norm"], "offline_ok": bool(it.get("text_ok")),
                         "same_as_offline": normalize_answer(text) == normalize_answer(it.get("text", "")),
                         "latency": report,
                         # why a session failed, in the client's words (its last line on stderr)
                         "error": (res.stderr.strip().splitlines() or [""])[-1] if res.returncode else None})
    finally:
        if os.path.exists(reply_wav := os.path.join(os.path.dirname(os.path.abspath(args.out)), "default_model_stream_reply.wav")):
            os.remove(reply_wav)
        server.terminate()
        server.wait(timeout=30)
        log.close()
    lat: dict[str, list[float]] = {}
    for r in rows:
        for side, vals in r["latency"].items():
            for k, v in vals.items():
                if isinstance(v, (int, float)):
                    lat.setdefault(f"{side}.{k}", []).append(float(v))
    n = max(1, len(rows))
    return {
        "n": len(rows),
        "turn_detection": args.turn_detection,
        "speculative_silence_ms": args.speculative_silence_ms,  # None: the server's default
        "accuracy": round(sum(r["ok"] for r in rows) / n, 4),
        "offline_accuracy_same_questions": round(sum(r["offline_ok"] for r in rows) / n, 4),
        "same_text_as_offline": round(sum(r["same_as_offline"] for r in rows) / n, 4),
        "failed_sessions": sum(r["rc"] != 0 for r in rows),
        "latency_median": {k: round(statistics.median(v), 1) for k, v in sorted(lat.items())},
        "rows": rows,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--model", required=True, help="OmniModel checkpoint directory")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="held-out split directory (omni data build --split heldout)")
    src.add_argument("--pack", help="held-out pack (.npz): text answers only, no files needed")
    p.add_argument("--limit", type=int, default=0, help="evaluate this many samples (even stride; 0 = all)")
    p.add_argument("--batch", type=int, default=16, help="requests per batched generate call")
    p.add_argument("--max-steps", type=int, default=80, help="decode steps per reply (60 ms of speech each)")
    p.add_argument("--stream", type=int, default=0, help="also stream this many questions through omni serve + client")
    p.add_argument("--turn-detection", choices=["server_vad", "semantic_vad"], default="server_vad",
                   help="the streamed sessions' turn detection (default server_vad)")
    p.add_argument("--speculative-silence-ms", type=int_between(32, 10000), default=None, metavar="MS",
                   help="the streamed sessions' speculation point (default: the server's for the turn detection)")
    p.add_argument("--tail-s", type=float_between(0.0, 5.0), default=None, metavar="S",
                   help="with --pack: every question followed by S seconds of silence instead of its own "
                        "(0.3-0.7 s): what a turn cut soon after the last word costs the answers")
    p.add_argument("--question", choices=QUESTIONS, default="spoken",
                   help="spoken: the held-out spoken question with the camera on (what the bars judge); "
                        "text / transcribe / caption: diagnostics that tell hearing from seeing (see below)")
    p.add_argument("--vision-max-tokens", type=int, default=0,
                   help="resize pictures to at most this many patches instead of the model's own limit "
                        "(0 = the model's): what a picture size the model was not trained on costs")
    p.add_argument("--declare-tools", action="store_true",
                   help="ask every question after the system prompt that declares the world's tool (set_light), "
                        "as a session that declares it does: a model trained with the tool must still answer")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    p.add_argument("--out", default="bench/results/default_model.json", help="JSON report path")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.stream and not args.data:
        p.error("--stream needs --data (the client streams the split's files)")
    from omni.model import OmniModel
    t0 = time.time()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    model = OmniModel.from_pretrained(args.model, device=args.device)
    if args.vision_max_tokens:  # the vision encoder resizes with the model's own VisionConfig
        model.config.vision.max_tokens = args.vision_max_tokens
    items = load_items(args)
    speech = bool(args.data) and args.question in ("spoken", "text")  # probes reply in text
    system = None
    if args.declare_tools:
        from omni.synth.tool_world import system_prompt
        system = system_prompt()
    answer(model, items, args.batch, args.question, args.max_steps, decode_audio=speech, system=system)
    score(items, args.question)
    report = {
        "model": os.path.basename(os.path.normpath(args.model)),
        "source": "files" if args.data else "pack",
        "question": args.question,
        "vision_max_tokens": model.config.vision.max_tokens,
        "tools_declared": bool(args.declare_tools),
        "tail_s": args.tail_s,  # None: each question's own silence after it
        "device": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else
                  f"{platform.machine()} CPU, {os.cpu_count()} cores (shared)",
        "bars": BARS,
        "text": per_family(items, "text_ok"),
    }
    if args.declare_tools:  # a question is never a request for the light: any call is a wrong reply
        from omni.tool_calls import CALL_OPEN
        report["replies_with_a_call"] = sum(CALL_OPEN in it["text"] for it in items)
    if args.question in ("transcribe", "caption"):
        report["partial_credit"] = {"measure": "word accuracy" if args.question == "transcribe" else "object F1",
                                    **mean_score(items)}
    if speech:
        judge_speech(items, model.output_sample_rate)
        report["speech"] = per_family(items, "speech_ok")
    if args.stream:
        report["streaming"] = streaming(args, items)
    report["wall_s"] = round(time.time() - t0, 1)
    ref = {"transcribe": "question_text", "caption": "caption"}.get(args.question, "answer")
    report["samples"] = [{"id": it["id"], "family": it["family"], "reference": it[ref],
                          **{k: it.get(k) for k in ("text", "text_ok", "score", "heard", "speech_ok")}} for it in items]
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(report, fh, indent=1)
    print(f"default model {args.model} on {report['device']}, {len(items)} held-out samples ({report['source']}, "
          f"{args.question} questions)")
    partial = report.get("partial_credit")
    print(f"{'family':12} {'n':>5} {'exact':>7}" + (f" {'speech':>7}" if speech else "")
          + (f"  {partial['measure']}" if partial else ""))
    for fam, v in report["text"].items():
        row = f"{fam:12} {v['n']:5d} {v['accuracy']:7.1%}"
        if speech:
            row += f" {report['speech'][fam]['accuracy']:7.1%}"
        if partial:
            row += f"  {partial[fam]['mean']:.3f}"
        print(row)
    print(f"bars: text >= {BARS['text']:.0%}, speech >= {BARS['speech']:.0%}")
    if args.declare_tools:
        print(f"the world's tool declared: {report['replies_with_a_call']} of {len(items)} replies called it")
    if args.stream:
        s = report["streaming"]
        print(f"streaming: {s['n']} questions, accuracy {s['accuracy']:.1%} (offline on the same: "
              f"{s['offline_accuracy_same_questions']:.1%}), same text as offline {s['same_text_as_offline']:.1%}, "
              f"failed sessions {s['failed_sessions']}")
        for k, v in s["latency_median"].items():
            print(f"  median {k:55s} {v}")
    print(f"wrote {args.out} ({report['wall_s']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

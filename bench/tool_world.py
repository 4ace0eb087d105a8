"""The default world's tool end to end, offline: request -> call -> output -> spoken answer.

Each case (`omni/synth/tool_world.py`: a request in a held-out or train wording, the light
answering or not) is one conversation of `RealtimeOmni`, the object the server drives: a
slot opens with the system prompt a client that declares `set_light` gives its session,
hears the request (typed, or spoken by a voice of the split's espeak-ng set), and replies.
The reply's call blocks are split off as the server splits them (`ReplyStream`) and
checked by the server's checker (`check_call`); the tool's output goes in as a tool turn,
and the model answers. Scored per case: a call (exactly one block, a valid call of
`set_light`), the call (the same with the asked `on`), the answer (exact match of the spoken answer's text to
the one the output calls for), and both. Cases run as a batch of slots, greedy.

    python bench/tool_world.py --model omni/pretrained/default --cases 48 --request text
    python bench/tool_world.py --model DIR --request spoken --split heldout --out bench/results/tool_world_cpu.json
    python bench/tool_world.py --model DIR --pack runs/data/heldout.pack.npz   # the pack's tool requests
                                                   # (recorded voices, the camera on where they have a scene; no espeak-ng)

A model that has not learned the tool scores 0 on calls: that is the baseline it is
measured against (the shipped default model's recipe does not train it yet).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from omni.reply_stream import ReplyStream  # noqa: E402
from omni.synth.questions import normalize_answer  # noqa: E402
from omni.synth.tool_world import LIGHT, ToolCase, draw_case, system_prompt  # noqa: E402
from omni.tool_calls import ToolCall, check_call  # noqa: E402


def spoken(case: ToolCase, split: str, seed: int) -> np.ndarray:
    """The request in a random voice of `split`, float32 16 kHz, with 0.3 s of silence after it."""
    from omni.synth.audio import to_float
    from omni.synth.voices import sample_voice, synthesize

    rng = np.random.default_rng(seed)
    pcm = to_float(synthesize(case.request, sample_voice(rng, split)))
    return np.concatenate([pcm, np.zeros(4800, np.float32)])


def reply(rt, slots: list[int], max_steps: int) -> dict[int, str]:
    """Decode every slot's reply to its end (or max_steps); the text of each."""
    text = {s: "" for s in slots}
    live = list(slots)
    for _ in range(max_steps):
        if not live:
            break
        outs = rt.decode_step(live)
        for s, out in zip(live, outs):
            text[s] += out.text
        live = [s for s, out in zip(live, outs) if not out.done]
    rt.end_responses(slots)
    return text


def split_reply(text: str) -> tuple[list, str]:
    """(call pieces, spoken text) of a reply's text, split as the server splits it."""
    rs = ReplyStream()
    pieces = rs.feed(text) + rs.finish()
    return [p for p in pieces if p.kind == "call"], "".join(p.text for p in pieces if p.kind == "text")


def pack_cases(path: str, limit: int) -> tuple[list[ToolCase], list]:
    """The tool requests of a pack (`omni data --tool-ratio`) as cases and the user's input:
    the recorded request and, where the sample has a scene, the camera at 2 FPS."""
    from omni.realtime_api import UserChunk
    from omni.synth.heldout import stream_frames
    from omni.synth.pack import Pack

    pack = Pack(path)
    index = pack.samples_of("tool")
    if not index:
        raise ValueError(f"pack {path} holds no tool requests (build it with omni data --tool-ratio R)")
    index = index[:limit] if limit else index
    cases = [ToolCase.of(pack.question_text(i), pack.meta["sample_queries"][i]) for i in index]
    inputs = []
    for i in index:
        audio, frames = pack.question_audio(i), pack.frames(i)
        shown, times = stream_frames(list(frames), len(audio)) if frames is not None else ([], [])
        inputs.append(UserChunk(audio, shown, 0.0, frame_times=times if shown else None))
    return cases, inputs


def run_cases(rt, cases: list[ToolCase], inputs: list | None, max_steps: int) -> list[dict]:
    """One conversation per case (a slot each), batched; `inputs`: each request as a
    `UserChunk` (spoken), or None (typed)."""
    slots = [rt.open_slot(system_prompt()) for _ in cases]
    try:
        if inputs is None:
            for s, c in zip(slots, cases):
                rt.prefill_text(s, "user", c.request)
        else:
            rt.prefill([(s, rt.encode_chunk(s, chunk)) for s, chunk in zip(slots, inputs)])
        rt.begin_responses([(s, "") for s in slots])
        first = reply(rt, slots, max_steps)
        for s, c in zip(slots, cases):
            rt.prefill_text(s, "tool", c.output)
        rt.begin_responses([(s, "") for s in slots])
        second = reply(rt, slots, max_steps)
    finally:
        for s in slots:
            rt.close_slot(s)
    rows = []
    for s, c in zip(slots, cases):
        calls, said = split_reply(first[s])
        got = [check_call(p.text, {LIGHT.name: LIGHT}) if p.complete else None for p in calls]
        want = ToolCall(LIGHT.name, json.dumps({"on": c.on}, separators=(",", ":")))
        valid = len(got) == 1 and isinstance(got[0], ToolCall)  # one well-formed call of set_light, any `on`
        call_ok = valid and got[0] == want
        _, answer_said = split_reply(second[s])
        answer_ok = normalize_answer(answer_said) == normalize_answer(c.answer)
        rows.append({"request": c.request, "on": c.on, "light_answers": c.ok, "output": c.output,
                     "expected_answer": c.answer, "first_reply": first[s][:400], "said_first": said[:200],
                     "answer": answer_said[:200], "call_valid": valid, "call_ok": call_ok, "answer_ok": answer_ok,
                     "both_ok": call_ok and answer_ok})
    return rows


def summary(rows: list[dict]) -> dict:
    def rate(sel, key):
        sel = list(sel)
        return {"n": len(sel), "accuracy": round(sum(r[key] for r in sel) / len(sel), 4) if sel else None}

    kinds = {f"{'on' if on else 'off'}/{'answers' if ok else 'fails'}": [r for r in rows if r["on"] == on and
                                                                        r["light_answers"] == ok]
             for on in (True, False) for ok in (True, False)}
    return {key: {"all": rate(rows, key), **{k: rate(v, key) for k, v in kinds.items()}}
            for key in ("call_valid", "call_ok", "answer_ok", "both_ok")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="omni/pretrained/default", help="OmniModel directory (default: the shipped model)")
    ap.add_argument("--cases", type=int, default=48, help="conversations to run (default 48; with --pack: at most, 0 for all)")
    ap.add_argument("--pack", default="", help="the tool requests of this pack instead of espeak-ng renderings "
                    "(spoken, with the camera where the sample has a scene)")
    ap.add_argument("--split", choices=("heldout", "train"), default="heldout",
                    help="request wordings and voices of this split (default heldout)")
    ap.add_argument("--request", choices=("text", "spoken"), default="spoken",
                    help="typed request, or spoken by an espeak-ng voice of the split (default spoken)")
    ap.add_argument("--batch", type=int, default=16, help="conversations decoded together (default 16)")
    ap.add_argument("--max-steps", type=int, default=120, help="decode steps per reply at most (default 120)")
    ap.add_argument("--audio-repetition-penalty", type=float, default=None,
                    help="the audio heads' repetition penalty (default: the model's, 1.1)")
    ap.add_argument("--penalize-silence", action="store_true",
                    help="count the codec's silent frame in the audio repetition penalty too (the behaviour without "
                         "OmniConfig.codec_silence_frame), to measure what the exemption does")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--out", default="", help="write the JSON report here")
    args = ap.parse_args(argv)
    if args.cases < (0 if args.pack else 1) or args.batch < 1 or args.max_steps < 1:
        ap.error("--cases (0 only with --pack), --batch and --max-steps must be >= 1")
    if not os.path.isdir(args.model):
        ap.error(f"--model {args.model!r} is not a directory")
    if args.pack and not os.path.isfile(args.pack):
        ap.error(f"--pack {args.pack!r} is not a file")
    if args.threads:
        torch.set_num_threads(args.threads)
    from omni.generation import GenerationOptions
    from omni.model import OmniModel
    from omni.realtime import RealtimeOmni

    t0 = time.perf_counter()
    model = OmniModel.from_pretrained(args.model).to(args.device).eval()
    if args.penalize_silence:
        model.config.codec_silence_frame = ()
    if args.pack:
        try:
            cases, inputs = pack_cases(args.pack, args.cases)
        except ValueError as e:
            ap.error(str(e))
        args.split, args.request = "pack", "spoken"
    else:
        from omni.realtime_api import UserChunk

        rng = np.random.default_rng(args.seed)
        cases = [draw_case(rng, args.split) for _ in range(args.cases)]
        inputs = [UserChunk(spoken(c, args.split, args.seed * 100003 + i)) for i, c in enumerate(cases)] \
            if args.request == "spoken" else None
    rt = RealtimeOmni(model, max_slots=args.batch, capacity=2048,
                      options=GenerationOptions(max_new_tokens=args.max_steps, decode_audio=False,
                                                audio_repetition_penalty=args.audio_repetition_penalty))
    rows = []
    from tqdm import tqdm

    for k in tqdm(range(0, len(cases), args.batch), desc="tool conversations", unit="batch", file=sys.stderr):
        rows += run_cases(rt, cases[k:k + args.batch], None if inputs is None else inputs[k:k + args.batch],
                          args.max_steps)
    report = {"model": args.model, "split": args.split, "request": args.request, "cases": len(cases),
              "silence_exempt": bool(model.config.codec_silence_frame),
              "pack": args.pack or None,
              "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else
              f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)",
              "scores": summary(rows), "wall_s": round(time.perf_counter() - t0, 1), "rows": rows}
    s = report["scores"]
    print(f"tool conversations: {args.model}, {len(cases)} {args.split} cases, request {args.request}")
    print(f"{'case':<16} {'n':>4} {'a call':>8} {'call':>8} {'answer':>8} {'both':>8}")
    for k in s["call_ok"]:
        n = s["call_ok"][k]["n"]
        cells = [s[m][k]["accuracy"] for m in ("call_valid", "call_ok", "answer_ok", "both_ok")]
        print(f"{k:<16} {n:>4} " + " ".join(f"{'-' if v is None else f'{100 * v:.1f}%':>8}" for v in cells))
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

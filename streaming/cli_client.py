"""`omni client`: stream a spoken question (and a video) to a server in real time.

    omni client --wav question.wav [--video clip.mp4] [--url ws://127.0.0.1:8765/v1/realtime] [--out reply.wav]

The audio is sent in 40 ms pieces at the pace of a microphone, followed by
silence so the server's VAD can end the turn; video frames (2 FPS, JPEG) go
out when their time comes. The reply's transcript is printed as it arrives,
its speech saved as a WAV, and the latency breakdown printed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import sys
import wave

import numpy as np

from omni.commands.argtypes import existing_file, int_between, non_negative_float, output_file, positive_float
from streaming.client import websocket_url


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wav", required=True, type=existing_file, help="spoken question: WAV (or any audio file PyAV reads)")
    p.add_argument("--video", type=existing_file, help="video to stream alongside (frames at 2 FPS; its own audio is ignored)")
    p.add_argument("--url", type=websocket_url, default="ws://127.0.0.1:8765/v1/realtime",
                   help="server websocket URL (ws:// or wss://)")
    p.add_argument("--api-key", default=os.environ.get("OMNI_API_KEY"), help="bearer token (default $OMNI_API_KEY)")
    p.add_argument("--out", type=output_file, default="reply.wav", help="where to save the spoken reply (default reply.wav)")
    p.add_argument("--silence", type=non_negative_float, default=1.5, help="seconds of silence sent after the question (then silence goes on "
                   "in real time, as from an open microphone, until the server ends the turn)")
    p.add_argument("--fast", action="store_true", help="send as fast as possible instead of in real time")
    p.add_argument("--instructions", help="system prompt for the session")
    p.add_argument("--turn-detection", choices=["server_vad", "semantic_vad"], default="server_vad",
                   help="how the server ends the turn: silence (server_vad, default) or the model's judgment "
                        "(semantic_vad; a model without an end-of-turn head falls back to silence)")
    p.add_argument("--speculative-silence-ms", type=int_between(32, 10000), default=None, metavar="MS",
                   help="silence after which the server starts its reply speculatively (session.update "
                        "turn_detection.speculative_silence_ms; default: the server's, 200 for server_vad, "
                        "128 for semantic_vad)")
    p.add_argument("--timeout", type=positive_float, default=120.0, help="give up after this many seconds")
    p.add_argument("--json", action="store_true", help="print the latency breakdown as JSON")


def read_question(path: str) -> np.ndarray:
    from encoders.media import read_audio

    return read_audio(path, 16000).astype(np.float32)


def turn_detection(args: argparse.Namespace) -> dict:
    """The session's turn_detection setting from the command line."""
    td: dict = {"type": args.turn_detection}
    if args.speculative_silence_ms is not None:
        td["speculative_silence_ms"] = args.speculative_silence_ms
    return td


def video_frames(path: str, fps: float = 2.0) -> list[tuple[float, bytes]]:
    from PIL import Image

    from encoders.media import read_video

    clip = read_video(path, fps=fps, min_frames=1, max_frames=100000, with_audio=False)
    out = []
    for t, f in zip(clip.times, clip.frames):
        buf = io.BytesIO()
        Image.fromarray(f).save(buf, format="JPEG", quality=85)
        out.append((float(t), buf.getvalue()))
    return out


def save_wav(path: str, samples: np.ndarray, rate: int) -> None:
    from streaming.protocol import float_to_pcm16_bytes

    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(float_to_pcm16_bytes(samples))


def breakdown(c, reply, t_speech_end: float | None) -> dict:
    """Client-side timeline relative to the moment the question's last sample was sent."""
    def first(kind: str) -> float | None:
        return next((e["_t"] for e in c.events if e["type"] == kind), None)

    rel = {}
    if t_speech_end is not None:
        for name, t in (("speech_stopped", first("input_audio_buffer.speech_stopped")),
                        ("response_created", reply.t_created), ("first_audio", reply.t_first_audio),
                        ("response_done", reply.t_done)):
            if t is not None:
                rel[f"{name}_after_speech_sent_ms"] = round(1000 * (t - t_speech_end), 1)
    server = {}
    for k, v in reply.server_metrics.items():
        if k.endswith("_s") and not k.endswith("_per_s"):  # seconds -> ms
            server[k[:-2] + "_ms"] = round(1000 * v, 1)
        else:
            server[k] = round(v, 3) if isinstance(v, float) else v
    return {"client": rel, "server": server}


def read_inputs(args: argparse.Namespace) -> tuple[np.ndarray, list[tuple[float, bytes]]]:
    """The question's samples and the video's frames; a file that cannot be decoded is refused."""
    from encoders.media import MediaError

    try:
        question = read_question(args.wav)
    except MediaError as e:
        raise argparse.ArgumentTypeError(f"argument --wav: {e}") from None
    if not len(question):
        raise argparse.ArgumentTypeError(f"argument --wav: {args.wav} holds no audio")
    try:
        frames = video_frames(args.video) if args.video else []
    except MediaError as e:
        raise argparse.ArgumentTypeError(f"argument --video: {e}") from None
    return question, frames


async def _run(args: argparse.Namespace, question: np.ndarray, frames: list[tuple[float, bytes]]) -> int:
    from streaming.client import RealtimeClient

    audio = np.concatenate([question, np.zeros(int(16000 * args.silence), np.float32)])

    def show(e: dict) -> None:
        if e["type"] in ("response.output_audio_transcript.delta", "response.audio_transcript.delta"):
            print(e["delta"], end="", flush=True)
        elif e["type"] == "error":
            print(f"\n[server error] {e['error']['code']}: {e['error']['message']}", file=sys.stderr)

    async with RealtimeClient(args.url, api_key=args.api_key, on_event=show) as c:
        await c.configure(input_rate=16000, output_rate=24000, instructions=args.instructions,
                          turn_detection=turn_detection(args))
        print(f"streaming {len(question) / 16000:.1f} s of speech" + (f" + {len(frames)} frames" if frames else "")
              + f" to {args.url} ...", flush=True)
        print("assistant: ", end="", flush=True)
        n = len(c.events)
        await c.stream_audio(audio, 16000, realtime=not args.fast, frames=frames,
                             speech_end_s=len(question) / 16000)
        # the microphone stays open until the server ends the turn (semantic_vad may wait
        # for more than the tail of silence when it judges the question unfinished)
        await c.keep_silent_until(lambda e: e["type"] in ("input_audio_buffer.committed", "response.created"),
                                  start=n, limit_s=args.timeout)
        reply = await c.wait_response(timeout=args.timeout)
        print()
        wav = reply.waveform()
        save_wav(args.out, wav, c.out_rate)
        report = breakdown(c, reply, c.t_speech_sent_end)
    print(f"status: {reply.status}; reply audio {len(wav) / c.out_rate:.2f} s saved to {args.out}")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print("latency breakdown (ms):")
        for side, values in report.items():
            for k, v in values.items():
                print(f"  {side:6s} {k:40s} {v}")
    return 0 if reply.status in ("completed", "incomplete") else 1


def main(args: argparse.Namespace) -> int:
    from websockets.exceptions import InvalidHandshake, InvalidURI

    question, frames = read_inputs(args)  # before connecting
    try:
        return asyncio.run(asyncio.wait_for(_run(args, question, frames), args.timeout + 60))
    except TimeoutError:
        print(f"omni client: error: no complete reply from {args.url} within {args.timeout:g} s (see --timeout)",
              file=sys.stderr)
        return 1
    except InvalidURI as e:
        print(f"omni client: error: {e}", file=sys.stderr)
        return 2
    except (OSError, ConnectionError, InvalidHandshake) as e:
        print(f"omni client: error: cannot talk to {args.url}: {e}", file=sys.stderr)
        return 2

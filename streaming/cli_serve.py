"""`omni serve`: run the real-time websocket server.

    omni serve                                   # debug flavor, random weights, 127.0.0.1:8765
    omni serve --model runs/default --port 8765 --api-key $KEY --max-sessions 8
    omni serve --model runs/default --device cuda --dtype bf16 --decode-mode graph

Clients connect to ws://HOST:PORT/v1/realtime (OpenAI-Realtime-compatible
events, see docs/protocol.md); Prometheus metrics at http://HOST:PORT/metrics.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from omni.commands.argtypes import (check_listen, device, flavor_choices, log_level, model_dir, port, positive_float,
                                    positive_int, resolved_device)
from omni.transcribe import TRANSCRIBERS


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", metavar="DIR", type=model_dir, help="checkpoint directory (OmniModel.save_pretrained layout)")
    g.add_argument("--flavor", default=None, choices=flavor_choices("omni"),
                   help="serve a randomly initialized model of this flavor (default: the shipped default "
                        "model, or a random debug model when none is shipped)")
    g.add_argument("--device", type=device(allow_auto=True), default="auto", help="cpu, cuda, cuda:1 or auto (default)")
    g.add_argument("--dtype", choices=["auto", "fp32", "bf16", "fp16"], default="auto",
                   help="inference dtype; auto (default) = bf16 on CUDA, fp32 on CPU")
    g.add_argument("--capacity", type=positive_int, default=4096, help="KV-cache tokens per session (default 4096)")
    g.add_argument("--decode-mode", choices=["auto", "eager", "static", "graph", "compiled"], default="auto",
                   help="decode step: graph = CUDA graphs (GPU only), static = the static-shape step, "
                        "eager = the general forward, compiled = the decoder layers compiled with torch.compile, "
                        "in CUDA graphs on a GPU (compiling at start-up; on a CPU with --dtype bf16 only); "
                        "auto (default) = graph on CUDA, eager on CPU")
    g.add_argument("--max-steps", type=positive_int, default=600,
                   help="decode steps per response, 60 ms of speech each (default 600 = 36 s)")
    g.add_argument("--transcriber", choices=[*TRANSCRIBERS, "off"], default="world-sphinx",
                   help="input transcription for sessions that ask for it (audio.input.transcription): "
                        "world-sphinx (default: pocketsphinx with the default world's language model), sphinx "
                        "(pocketsphinx, any English), ctc (the served model's own CTC head), model (the served model "
                        "asked to write down what was said, a second copy of it), off")
    g.add_argument("--input-stage", choices=["thread", "process"], default="thread",
                   help="where microphones are resampled and scored by silero-vad: thread (default: in the server's "
                        "process) or process (a process of its own, whose rounds never wait for the GIL)")
    g.add_argument("--switch-interval-ms", type=positive_float, default=None,
                   help="the interpreter's thread switch interval while serving (default: Python's own, 5): how "
                        "long the input stage and the event loop may wait for the GIL behind the model's thread; "
                        "0.5 helps beside long stretches of Python, and cost a GPU server 6-28 %% of its first-audio "
                        "latency at 32-128 sessions (README)")
    g = p.add_argument_group("network")
    g.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    g.add_argument("--port", type=port, default=8765, help="port (default 8765; 0 picks a free one)")
    g.add_argument("--api-key", default=os.environ.get("OMNI_API_KEY"),
                   help="require 'Authorization: Bearer KEY' (default: $OMNI_API_KEY, else no key)")
    g.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                   help="browser origin allowed besides loopback ones, e.g. https://demo.example (repeatable)")
    g.add_argument("--max-sessions", type=positive_int, default=4, help="concurrent sessions = KV-cache slots (default 4)")
    g.add_argument("--max-message-bytes", type=positive_int, default=1 << 20, help="largest client message (default 1 MiB)")
    g.add_argument("--idle-timeout", type=positive_float, default=300.0, help="close sessions silent this long (s)")
    p.add_argument("--log-level", type=log_level, default="INFO",
                   help="DEBUG, INFO (default), WARNING, ERROR or CRITICAL")


def model_identity(args: argparse.Namespace) -> tuple[str, bool]:
    """What sessions report of the model: (the checkpoint folder's name, else the random
    model's flavor; whether it is trained, i.e. loaded from a checkpoint)."""
    from omni.defaults import resolve_model

    path, flavor = resolve_model(args.model, args.flavor)
    return (os.path.basename(os.path.normpath(path)), True) if path else (flavor, False)


def model_card(args: argparse.Namespace) -> dict | None:
    """What sessions report of what the model knows: its directory's card, if any."""
    from omni.defaults import resolve_model
    from omni.model_card import read_card

    return read_card(resolve_model(args.model, args.flavor)[0])


async def _serve(args: argparse.Namespace) -> int:
    from streaming.model_loader import load_realtime_model
    from streaming.input import InputStageError
    from streaming.server import OmniServer, ServerConfig

    try:
        model, desc = load_realtime_model(args.model, args.flavor, args.device, args.dtype, args.max_sessions,
                                          args.capacity, args.max_steps, decode_mode=args.decode_mode)
    except (FileNotFoundError, ValueError, KeyError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"omni serve: error: cannot load the model: {msg}", file=sys.stderr)
        return 2
    name, trained = model_identity(args)
    cfg = ServerConfig(host=args.host, port=args.port, api_key=args.api_key, allowed_origins=args.allow_origin,
                       max_message_bytes=args.max_message_bytes, max_sessions=args.max_sessions,
                       idle_timeout_s=args.idle_timeout, max_steps=args.max_steps, input_stage=args.input_stage,
                       switch_interval_ms=args.switch_interval_ms,
                       model_name=name, model_trained=trained, model_card=model_card(args), **transcriber_config(args))
    srv = OmniServer(model, cfg)
    try:
        await srv.start()
    except OSError as e:  # the port was taken while the model loaded
        await srv.close()
        print(f"omni serve: error: cannot listen on {args.host}:{args.port} ({e.strerror or e}); "
              "pick another with --port N (--port 0 picks a free one)", file=sys.stderr)
        return 2
    except InputStageError as e:
        await srv.close()
        print(f"omni serve: error: {e}; --input-stage thread runs it in the server's process", file=sys.stderr)
        return 2
    print(f"omni serve: {desc}", flush=True)
    print(f"omni serve: listening on {srv.url}  (metrics: http://{args.host}:{srv.port}/metrics)", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await srv.close()
    return 0


def transcriber_config(args: argparse.Namespace) -> dict:
    """ServerConfig fields of --transcriber ("ctc" reads the CTC head of the served checkpoint, or of a
    random model of the served flavor; "model" asks that model itself)."""
    if args.transcriber == "off":
        return {"transcriber": None}
    extra = {}
    if args.transcriber in ("ctc", "model"):
        from omni.defaults import resolve_model

        path, flavor = resolve_model(args.model, args.flavor)
        extra = {"model_dir": path} if path else {"flavor": flavor}
    return {"transcriber": args.transcriber, "transcriber_args": extra, "prestart_transcriber": True}


def check_arguments(args: argparse.Namespace) -> None:
    """What argparse cannot see alone: the port on this host, graphs on a CPU."""
    check_listen(args.host, args.port)
    if args.decode_mode == "graph" and resolved_device(args.device) == "cpu":
        raise argparse.ArgumentTypeError("--decode-mode graph needs a CUDA device (--device cuda)")
    if args.decode_mode == "compiled" and resolved_device(args.device) == "cpu" and args.dtype != "bf16":
        raise argparse.ArgumentTypeError("--decode-mode compiled on a CPU needs --dtype bf16")


def main(args: argparse.Namespace) -> int:
    check_arguments(args)  # before the model loads
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.host not in ("127.0.0.1", "localhost", "::1") and not args.api_key:
        logging.warning("binding %s without --api-key: anyone who can reach this port can use the model", args.host)
    return asyncio.run(_serve(args))

"""`omni demo`: the live demo page (and, unless --url is given, the server behind it).

    omni demo                                  # starts `omni serve` on the default model, then the page
    omni demo --url ws://gpu-box:8765/v1/realtime --api-key $KEY   # page only, remote server

The page is served on http://127.0.0.1:7860 (headless: open it in a browser;
microphone and camera need localhost or https).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", help="connect to this running server instead of starting one")
    p.add_argument("--api-key", default=os.environ.get("OMNI_API_KEY"), help="server bearer token")
    p.add_argument("--model", metavar="DIR", help="checkpoint for the server this command starts")
    p.add_argument("--flavor", default=None,
                   help="random model of this flavor for the started server (default: the default model)")
    p.add_argument("--device", default="auto", help="device for the started server (default auto)")
    p.add_argument("--server-port", type=int, default=0, help="port of the started server (default: a free one)")
    p.add_argument("--host", default="127.0.0.1", help="bind address of the page (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=7860, help="port of the page (default 7860)")
    p.add_argument("--server-timeout", type=float, default=300.0, help="seconds to wait for the server to start")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    """Run `omni serve` as a child process (the demo never imports the model)."""
    port = args.server_port or _free_port()
    cmd = [sys.executable, "-m", "omni.cli", "serve", "--port", str(port), "--device", args.device]
    if args.flavor:
        cmd += ["--flavor", args.flavor]
    if args.model:
        cmd += ["--model", args.model]
    env = dict(os.environ)
    if args.api_key:
        env["OMNI_API_KEY"] = args.api_key
    proc = subprocess.Popen(cmd, env=env)
    deadline = time.time() + args.server_timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"omni demo: the server exited with code {proc.returncode}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).read()
            return proc, f"ws://127.0.0.1:{port}/v1/realtime"
        except OSError:
            time.sleep(0.3)
    proc.terminate()
    raise SystemExit(f"omni demo: the server did not come up within {args.server_timeout:g} s")


def main(args: argparse.Namespace) -> int:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    proc = None
    url = args.url
    if not url:
        proc, url = start_server(args)
    try:
        from demo.app import make_app

        app = make_app(url, api_key=args.api_key)
        print(f"omni demo: page on http://{args.host}:{args.port} talking to {url}", flush=True)
        app.queue().launch(server_name=args.host, server_port=args.port, share=False, prevent_thread_lock=False)
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
    return 0

"""`omni demo`: the live demo page (and, unless --url is given, the server behind it).

    omni demo                                  # starts `omni serve` on the default model, then the page
    omni demo --url ws://gpu-box:8765/v1/realtime --api-key $KEY   # page only, remote server

The page is served on http://127.0.0.1:7860 (headless: open it in a browser;
microphone and camera need localhost or https).
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

from websockets.exceptions import InvalidHandshake, InvalidURI

from streaming.client import websocket_url

SERVER_OPTIONS = ("--model", "--flavor", "--device", "--server-port")


def _port(text: str) -> int:
    try:
        x = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= x <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 0 to 65535 (0 picks a free one), got {x}")
    return x


def _seconds(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not x > 0:
        raise argparse.ArgumentTypeError(f"must be > 0 seconds, got {text}")
    return x


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", type=websocket_url, help="connect to this running server instead of starting one")
    p.add_argument("--api-key", default=os.environ.get("OMNI_API_KEY"), help="server bearer token")
    p.add_argument("--model", metavar="DIR", help="checkpoint for the server this command starts")
    p.add_argument("--flavor", default=None,
                   help="random model of this flavor for the started server (default: the default model)")
    p.add_argument("--device", default=None, help="device for the started server (default auto)")
    p.add_argument("--server-port", type=_port, default=None,
                   help="port of the started server (default: a free one)")
    p.add_argument("--host", default="127.0.0.1", help="bind address of the page (default 127.0.0.1)")
    p.add_argument("--port", type=_port, default=7860, help="port of the page (default 7860)")
    p.add_argument("--server-timeout", type=_seconds, default=300.0, help="seconds to wait for the server to start")
    p.add_argument("--scenes", metavar="DIR", default=None,
                   help="the virtual camera's scenes (`omni data demo-scenes`; default: the model directory's "
                        "demo/ folder when this command starts the server on a model directory or the shipped "
                        "default model)")
    p.add_argument("--no-scenes", action="store_true", help="no virtual camera: webcam and uploads only")


def _listen_problem(host: str, port: int) -> tuple[str, str] | None:
    """Why nothing could listen on host:port now, as ("host" or "port", reason), or
    None (bound and released at once, with SO_REUSEADDR as a server binds)."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        return "host", f"cannot resolve {host!r} ({e.strerror})"
    if port == 0:
        return None
    for family, kind, proto, _, addr in dict.fromkeys(infos):
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(addr)
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    return "port", f"port {port} is already in use on {host}"
                if e.errno == errno.EADDRNOTAVAIL:
                    return "host", f"{host} is not an address of this machine"
                return "port", f"cannot listen on {host}:{port} ({e.strerror})"
    return None


def check_arguments(args: argparse.Namespace) -> None:
    """Refuse what would fail only after the server has started (ports, contradictions)."""
    if args.url:
        given = [o for o in SERVER_OPTIONS if getattr(args, o[2:].replace("-", "_")) is not None]
        if given:
            raise argparse.ArgumentTypeError(
                f"{', '.join(given)} set up the server this command starts; with --url the server is already "
                "running (drop --url to start one, or drop those options)")
    for option, host, port in (("--port", args.host, args.port), ("--server-port", "127.0.0.1", args.server_port)):
        problem = _listen_problem(host, port or 0)
        if problem:
            which, reason = problem
            if "already in use" in reason:
                reason += f"; pick another with {option} N"
            raise argparse.ArgumentTypeError(f"argument {'--host' if which == 'host' else option}: {reason}")
    if args.server_port and args.server_port == args.port:
        raise argparse.ArgumentTypeError("--server-port and --port must differ")
    if args.scenes and not os.path.isfile(os.path.join(args.scenes, "scenes.json")):
        raise argparse.ArgumentTypeError(f"argument --scenes: {args.scenes} holds no scenes.json "
                                         "(write one with `omni data demo-scenes`)")


def scenes_dir(args: argparse.Namespace) -> str | None:
    """Where the page's scenes come from (see --scenes), or None."""
    if args.no_scenes:
        return None
    if args.scenes:
        return args.scenes
    if args.url or args.flavor:  # a remote server or a random model: its world is not known here
        return None
    # the shipped default model's directory (omni/defaults.py: DEFAULT_MODEL_DIR; the demo
    # never imports omni), used by the started server when no --model is given
    model = args.model or os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "omni",
                                       "pretrained", "default")
    return os.path.join(model, "demo")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerLog(threading.Thread):
    """Relays the started server's stderr to ours, but keeps back an argparse
    refusal (`usage: omni serve ...` + `omni serve: error: ...`) and the
    server's own `omni serve: error:` lines: the demo reports those itself,
    in its own name, since they concern options the user gave `omni demo`."""

    PREFIX = "omni serve: error: "

    def __init__(self, stream, out=None) -> None:
        super().__init__(daemon=True)
        self.stream, self.out = stream, out
        self.refusal: str | None = None

    def run(self) -> None:
        out = self.out or sys.stderr
        in_usage = False
        for line in self.stream:
            if line.startswith("usage: omni serve"):
                in_usage = True
                continue
            if in_usage and line.startswith(" "):
                continue
            in_usage = False
            if line.startswith(self.PREFIX):
                self.refusal = line[len(self.PREFIX):].strip()
                continue
            out.write(line)
            out.flush()


def _die_with_parent() -> None:
    """In the server child, before exec: the kernel sends it SIGTERM when the demo
    process dies, even by SIGKILL (when `finally` below never runs)."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def start_server(args: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    """Run `omni serve` as a child process (the demo never imports the model)."""
    port = args.server_port or _free_port()
    cmd = [sys.executable, "-m", "omni.cli", "serve", "--port", str(port), "--device", args.device or "auto"]
    if args.flavor:
        cmd += ["--flavor", args.flavor]
    if args.model:
        cmd += ["--model", args.model]
    env = dict(os.environ)
    if args.api_key:
        env["OMNI_API_KEY"] = args.api_key
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True, errors="replace",
                            preexec_fn=_die_with_parent if sys.platform == "linux" else None)
    log = ServerLog(proc.stderr)
    log.start()
    deadline = time.time() + args.server_timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            log.join(5)
            if log.refusal:  # a refused --model / --flavor / --device
                raise argparse.ArgumentTypeError(log.refusal)
            raise SystemExit(f"omni demo: error: the server exited with code {proc.returncode} (its log is above)")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).read()
            return proc, f"ws://127.0.0.1:{port}/v1/realtime"
        except OSError:
            time.sleep(0.3)
    proc.terminate()
    raise SystemExit(f"omni demo: error: the server did not come up within {args.server_timeout:g} s "
                     "(see --server-timeout)")


def main(args: argparse.Namespace) -> int:
    check_arguments(args)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    # `kill PID` (SIGTERM: a service manager, a container stop) ends the demo as Ctrl-C
    # does, through the `finally` that stops the server it started
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    proc = None
    url = args.url
    if not url:
        proc, url = start_server(args)
    try:
        import asyncio

        from demo.app import fetch_session, make_app
        from demo.scenes import SceneSet

        try:  # which model the server runs, shown on the page before anyone connects
            session = asyncio.run(fetch_session(url, args.api_key))
        except (OSError, InvalidHandshake, InvalidURI) as e:
            print(f"omni demo: error: cannot connect to the server at {url}: {e}", file=sys.stderr)
            return 2
        try:
            scenes = SceneSet.load(scenes_dir(args))
        except ValueError as e:
            print(f"omni demo: error: {e}", file=sys.stderr)
            return 2
        app = make_app(url, api_key=args.api_key, session=session, scenes=scenes)
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

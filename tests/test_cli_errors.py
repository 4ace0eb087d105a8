"""Common command-line mistakes end in argparse's refusal, at once.

Each case runs `python -m omni.cli ...` as a user would and expects exit status
2, a usage line, one `omni CMD: error: ...` line that names the problem, and
nothing else: no traceback, and no sign of work begun (a model loading, a
server listening, a reply being generated).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("cli")
    (d / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage" + bytes(range(256)) * 4)
    (d / "empty.wav").write_bytes(b"")
    (d / "not_a_model").mkdir()
    return {"corrupt_wav": str(d / "corrupt.wav"), "empty_wav": str(d / "empty.wav"),
            "not_a_model": str(d / "not_a_model"), "dir": str(d)}


@pytest.fixture(scope="module")
def busy_port():
    """A port some other program is listening on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def refused(*argv: str, timeout: float = 120) -> str:
    """Run `omni ARGV`; assert it is refused argparse-style; return its error line."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    res = subprocess.run([sys.executable, "-m", "omni.cli", *argv], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=timeout)
    out = res.stdout + res.stderr
    assert res.returncode == 2, f"exit {res.returncode}:\n{out}"
    assert "Traceback" not in out, out
    assert not res.stdout, f"nothing but the refusal is printed, got on stdout:\n{res.stdout}"
    lines = res.stderr.rstrip("\n").splitlines()
    prog = f"omni {argv[0]}" if argv[0] != "data" else f"omni data {argv[1]}"
    assert lines[-1].startswith(f"{prog}: error: "), out
    assert lines[0].startswith(f"usage: {prog}") and all(ln.startswith(" ") for ln in lines[1:-1]), out
    return lines[-1]


def _has(line: str, *parts: str) -> None:
    for part in parts:
        assert part in line, f"{part!r} not in {line!r}"


# ---- omni serve ------------------------------------------------------------
def test_serve_port_in_use(busy_port):
    _has(refused("serve", "--port", str(busy_port)),
         "argument --port", f"port {busy_port} is already in use", "--port 0")


@pytest.mark.parametrize("argv, parts", [
    (["--model", "/nonexistent"], ["argument --model", "/nonexistent does not exist"]),
    (["--model", "{not_a_model}"], ["argument --model", "config.json"]),
    (["--flavor", "nosuch"], ["argument --flavor", "'nosuch'", "debug", "mini"]),
    (["--max-sessions", "0"], ["argument --max-sessions", ">= 1", "got 0"]),
    (["--capacity", "-1"], ["argument --capacity"]),
    (["--port", "70000"], ["argument --port", "65535"]),
    (["--log-level", "chatty"], ["argument --log-level", "INFO"]),
    (["--decode-mode", "graph", "--device", "cpu"], ["--decode-mode graph", "CUDA"]),
])
def test_serve_refuses(argv, parts, files):
    argv = [a.format(**files) for a in argv]
    _has(refused("serve", "--port", "0", *argv), *parts)


# ---- omni chat -------------------------------------------------------------
@pytest.mark.parametrize("argv, parts", [
    (["--out", "/nonexistent/dir/r.wav"], ["argument --out", "/nonexistent/dir", "does not exist"]),
    (["--out", "{dir}"], ["argument --out", "folder"]),
    (["--max-new-tokens", "-3"], ["argument --max-new-tokens", ">= 1", "-3"]),
    (["--temperature", "-1"], ["argument --temperature", ">= 0", "-1"]),
    (["--top-p", "0"], ["argument --top-p", "(0, 1]"]),
    (["--temperature", "nan"], ["argument --temperature", "finite"]),
    (["--image", "/nonexistent.png"], ["argument --image", "no such file"]),
    (["--model", "/nonexistent"], ["argument --model", "does not exist"]),
    (["--no-speech", "--out", "{dir}/r.wav"], ["--out", "--no-speech"]),
])
def test_chat_refuses(argv, parts, files):
    argv = [a.format(**files) for a in argv]
    _has(refused("chat", "--text", "hi", *argv), *parts)


def test_chat_needs_a_question():
    _has(refused("chat"), "at least one of --text")


def test_chat_refuses_a_missing_gpu():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    _has(refused("chat", "--text", "hi", "--device", "cuda"), "argument --device", "no CUDA GPU", "--device cpu")


def test_chat_reads_its_media_before_the_model(files):
    _has(refused("chat", "--audio", files["corrupt_wav"]), "argument --audio", "corrupt.wav", "corrupt")


# ---- omni eval, generate, convert, data, train -----------------------------
@pytest.mark.parametrize("argv, parts", [
    (["--batch-size", "0"], ["argument --batch-size", ">= 1"]),
    (["--max-new-tokens", "0"], ["argument --max-new-tokens"]),
    (["--flavor", "nosuch"], ["argument --flavor", "debug"]),
])
def test_eval_refuses(argv, parts, files):
    _has(refused("eval", "--task", "asr", "--data", files["dir"], "--out", f"{files['dir']}/report", *argv), *parts)


def test_eval_refuses_missing_data(files):
    _has(refused("eval", "--task", "asr", "--data", "/nonexistent", "--out", f"{files['dir']}/report"),
         "argument --data", "/nonexistent")


def test_eval_refuses_a_data_folder_without_manifest(files):
    _has(refused("eval", "--task", "asr", "--data", files["not_a_model"], "--out", f"{files['dir']}/report"),
         "not_a_model")


def test_generate_refuses_unknown_flavor():  # one case: the module imports torch
    _has(refused("generate", "--flavor", "nosuch", "--prompt", "x"), "argument --flavor", "debug")


def test_convert_refuses_missing_source(files):
    _has(refused("convert", "--from", "longcat-omni", "/nonexistent", f"{files['dir']}/out"),
         "argument src", "/nonexistent")


@pytest.mark.parametrize("argv, parts", [
    (["pack", "--data", "/nonexistent", "--out", "{dir}/p.npz"], ["argument --data", "/nonexistent"]),
    (["pack", "--data", "{dir}", "--out", "/nonexistent/dir/p.npz"], ["argument --out", "/nonexistent/dir"]),
    (["build", "--split", "train", "--out", "{dir}/b", "--scenes", "0"], ["argument --scenes", ">= 1"]),
    (["build", "--split", "train", "--out", "{dir}/b", "--video-fraction", "2"], ["argument --video-fraction"]),
    (["codec-voice", "--out", "{dir}/w", "--minutes", "0"], ["argument --minutes"]),
    (["codec-voice", "--out", "{dir}/w", "--answer-share", "1.5"], ["argument --answer-share"]),
])
def test_data_refuses(argv, parts, files):
    _has(refused("data", *[a.format(**files) for a in argv]), *parts)


@pytest.mark.parametrize("argv,parts", [
    (["--model", "{not_a_model}"], ["not a model directory"]),
    (["--train", "5"], ["--train needs >= 20"]),
])
def test_train_turn_end_refuses(argv, parts, files):
    _has(refused("train-turn-end", *[a.format(**files) for a in argv]), *parts)


@pytest.mark.parametrize("argv,parts", [
    (["--train", "5"], ["--train needs >= 40"]),
    (["--window-ms", "5"], ["--window-ms must be in 32..1000"]),
])
def test_train_backchannel_refuses(argv, parts):
    _has(refused("train-backchannel", *argv), *parts)


def test_train_refuses_an_unknown_recipe_field():  # one case: the module imports torch.distributed
    _has(refused("train", "--set", "nosuch=1"), "unknown recipe field 'nosuch'")


# ---- omni client -----------------------------------------------------------
@pytest.mark.parametrize("argv, parts", [
    (["--wav", "/nonexistent.wav"], ["argument --wav", "no such file"]),
    (["--wav", "{corrupt_wav}"], ["argument --wav", "corrupt.wav", "corrupt"]),
    (["--wav", "{empty_wav}"], ["argument --wav", "empty"]),
    (["--wav", "{dir}"], ["argument --wav", "folder"]),
    (["--wav", "{corrupt_wav}", "--url", "http://127.0.0.1:8765/"], ["argument --url", "ws://"]),
    (["--wav", "{corrupt_wav}", "--out", "/nonexistent/dir/reply.wav"], ["argument --out", "/nonexistent/dir"]),
    (["--wav", "{corrupt_wav}", "--timeout", "0"], ["argument --timeout", "> 0"]),
])
def test_client_refuses(argv, parts, files):
    _has(refused("client", *[a.format(**files) for a in argv]), *parts)


# ---- omni demo -------------------------------------------------------------
def test_demo_page_port_in_use(busy_port):
    _has(refused("demo", "--port", str(busy_port)), "argument --port", f"port {busy_port} is already in use")


def test_demo_server_port_in_use(busy_port):
    _has(refused("demo", "--port", str(_free_port()), "--server-port", str(busy_port)),
         "argument --server-port", "already in use")


def test_demo_reports_the_servers_refusal_as_its_own():
    """The server it starts refuses the flavor at once; the demo says so in its own name."""
    _has(refused("demo", "--port", str(_free_port()), "--flavor", "nosuch"), "argument --flavor", "'nosuch'", "debug")


@pytest.mark.parametrize("argv, parts", [
    (["--url", "http://127.0.0.1:8765/"], ["argument --url", "ws://"]),
    (["--url", "ws://127.0.0.1:8765/v1/realtime", "--flavor", "debug"], ["--flavor", "--url"]),
    (["--server-timeout", "0"], ["argument --server-timeout"]),
])
def test_demo_refuses(argv, parts):
    _has(refused("demo", "--port", str(_free_port()), *argv), *parts)


# ---- the shared helpers ----------------------------------------------------
def test_listen_problem_finds_a_busy_port(busy_port):
    from omni.commands.argtypes import listen_problem

    assert listen_problem("127.0.0.1", busy_port) == ("port", f"port {busy_port} is already in use on 127.0.0.1")
    assert listen_problem("127.0.0.1", 0) is None
    assert listen_problem("127.0.0.1", _free_port()) is None


def test_output_dir_accepts_new_nested_folders(tmp_path):
    import argparse

    from omni.commands.argtypes import output_dir, output_file

    assert output_dir(str(tmp_path / "a" / "b")) == str(tmp_path / "a" / "b")
    (tmp_path / "f").write_text("x")
    with pytest.raises(argparse.ArgumentTypeError, match="is a file"):
        output_dir(str(tmp_path / "f" / "sub"))
    assert output_file(str(tmp_path / "r.wav")) == str(tmp_path / "r.wav")

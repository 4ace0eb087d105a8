"""The `omni` command line.

Each subcommand lives in its own module exposing `add_arguments(parser)` and
`main(args) -> int`. Modules are named here as strings and imported only when
their subcommand runs, so `omni --help` is instant and a subcommand's heavy
dependencies (gradio, the websocket server, torch.distributed) load only when
used. This is also the one deliberate late-binding point across package
boundaries: `serve`, `client`, `demo` and `train` are implemented in the
`streaming`, `demo` and `mdp` packages that `omni` itself never imports.

Refused arguments end in argparse's usage line and one `omni CMD: error: ...`
line, with exit status 2 and no traceback: from the parser itself (types and
choices, see omni/commands/argtypes.py), and from checks that a subcommand's
`main` makes before any heavy work by raising `argparse.ArgumentTypeError`.
`main()` returns that status rather than exiting (`--help` still exits).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "generate": ("omni.commands.generate", "text generation with the LongCat-Flash backbone"),
    "chat": ("omni.commands.chat", "answer one multimodal question from files, in text and speech"),
    "convert": ("omni.commands.convert", "convert an official LongCat-Flash-Omni checkpoint"),
    "eval": ("omni.eval.cli", "offline evaluation (asr, av-mcq, spoken-qa, speech-out)"),
    "train-codec": ("speech.train_cli", "train the speech codec"),
    "serve": ("streaming.cli_serve", "run the real-time websocket server"),
    "client": ("streaming.cli_client", "stream a WAV (and video) file to a server in real time"),
    "demo": ("demo.cli", "start the server and the Gradio live demo"),
    "train": ("mdp.cli", "modality-decoupled parallel training (wraps torchrun)"),
    "data": ("omni.synth.cli", "generate the synthetic audio-visual world data"),
    "train-turn-end": ("omni.turn_end_train", "train a model's semantic end-of-turn head (for semantic_vad)"),
    "train-backchannel": ("streaming.backchannel_train", "train the server's backchannel detector"),
}


def _available(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="omni",
        description="Open omni-modal streaming assistant (LongCat-Flash-Omni design).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        if not _available(module):
            continue
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module, _parser=p)
        importlib.import_module(module).add_arguments(p)
    return parser


def _refuse(parser: argparse.ArgumentParser, message: str) -> int:
    """argparse's own report of a refused argument, as a return value."""
    parser.print_usage(sys.stderr)
    print(f"{parser.prog}: error: {message}", file=sys.stderr)
    return 2


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace | int:
    try:
        return parser.parse_args(argv)
    except SystemExit as e:  # argparse has printed its message
        if not e.code:
            raise  # --help
        return e.code if isinstance(e.code, int) else 2


def _run(parser: argparse.ArgumentParser, module, args: argparse.Namespace) -> int:
    try:
        return int(module.main(args) or 0)
    except argparse.ArgumentTypeError as e:
        return _refuse(parser, str(e))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # Build only the requested subparser when possible: importing every
    # command module for `omni serve ...` would load gradio for nothing.
    if argv and argv[0] in COMMANDS and _available(COMMANDS[argv[0]][0]):
        name = argv[0]
        module_name, help_text = COMMANDS[name]
        module = importlib.import_module(module_name)
        p = argparse.ArgumentParser(prog=f"omni {name}", description=help_text)
        module.add_arguments(p)
        args = _parse(p, argv[1:])
        return args if isinstance(args, int) else _run(p, module, args)
    parser = build_parser()
    args = _parse(parser, argv)
    if isinstance(args, int):
        return args
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    return _run(args._parser, importlib.import_module(args._module), args)


if __name__ == "__main__":
    sys.exit(main())

"""Enforces the package boundaries stated in docs/architecture.md ("Import rules")
by reading every import, and keeps that document's repository paths true.

Static imports only: the `omni` command line resolves subcommands by module
name at run time (omni/cli.py) and is the one documented exception.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = {"omni", "encoders", "speech", "streaming", "mdp", "demo"}
BASE = ("omni.config", "omni.nn")


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out: list[str] = []
    pkg_parts = path.relative_to(ROOT).with_suffix("").parts[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against the file's package
                base = list(pkg_parts[: len(pkg_parts) - node.level + 1])
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append(mod)
            # `from omni import model` imports omni.model
            out.extend(f"{mod}.{a.name}" for a in node.names)
    return out


def _zone(path: Path) -> str:
    rel = path.relative_to(ROOT).as_posix()
    if rel == "omni/config.py" or rel.startswith("omni/nn/"):
        return "base"
    if rel.startswith("omni/llm/"):
        return "llm"
    return rel.split("/")[0]


def _allowed(zone: str, mod: str, rel: str) -> bool:
    top = mod.split(".")[0]
    if top not in PROJECT:
        if mod == "torch.distributed" or mod.startswith("torch.distributed."):
            return zone == "mdp"
        return True
    in_base = any(mod == b or mod.startswith(b + ".") for b in BASE) or mod == "omni"
    if zone in ("base", "llm", "encoders", "speech"):
        if zone == "llm" and (mod.startswith("omni.llm")):
            return True
        if zone in ("encoders", "speech") and top == zone:
            return True
        return in_base
    if zone == "omni":
        return top in {"omni", "encoders", "speech"}
    if zone == "streaming":
        return top in {"omni", "encoders", "speech", "streaming"}
    if zone == "mdp":
        return top != "demo"
    if zone == "demo":
        return (top == "demo" or mod in {"streaming", "streaming.protocol", "streaming.client", "omni", "omni.synth"}
                or mod.startswith(("streaming.protocol.", "streaming.client.", "omni.synth.")))
    return True


def _files() -> list[Path]:
    files = []
    for pkg in sorted(PROJECT):
        files.extend(sorted((ROOT / pkg).rglob("*.py")))
    return files


def test_there_are_files_to_check() -> None:
    assert len(_files()) > 5


@pytest.mark.parametrize("path", _files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_imports_respect_package_boundaries(path: Path) -> None:
    zone = _zone(path)
    rel = path.relative_to(ROOT).as_posix()
    bad = [m for m in _imports(path) if not _allowed(zone, m, rel)]
    assert not bad, f"{rel} ({zone}) imports {bad}, which docs/architecture.md (Import rules) forbids"


def test_nothing_imports_mdp() -> None:
    offenders = [
        p.relative_to(ROOT).as_posix()
        for p in _files()
        if _zone(p) != "mdp" and any(m.split(".")[0] == "mdp" for m in _imports(p))
    ]
    assert not offenders


def test_rule_checker_catches_a_violation(tmp_path: Path) -> None:
    # The checker itself must be able to fail: an encoder importing the LLM is caught.
    assert not _allowed("encoders", "omni.llm.model", "encoders/x.py")
    assert not _allowed("demo", "omni.model", "demo/app.py")
    assert not _allowed("streaming", "torch.distributed", "streaming/x.py")
    assert _allowed("demo", "streaming.protocol", "demo/app.py")
    assert _allowed("demo", "omni.synth.world", "demo/new_scene.py")
    assert not _allowed("demo", "omni.realtime", "demo/app.py")


def test_the_demo_never_loads_torch() -> None:
    """The page is a client: its modules, a new scene made, and no torch (nor the model) loaded."""
    import subprocess
    import sys
    import tempfile

    code = ("import sys, pathlib, tempfile; import demo.app, demo.cli, demo.scenes, demo.new_scene as n; "
            "s = n.make_scene(pathlib.Path(tempfile.mkdtemp()), 'new001', 7); assert s.questions, s; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'gradio') or m.startswith('omni.model')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    with tempfile.TemporaryDirectory() as tmp:
        r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                           env={**__import__("os").environ, "TMPDIR": tmp})
    assert r.returncode == 0, r.stdout + r.stderr


DOC = ROOT / "docs" / "architecture.md"
# what a backticked span must start with to be read as a repository path
TOP_DIRS = ("omni", "encoders", "speech", "streaming", "mdp", "demo", "bench", "tests", "docs", "scripts")
TOP_FILES = ("README.md", "pyproject.toml", "requirements.lock", "omni.sh")


def _doc_paths(text: str) -> list[str]:
    """Backticked repository paths of a Markdown text (fenced code blocks left out):
    spans without spaces that start with a top-level directory and a slash, or
    name a top-level file. Globs (`*`) are allowed."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    spans = re.findall(r"`([^`\n]+)`", text)
    return [s for s in spans
            if s in TOP_FILES or (" " not in s and "/" in s and s.split("/")[0] in TOP_DIRS)]


def test_architecture_doc_paths_exist() -> None:
    paths = _doc_paths(DOC.read_text())
    assert len(paths) > 20  # the document names the files it describes
    missing = [p for p in paths if not (any(ROOT.glob(p)) if "*" in p else (ROOT / p).exists())]
    assert not missing, f"docs/architecture.md names paths that do not exist: {missing}"


def test_doc_path_reader() -> None:
    text = "`omni/llm/` and `tests/x.py` and `README.md`, not `omni.nn`, `out_dir/loss.csv` or `a b/c`\n" \
           "```\n`mdp/in_a_code_block.py`\n```\n"
    assert _doc_paths(text) == ["omni/llm/", "tests/x.py", "README.md"]

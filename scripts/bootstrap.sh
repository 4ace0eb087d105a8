#!/usr/bin/env bash
# Installs everything the project needs on a fresh Debian machine: the Debian
# packages (speech synthesis, audio tools, a browser for the demo test) and a
# virtual environment in .venv with the project and its test extras.
# Safe to run again: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
for cmd in espeak-ng sox chromium chromedriver; do
  command -v "$cmd" >/dev/null 2>&1 || need_apt+=("$cmd")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "[bootstrap] installing Debian packages (missing: ${need_apt[*]})"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    espeak-ng sox chromium chromium-driver >/dev/null
fi

# Reinstall when the project's metadata, the lock or the set of packages changes
# (the editable install maps the packages that exist when it runs).
stamp=.venv/.installed-$( (cat pyproject.toml requirements.lock; ls -d */__init__.py) | sha1sum | cut -c1-12)
if [ ! -f "$stamp" ]; then
  echo "[bootstrap] creating .venv and installing Python packages (exact versions: requirements.lock)"
  [ -d .venv ] || python3 -m venv .venv
  rm -f .venv/.installed-*
  # -c requirements.lock: every package, pip included, at the version CI last passed
  # with. torch/torchaudio come first, pinned to builds that pip takes from the
  # machine's local wheel store (torchaudio 2.11 runs on torch 2.14 for all we use).
  .venv/bin/pip install -q -c requirements.lock --upgrade pip
  .venv/bin/pip install -q -c requirements.lock -r scripts/torch-pins.txt
  # silero-vad without extras: its extras pin an old torchaudio.
  # the build backend comes from the lock too (no isolated build environment that
  # would take whatever setuptools is newest that day)
  .venv/bin/pip install -q -c requirements.lock setuptools
  .venv/bin/pip install -q -c requirements.lock --no-build-isolation -e '.[test]'
  touch "$stamp"
fi

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

# Reinstall when the project's metadata or its set of packages changes (the
# editable install maps the packages that exist when it runs).
stamp=.venv/.installed-$( (cat pyproject.toml; ls -d */__init__.py) | sha1sum | cut -c1-12)
if [ ! -f "$stamp" ]; then
  echo "[bootstrap] creating .venv and installing Python packages"
  [ -d .venv ] || python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  # torch/torchaudio pinned to builds that pip takes from the machine's local
  # wheel store; torchaudio 2.11 runs on torch 2.14 for everything we use.
  .venv/bin/pip install -q torch==2.14.1 torchaudio==2.11.0
  # silero-vad without extras: its extras pin an old torchaudio.
  .venv/bin/pip install -q -e '.[test]'
  touch "$stamp"
fi

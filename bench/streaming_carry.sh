#!/usr/bin/env bash
# What bench/streaming_gpu.sh needs beside the working tree, made on this machine (the GPU
# image has neither websockets nor silero-vad, and no espeak-ng for the spoken questions):
# the locked versions' wheels (websockets for CPython 3.10-3.13, the image's is picked at
# install) and speech/q*.wav. Usage: bash bench/streaming_carry.sh [DIR] (default .device_carry/stream,
# ignored by git; carry it in the device run's `carry`).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-.device_carry/stream}
mkdir -p "$dir"
PY=${PY:-.venv/bin/python}
ver() { grep -i "^$1==" requirements.lock | cut -d= -f3; }
for v in 3.10 3.11 3.12 3.13; do
  "$PY" -m pip download -q --no-deps --only-binary :all: --python-version "$v" \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --dest "$dir" "websockets==$(ver websockets)"
done
"$PY" -m pip download -q --no-deps --only-binary :all: --dest "$dir" "silero-vad==$(ver silero-vad)"
"$PY" bench/streaming.py --make-speech-only --speech-dir "$dir/speech"
du -sh "$dir"

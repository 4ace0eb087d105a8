#!/usr/bin/env bash
# Does the whole tool chain learn? A small world heavy in tool requests, the omni-mini-smoke
# curriculum from scratch on the CPU with tool conversations as nearly all of the dialogue
# stage (loader path, rows of 768), then bench/tool_world.py on the pack's own requests.
# Usage: bash bench/tool_learning_cpu.sh [WORK_DIR] [DIALOGUE_STEPS]   (~15 min on 2 cores at 300)
# Writes bench/results/tool_learning_cpu.json and tool_learning_penalized_silence_cpu.json (TRAIN=0: judge only).
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-runs/tool_learning}
steps=${2:-300}
py=${PYTHON:-.venv/bin/python}
export PYTHONPATH=$PWD
if [[ "${TRAIN:-1}" == 1 ]]; then
  rm -rf "$work" && mkdir -p "$work"
  "$py" -m omni.cli data build --split train --out "$work/train" --scenes 12 --tool-ratio 2 --renderings 3 --no-progress
  "$py" -m omni.cli data codes --data "$work/train" --no-progress
  "$py" -m omni.cli data pack --data "$work/train" --out "$work/train.pack.npz" --no-progress
  "$py" -m omni.cli train --recipe omni-mini-smoke --out-dir "$work/run" --set curriculum.pack="$work/train.pack.npz" \
    --set curriculum.stage_steps=speech:2,vision:2,dialogue:"$steps" --set curriculum.tool_weight=100 \
    --set curriculum.stage_seq_len=speech:176,vision:176,dialogue:768 --set curriculum.answer_codes=pack 2>&1 \
    | tr '\r' '\n' | grep -E "stage|exported|Error" || true
fi
"$py" bench/tool_world.py --model "$work/run/model" --pack "$work/train.pack.npz" --cases 24 --batch 24 \
  --max-steps 120 --out bench/results/tool_learning_cpu.json
# side by side: the same model with its silent frame counted in the audio repetition penalty
"$py" bench/tool_world.py --model "$work/run/model" --pack "$work/train.pack.npz" --cases 24 --batch 24 \
  --max-steps 120 --penalize-silence --out bench/results/tool_learning_penalized_silence_cpu.json

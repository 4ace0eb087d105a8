#!/usr/bin/env bash
# One GPU call for the backbone: its unit tests against the device image's
# torch/transformers, then bench/backbone.py (checks + timings). Results go to
# $OUT (the device run's output folder) or bench/results/.
#   bash bench/gpu_backbone.sh [extra bench/backbone.py args]
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results}
PY=${PY:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 | tee "$OUT/backbone_gpu_info.txt"
timeout 60 "$PY" -m pytest -q -x -p no:cacheprovider tests/llm -m "not slow" 2>&1 | tail -15 | tee "$OUT/backbone_tests.txt"
timeout 265 "$PY" bench/backbone.py --out "$OUT/backbone.json" "$@" 2>&1 | tee "$OUT/backbone_log.txt"

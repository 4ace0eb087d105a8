#!/usr/bin/env bash
# The turn-taking benchmark (bench/turn_taking.py) on a GPU machine whose image lacks
# websockets, silero-vad and espeak-ng: install the carried wheels, speak with the carried
# portable espeak-ng (scripts/espeak_portable.sh), then run the default model with its
# end-of-turn head on the GPU, server VAD against semantic_vad, with the CPU run's trials.
# Usage: bash bench/turn_taking_gpu.sh WHEEL_DIR OUT_DIR
#   WHEEL_DIR: the websockets and silero-vad wheels (bash bench/streaming_carry.sh DIR makes them)
#   carry WHEEL_DIR and .espeak; MODES (env) overrides the modes, TAG the result's name, EXTRA_ARGS adds
#   bench/turn_taking.py options (e.g. "--decode-mode eager").
set -euo pipefail
wheels=${1:?folder with the websockets and silero-vad wheels}
out=${2:?output folder}
source "$(dirname "$0")/gpu_serving_env.sh" "$wheels"
export PATH=$PWD/.espeak/bin:$PATH LD_LIBRARY_PATH=$PWD/.espeak/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} \
  ESPEAK_DATA_PATH=$PWD/.espeak
python3 bench/turn_taking.py --model omni/pretrained/default --device cuda --tag "${TAG:-default_gpu}" \
  --modes "${MODES:-server_vad+every-sound,semantic_vad}" --pause-trials 48 --smooth-trials 24 \
  --interruption-trials 16 --backchannel-trials 16 --out-dir "$out" ${EXTRA_ARGS:-} 2>&1 | tr '\r' '\n' | grep -v "turn-taking:"

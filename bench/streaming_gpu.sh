#!/usr/bin/env bash
# The streaming benchmark on a GPU machine whose image lacks websockets and
# silero-vad: install the carried wheels, then run bench/streaming.py on the
# a1b-sized model (random weights, bf16) at 1, 8, 32, 64 and 128 sessions, four
# turns each (speculation on and off), after the codec decoder's paths side by side
# (one by one, batched, pooled, pooled in a CUDA graph: bench/codec_batch.py) and reply starts and closes
# a call each vs one for all (bench/begin_batch.py). Usage: bash bench/streaming_gpu.sh WHEEL_AND_SPEECH_DIR OUT_DIR
# SESSIONS and TURNS (env) change the levels and the turns per session; the clients run in
# CLIENT_PROCS (4) processes of their own (0: in the server's process, as the committed H100 run);
# SPEC (on,off) the speculation modes and PREFILL_WAIT (the engine's) the packet waits in ms, e.g.
# SPEC=on PREFILL_WAIT=0,250 for the wait against none, side by side; INPUT_STAGE (process,thread:
# side by side; the server's default is thread) where input audio is conditioned; SWITCH (5: Python's
# own, omni serve's) the interpreter's thread switch interval in ms, e.g. 5,0.5 against a shorter one;
# DECODE_MODE (auto: CUDA graphs) the server's decode step, a comma list runs the sessions once per mode
# on a fresh model, one JSON each (tag a1b_gpu_MODE), e.g. graph,compiled for the compiled layers against none.
# (WHEEL_AND_SPEECH_DIR holds the .whl files and speech/q*.wav: bash bench/streaming_carry.sh DIR).
set -euo pipefail
carry=${1:?folder with wheels and speech/}
out=${2:?output folder}
source "$(dirname "$0")/gpu_serving_env.sh" "$carry"
if [[ -z "${SKIP_CODEC:-}" ]]; then  # SKIP_CODEC=1: the sessions only (a short call)
  python3 bench/codec_batch.py --device cuda --streams 1,8,32,64,128 --threads 1 --steps 40 \
    --out "$out/codec_batch_gpu.json" 2>&1 | grep --line-buffered -v -i "warn"
fi
if [[ -z "${SKIP_BEGIN:-}" ]]; then  # reply starts and closes, a call each vs one for all (bench/begin_batch.py)
  python3 bench/begin_batch.py --flavor a1b --device cuda --dtype bf16 --slots 1,8,32,64 --out "$out/begin_batch_gpu.json" \
    2>&1 | grep --line-buffered -v -i "warn"
fi
modes=${DECODE_MODE:-auto}
for mode in ${modes//,/ }; do
  tag=a1b_gpu; [[ "$modes" == *,* ]] && tag=a1b_gpu_$mode
  python3 bench/streaming.py --flavor a1b --device cuda --dtype bf16 --sessions "${SESSIONS:-1,8,32,64,128}" --turns "${TURNS:-4}" --max-steps 40 \
    --silence 1.0 --spread 0.5 --capacity 1024 --client-procs "${CLIENT_PROCS:-4}" --decode-mode "$mode" \
    --spec "${SPEC:-on,off}" ${PREFILL_WAIT:+--prefill-wait-ms "$PREFILL_WAIT"} \
    --input-stage "${INPUT_STAGE:-process,thread}" --switch-interval-ms "${SWITCH:-5}" --speech-dir "$carry/speech" --out-dir "$out" --tag "$tag" 2>&1 | grep --line-buffered -v -i "warn"
done

#!/usr/bin/env bash
# How the shipped default codec (speech/pretrained/default) was trained: one GPU, a
# fixed time budget, then the batched-streams GPU speed benchmark on the result.
#
#   1. here (needs espeak-ng + sox): ~18 min of random sentences, 48 training voices plus
#      the default model's assistant voice (a third of the speech: the voice it must reproduce)
#        omni train-codec --generate-minutes 18 --voice-share en-us+klatt5=0.35 \
#            --data .codec_data/train_wavs_v2 --pack .codec_data/train_v2.npz --generate-only
#      (runs 1-4 used 16 min without the assistant voice: .codec_data/train.npz)
#   2. on the GPU machine (no espeak-ng there; the .npz travels):
#        BUDGET=300 OUT=results bash speech/recipes/train_default.sh
#      (INIT=weights.pt continues from the model + discriminator weights of an earlier
#      run with a fresh schedule; the shippable fp16 codec comes back in OUT/codec)
#   3. back here: cp OUT/codec/* speech/pretrained/default/ ; the resumable checkpoint
#      comes back in parts: cat ckpt.pt.part-* > ckpt.pt
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
PY=${PY:-python}
RUN=${RUN:-/tmp/codec_run}
OUT=${OUT:?set OUT to the folder that receives the results}
DEVICE=${DEVICE:-cuda}
FLAVOR=${FLAVOR:-default}
mkdir -p "$OUT" "$RUN"
nvidia-smi --query-gpu=name,memory.total --format=csv 2>/dev/null || true
$PY -m omni.cli train-codec --data "${DATA:-.codec_data/train_v2.npz}" --out "$RUN" --flavor "$FLAVOR" \
    --steps 0 --time-budget "${BUDGET:-300}" --batch-size "${BATCH:-48}" --segment-seconds 1.92 \
    --device "$DEVICE" --adv-start "${ADV_START:-0.45}" --lr "${LR:-1e-4}" --warmup-steps 50 \
    --log-every 25 --ckpt-seconds 120 --no-progress ${INIT:+--init-from "$INIT"} 2>&1 | tee "$OUT/train.txt"
STREAMS=${STREAMS:-32}
[ "$STREAMS" = 0 ] || $PY bench/codec_speed.py --codec "$RUN/codec" --device "$DEVICE" --streams "$STREAMS" --seconds 10 \
    --out "$OUT/codec_speed_gpu.json" 2>&1 | tee -a "$OUT/train.txt"
cp "$RUN/log.csv" "$OUT/"
# the shippable form: fp16 weights (half the size, decodes the same to ~1e-3)
$PY -c "import sys, torch; from speech.train import export_checkpoint as e; e(sys.argv[1], sys.argv[2], torch.float16)" \
    "$RUN/ckpt.pt" "$OUT/codec"
# results come back in files of at most 16 MB: split the resumable checkpoint
split -b 15M "$RUN/ckpt.pt" "$OUT/ckpt.pt.part-"
ls -la "$OUT"

#!/usr/bin/env bash
# Which audio pre-training hears held-out voices best, at the GPU recipe's scale. Renders the
# recipe's voice bank (16 renderings of every train question text, as scripts/train_default_gpu.sh
# does) and trains fresh `mini` audio encoders with CTC side by side (bench/encoder_pretrain.py),
# each scored on the held-out pack's voices and on clips of its own training pool; each finished
# arm is written at once, so a time limit keeps the arms before it.
#   ARMS=augment (the first run): the recipe as it is, time/speed/noise augmentation, the
#     mel-domain speaker warp, both, and both twice as long;
#   ARMS=timbres (default): a second bank speaking also in TIMBRES (200) generated espeak-ng
#     timbres (omni.synth.timbres), against the shipped variants' bank, at 1x and 2x the steps.
# Usage: bash bench/hearing_gpu.sh OUT_DIR
# carry: runs/data/train.pack.npz runs/data/heldout.pack.npz .espeak   (scripts/espeak_portable.sh)
# STEPS (env, default 1200: the recipe's audio pre-training) sets the steps of the arms.
set -euo pipefail
out=${1:?output folder}
steps=${STEPS:-1200}
export PYTHONUNBUFFERED=1
if ! command -v espeak-ng >/dev/null && [[ -d .espeak ]]; then
  export PATH=$PWD/.espeak/bin:$PATH LD_LIBRARY_PATH=$PWD/.espeak/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} ESPEAK_DATA_PATH=$PWD/.espeak
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
bank() {  # OUT TIMBRES
  local start=$(date +%s)
  [[ -f "$1" ]] || python3 -m omni.cli data voice-bank --pack runs/data/train.pack.npz \
    --out "$1" --renderings "${VOICE_BANK:-16}" --timbres "$2" --no-progress
  echo "voice bank $1: $(( $(date +%s) - start )) s"
}
pretrain() {  # BANK OUT ARM...
  local b=$1 o=$2; shift 2
  python3 bench/encoder_pretrain.py --device cuda --vision-steps 0 --audio-steps "$steps" --audio-batch 64 \
    --bank "$b" --heldout-questions 360 --threads 4 "$@" --out "$o" 2>&1 | grep --line-buffered -v -i warn
}
bank runs/data/voices.npz 0
if [[ "${ARMS:-timbres}" == augment ]]; then
  pretrain runs/data/voices.npz "$out/encoder_pretrain_audio_gpu.json" \
    --arm "recipe (bank, no augmentation): cmvn=pack" \
    --arm "augmentation + speaker warp: augment=1; speaker=0.15" \
    --arm "augmentation (speed, gain, noise, time masks): augment=1" \
    --arm "speaker warp 0.15: speaker=0.15" \
    --arm "augmentation + speaker warp, 2x steps: augment=1; speaker=0.15; steps=$(( steps * 2 ))"
else
  bank runs/data/voices_timbres.npz "${TIMBRES:-200}"
  pretrain runs/data/voices_timbres.npz "$out/encoder_pretrain_timbres_gpu.json" \
    --arm "bank with ${TIMBRES:-200} generated timbres: cmvn=pack" \
    --arm "bank with ${TIMBRES:-200} generated timbres, 2x steps: steps=$(( steps * 2 ))"
  pretrain runs/data/voices.npz "$out/encoder_pretrain_variants_gpu.json" \
    --arm "bank of the shipped variants: cmvn=pack" \
    --arm "bank of the shipped variants, 2x steps: steps=$(( steps * 2 ))"
fi

#!/usr/bin/env bash
# Which audio pre-training hears held-out voices best, at the GPU recipe's scale: renders the
# recipe's voice bank (16 renderings of every train question text, as scripts/train_default_gpu.sh
# does), then trains fresh `mini` audio encoders with CTC in several arms side by side
# (bench/encoder_pretrain.py: the recipe as it is, time/speed/noise augmentation, the mel-domain
# speaker warp, both, and both twice as long) and scores each on the held-out pack's voices and on
# clips of its own training pool. Each finished arm is written at once, so a time limit keeps
# the arms before it. Usage: bash bench/hearing_gpu.sh OUT_DIR
# carry: runs/data/train.pack.npz runs/data/heldout.pack.npz .espeak   (scripts/espeak_portable.sh)
# STEPS (env, default 1200: the recipe's audio pre-training) sets the steps of every arm but the
# long one (2x).
set -euo pipefail
out=${1:?output folder}
steps=${STEPS:-1200}
export PYTHONUNBUFFERED=1
if ! command -v espeak-ng >/dev/null && [[ -d .espeak ]]; then
  export PATH=$PWD/.espeak/bin:$PATH LD_LIBRARY_PATH=$PWD/.espeak/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} ESPEAK_DATA_PATH=$PWD/.espeak
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
start=$(date +%s)
[[ -f runs/data/voices.npz ]] || python3 -m omni.cli data voice-bank --pack runs/data/train.pack.npz \
  --out runs/data/voices.npz --renderings "${VOICE_BANK:-16}" --no-progress
echo "voice bank: $(( $(date +%s) - start )) s"
python3 bench/encoder_pretrain.py --device cuda --vision-steps 0 --audio-steps "$steps" --audio-batch 64 \
  --bank runs/data/voices.npz --heldout-questions 360 --threads 4 \
  --arm "recipe (bank, no augmentation): cmvn=pack" \
  --arm "augmentation + speaker warp: augment=1; speaker=0.15" \
  --arm "augmentation (speed, gain, noise, time masks): augment=1" \
  --arm "speaker warp 0.15: speaker=0.15" \
  --arm "augmentation + speaker warp, 2x steps: augment=1; speaker=0.15; steps=$(( steps * 2 ))" \
  --out "$out/encoder_pretrain_audio_gpu.json" 2>&1 | grep --line-buffered -v -i warn

#!/usr/bin/env bash
# Decoder fine-tune of the shipped codec for the default model's assistant voice: ONE
# command on one GPU. The encoder, the latent BatchNorm and every codebook are frozen, so
# the codec's tokens do not change (the default model needs no retraining for them).
#
#   1. here (needs espeak-ng + sox): the assistant voice (en-us+klatt5) saying every answer
#      and the world's questions at speeds 120-165 / pitches 35-65 (never a rendering that
#      check-voice judges), plus random sentences of the 48 training voices; and a held-out
#      pack (every answer at the voice's own speed and pitch, 4 held-out voices):
#        omni data codec-voice --out .codec_data/voice_wavs_v3/world --minutes 14.5 \
#            --answer-share 0.9 --eval-pack .codec_data/voice_v3_eval.npz
#        omni train-codec --generate-minutes 12.5 --data .codec_data/voice_wavs_v3 \
#            --pack .codec_data/voice_v3.npz --generate-only
#      (27 min: 584 answer utterances, every answer 4-6 times, 62 questions, and 12.5 min of
#      random sentences in 47 training voices; 38.9 MB + a 4.4 MB held-out pack)
#   2. on the GPU machine (no espeak-ng there; both .npz travel as carried paths):
#        OUT=$OUT BUDGET=450 bash speech/recipes/finetune_voice.sh
#      resumable: RESUME=folder/with/ckpt.pt.part-* and a larger BUDGET (the budget counts the
#      seconds already trained) continues exactly; the parts (38 MB) and the data (43 MB) are
#      too much for one carry of 64 MiB, so a second GPU call instead continues from the
#      returned codec: INIT=folder/with/codec (7.6 MB; fresh optimizer and schedule)
#   3. back here: cp OUT/codec/* speech/pretrained/default/ ; cat OUT/ckpt.pt.part-* > ckpt.pt
# Defaults (env): BATCH=96 x 1.92 s crops, LR=3e-4 cosine (4e-4 beat 1e-4 in 500-step CPU
# probes: bench/results/codec_finetune_cpu_probes.json), 50 warm-up steps, no adversarial
# phase (ADV_START=1: no discriminator weights ship, and a fresh one would cost most of the
# budget), MEL_BANDS=2000-8000:2 (the consonant bands weigh twice), ALIGNED=0.3 (a share of
# the crops starts where an utterance starts, as an answer decoded on its own), ONSET=0 (>0:
# the ~150 ms after a speech onset weigh more). FREEZE="" trains the whole codec from the
# shipped weights instead: then the TOKENS CHANGE (the check below counts the clips whose
# tokens differ) and the default model must be retrained on them.
#
# Files in OUT (at most 8): codec/config.json + codec/model.safetensors (fp16, shippable),
# train.txt (this log, with the held-out mel before/after), log.csv, loss.png (if
# matplotlib), ckpt.pt.part-* (the resumable fp32 checkpoint in parts of 15 MB).
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
T0=$(date +%s)
PY=${PY:-python3}
RUN=${RUN:-/tmp/codec_ft}
OUT=${OUT:?set OUT to the folder that receives the results}
DATA=${DATA:-.codec_data/voice_v3.npz}
EVAL=${EVAL:-.codec_data/voice_v3_eval.npz}
BUDGET=${BUDGET:-450}
mkdir -p "$OUT" "$RUN"
LOG="$OUT/train.txt"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | tee "$LOG" || true
RESUME_ARGS=(--init-from "${INIT:-speech/pretrained/default}")
if [ -n "${RESUME:-}" ]; then
    cat "$RESUME"/ckpt.pt.part-* > "$RUN/ckpt.pt"
    RESUME_ARGS=(--resume)
fi
$PY -m speech.train_cli --data "$DATA" --eval-data "$EVAL" --out "$RUN" --device "${DEVICE:-cuda}" \
    "${RESUME_ARGS[@]}" --freeze "${FREEZE-encoder,quantizer}" \
    --steps 0 --time-budget "$BUDGET" --batch-size "${BATCH:-96}" --segment-seconds "${SEGMENT:-1.92}" \
    --lr "${LR:-3e-4}" --warmup-steps 50 --adv-start "${ADV_START:-1}" \
    --mel-band-weights "${MEL_BANDS-2000-8000:2}" --mel-onset-weight "${ONSET:-0}" --aligned-share "${ALIGNED:-0.3}" \
    --log-every "${LOG_EVERY:-25}" --ckpt-seconds 120 --no-progress 2>&1 | tee -a "$LOG"
# the shippable form: fp16 weights (the encoder and codebooks were fp16 already: tokens unchanged)
$PY -c "import sys, torch; from speech.train import export_checkpoint as e; e(sys.argv[1], sys.argv[2], torch.float16)" \
    "$RUN/ckpt.pt" "$OUT/codec"
# GPU-side check: the fp16 export gives the same tokens as the start codec on the held-out clips
$PY - "$EVAL" "$OUT/codec" "${INIT:-speech/pretrained/default}" <<'EOF' 2>&1 | tee -a "$LOG"
import sys, torch
from speech import Codec
from speech.data import load_clips
clips, new, old = load_clips(sys.argv[1]), Codec.from_pretrained(sys.argv[2]), Codec.from_pretrained(sys.argv[3])
same = sum(torch.equal(new.encode(torch.from_numpy(c)), old.encode(torch.from_numpy(c))) for c in clips)
print(f"tokens of the fp16 export equal the start codec's on {same}/{len(clips)} held-out clips"
      + ("" if same == len(clips) else ": THE CODEC'S TOKENS CHANGED"))
EOF
cp "$RUN/log.csv" "$OUT/"
[ -f "$RUN/loss.png" ] && cp "$RUN/loss.png" "$OUT/"
# results come back in files of at most 16 MB: split the resumable checkpoint
split -b 15M "$RUN/ckpt.pt" "$OUT/ckpt.pt.part-"
echo "recipe wall time: $(( $(date +%s) - T0 )) s" | tee -a "$LOG"
ls -la "$OUT" "$OUT/codec"

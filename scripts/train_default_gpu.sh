#!/usr/bin/env bash
# Train the default model on one GPU in one device call, and bring it back.
#
# On the CPU machine, once:   omni data default --out runs/data --tool-ratio 0.1   (packs with codec tokens and the world's tool)
#                             bash scripts/espeak_portable.sh        (.espeak, for the voice bank)
# On the GPU machine (the device `run`, timeout 600 s), one command, called back to back on the
# still-warm machine until it exports (a call that stops short prints NOT DONE). The defaults are
# the thirteenth run's recipe (two calls, 16 min of GPU on 1x H100):
#     bash scripts/train_default_gpu.sh
# the shipped model's (the seventeenth run's, three calls, 20 min) adds the recipe options
#     EXTRA_SETS="curriculum.stage_steps=speech:541,vision:784,dialogue:1885 curriculum.text_audio_delay=2
#       curriculum.typed_speech_weight=0.015 curriculum.typed_video_weight=0.015
#       curriculum.answer_phases=omni/synth/answer_phases.json"
#   with PLAN_BUDGET=1000 in the first call, BUDGET=450 in the second, BUDGET=60 CALL_LIMIT=440 in the third
#   carry: runs/data/train.pack.npz runs/data/heldout.pack.npz .espeak   (~43 MB; the code ~14 MB
#   without the shipped model's weights and bench/results, which a call need not carry: move them
#   aside for it). The first call renders the voice bank (8 renderings of every question text,
#   8,000 random sentences of their words, 6 rewordings of each question) and trains 420 s of a
#   plan sized for 820 s; the second finds runs/omni-mini/plan.json there, resumes for 400 s
#   (the plan shrinks to what is left), exports, packs the weights for the return and judges them.
#   Its dialogue steps (704 x 384 positions, the tool's conversations) recompute the decoder
#   layers in the backward so that they fit an H100's 80 GB.
# A fine-tune of a trained model instead (INIT=DIR: its weights start a dialogue-only run with its
# tokenizer, no encoder pre-training). The model's 37 MB and the packs do not travel together
# (64 MB a call), so two calls again:
#     PREPARE_ONLY=1 bash scripts/train_default_gpu.sh      (carry the packs and .espeak, move the
#                                                            shipped weights aside: renders the bank)
#     INIT=omni/pretrained/default BUDGET=380 bash scripts/train_default_gpu.sh   (carry nothing,
#                                 weights back in place: runs/data stays on the warm machine)
#   the second call trains, exports and packs the model, then judges it in what is left of
#   CALL_LIMIT: a judge that runs out of time is skipped, the weights still come back.
#   (The model shipped before the one-run recipe came from three: the sixth run from scratch, then
#   fine-tunes with the tool and with greetings beside the camera; README "Training the default model".)
# Back on the CPU machine, from the folder the files came back to:
#     bash scripts/train_default_gpu.sh --collect FILES_DIR DEST_DIR
#   reassembles DEST_DIR (an OmniModel directory for `omni chat --model`), plots the
#   stage losses and keeps the logs and the GPU-side benchmark in bench/results/.
#
# What runs on the GPU: `omni train --recipe omni-mini` (three stages, resumable)
# under a time budget, the export, then bench/default_model.py on the held-out
# pack (text answers per family, offline) and its probes (PROBES: text questions,
# transcription, captions). The GPU image has no espeak-ng, sox or
# av: everything is drawn from the packs. Files back are at most 8 of 16 MB, so the
# bf16 weights travel in 15 MB parts. If the budget ends inside a stage, the run
# checkpoints and says so; calling the script again while the machine is still
# warm resumes where it stopped (runs/ stays there between calls). To train longer
# than one call, give every call but the last the training time left over it and the
# later ones (what the defaults do: BUDGET=420 PLAN_BUDGET=820, then at once BUDGET=400): a resumed
# call shrinks the plan if the time it is given cannot hold it, so the last call always
# ends with an exported model.
set -euo pipefail

if [[ "${1:-}" == "--collect" ]]; then
  src=${2:?folder with the files that came back}
  dest=${3:?destination model directory}
  py=${PYTHON:-.venv/bin/python}
  mkdir -p "$dest" bench/results
  tar -xzf "$src/omni_mini_meta.tgz" -C "$dest"
  cat "$src"/model.safetensors.part-* > "$dest/model.safetensors"
  (cd "$dest" && sha256sum -c model.safetensors.sha256)
  rm -f "$dest/model.safetensors.sha256"
  # the export speaks through the shipped codec: link it rather than keep a second copy
  [[ -e "$dest/codec" ]] || ln -s "$(realpath --relative-to="$dest" speech/pretrained/default)" "$dest/codec"
  mkdir -p runs/omni-mini-gpu
  tar -xzf "$src/omni_mini_logs.tgz" -C runs/omni-mini-gpu
  "$py" -c "from mdp.curriculum.run import plot_stages; plot_stages('runs/omni-mini-gpu', ['speech', 'vision', 'dialogue'])"
  cp runs/omni-mini-gpu/loss.png bench/results/omni_mini_loss.png
  for f in heldout.json heldout.png encoders.json; do
    [[ -f runs/omni-mini-gpu/$f ]] && cp "runs/omni-mini-gpu/$f" "bench/results/omni_mini_${f%.*}_gpu.${f##*.}"
  done
  cp runs/omni-mini-gpu/train_log.txt bench/results/omni_mini_train_gpu_log.txt
  for f in runs/omni-mini-gpu/default_model_gpu*.json runs/omni-mini-gpu/tool_world_gpu*.json; do
    [[ -f "$f" ]] && cp "$f" bench/results/
  done
  "$py" -c "from omni.model import OmniModel; m = OmniModel.from_pretrained('$dest'); print('loaded', '$dest')"
  exit 0
fi

OUT=${OUT:-runs/omni-mini-out}
RUN=${RUN:-$([[ -n "${INIT:-}" ]] && echo runs/omni-mini-ft || echo runs/omni-mini)}
# BUDGET: seconds of training in this call (the call's limit is 600); PLAN_BUDGET: seconds the
# stages are sized for, over this and resumed calls (default BUDGET). Unset, a run from scratch
# is sized for two calls: the first (no plan yet) trains 420 of 820 s, a resumed one 400
if [[ -z "${BUDGET:-}" && -z "${INIT:-}" ]]; then
  if [[ -f "$RUN/plan.json" ]]; then BUDGET=400; else BUDGET=420; PLAN_BUDGET=${PLAN_BUDGET:-820}; fi
fi
BUDGET=${BUDGET:-440}
PLAN_BUDGET=${PLAN_BUDGET:-}
# the dialogue steps' activations vary in size from step to step: expandable segments keep the
# allocator from fragmenting into an out-of-memory on an 80 GB card
export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
EXTRA_SETS=${EXTRA_SETS:-}   # more recipe overrides, e.g. "curriculum.stage_steps=speech:2,vision:2,dialogue:2 global_batch=4"
BENCH_LIMIT=${BENCH_LIMIT:-0}
CALL_LIMIT=${CALL_LIMIT:-560}   # seconds this call may take in all (the device's limit is 600)
PROBES=${PROBES-text transcribe caption}   # bench/default_model.py diagnostics after the export (PROBES="": none)
PROBE_LIMIT=${PROBE_LIMIT:-200}
EVAL_EVERY=${EVAL_EVERY:-400}     # held-out probe every this many steps of a stage (and at each stage's end)
EVAL_SAMPLES=${EVAL_SAMPLES:-120}
# > 0: this many more renderings of every question text, each in its own voice, written here
# before training (`omni data voice-bank`, recipe curriculum.voice_bank; 8, the shipped model's
# recipe: with its sentences and rewordings 24,378 clips on 16 cores); a machine without espeak-ng
# gets it from a carried .espeak (scripts/espeak_portable.sh). 0: the pack's recordings only
VOICE_BANK=${VOICE_BANK:-8}
# TIMBRES: the bank also speaks in this many generated espeak-ng timbres (omni.synth.timbres,
# at most 200); 0, the shipped model's recipe: the shipped human variants only
TIMBRES=${TIMBRES:-0}
# SENTENCES: the bank also says this many random sentences of the questions' words, one clip each
# (omni.synth.sentences): the audio pre-training's CTC pool and the LLM's transcriptions (recipe
# curriculum.sentence_weight) hear words in any order, not only the ~1,200 question texts.
# 8000, the shipped model's recipe; 0: none
SENTENCES=${SENTENCES:-8000}
# REWORDINGS: the bank also says up to this many rewordings of every question text (omni.synth.rewording:
# template words dropped, swapped or added around the kept object phrase), heard as renderings of the
# question, typed and transcribed as said. 6, the shipped model's recipe; 0: none
REWORDINGS=${REWORDINGS:-6}
# REWORDING_STYLE: neighbour (the shipped model's recipe: words dropped, neighbours swapped, a prefix or
# suffix) or wide (also the object phrase first, a synonym, all template words shuffled)
REWORDING_STYLE=${REWORDING_STYLE:-neighbour}
sets=(--set heldout.pack=runs/data/heldout.pack.npz --set heldout.every="$EVAL_EVERY" --set heldout.samples="$EVAL_SAMPLES")
has_tool() { "$PY" -c "import sys; from omni.synth.pack import Pack; sys.exit(not Pack(sys.argv[1]).samples_of('tool'))" "$1"; }
# INIT: a fine-tune of that model (recipe curriculum.init_model): the dialogue stage alone, sized
# to the budget, from a tenth of the shipped recipe's learning rate (FT_LR) down to a tenth of that
INIT=${INIT:-}
FT_LR=${FT_LR:-1.5e-4}
# a pack with the world's tool (omni data default --tool-ratio R): its conversations need dialogue
# rows of 704 positions (768 in a fine-tune: the model keeps its own tokenizer, which may predate
# the tool text: with the tokenizer of the model shipped before the one-run recipe the longest tool
# conversation is 737 positions), and the plan
# costs a dialogue step as its usual rows (384), as the shipped recipe does, so that the speech
# and vision stages keep their steps (an explicit EXTRA_SETS wins); a step over the shipped
# recipe's 768 x 384 positions runs its decoder layers again in the backward rather than keep
# their activations (~12x less kept: bench/train_memory.py)
if [[ "$EXTRA_SETS" != *stage_seq_len* ]] && has_tool runs/data/train.pack.npz; then
  dialogue_len=$([[ -n "$INIT" ]] && echo 768 || echo 704)
  sets+=(--set curriculum.stage_seq_len=speech:176,vision:176,dialogue:$dialogue_len
         --set curriculum.stage_cost_len=dialogue:384 --set parallel.recompute_positions=294912)
fi
if [[ -n "$INIT" ]]; then
  [[ -f "$INIT/model.safetensors" ]] || { echo "INIT=$INIT has no model.safetensors (put the weights back for this call)" >&2; exit 2; }
  min_lr=$("$PY" -c "print(float('$FT_LR') / 10)")
  sets+=(--set curriculum.init_model="$INIT" --set curriculum.stage_steps=dialogue:6000
         --set optim.lr="$FT_LR" --set optim.min_lr="$min_lr" --set optim.warmup_steps=50)
fi
for kv in $EXTRA_SETS; do sets+=(--set "$kv"); done
[[ -n "$PLAN_BUDGET" ]] && sets+=(--set budget.plan_s="$PLAN_BUDGET")
if (( VOICE_BANK > 0 )); then sets+=(--set curriculum.voice_bank=runs/data/voices.npz); fi
call_start=$(date +%s)
export PYTHONPATH=$PWD HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$OUT" "$RUN"
out_abs=$(cd "$OUT" && pwd)
log="$OUT/train_log.txt"
# the earlier calls' log of this run, as this call starts (pack_logs adds this call's to it)
if [[ -f "$RUN/train_log.txt" ]]; then cp "$RUN/train_log.txt" "$RUN/train_log_before.txt"; else : > "$RUN/train_log_before.txt"; fi
for f in runs/data/train.pack.npz runs/data/heldout.pack.npz; do
  [[ -f "$f" ]] || { echo "missing $f: carry it (omni data default --out runs/data)" >&2; exit 2; }
done
{
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
  "$PY" -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.cuda.is_available())"
  if (( VOICE_BANK > 0 )); then
    if ! command -v espeak-ng >/dev/null && [[ -d .espeak ]]; then
      export PATH=$PWD/.espeak/bin:$PATH LD_LIBRARY_PATH=$PWD/.espeak/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} ESPEAK_DATA_PATH=$PWD/.espeak
    fi
    command -v espeak-ng >/dev/null || { echo "VOICE_BANK=$VOICE_BANK needs espeak-ng: carry .espeak (bash scripts/espeak_portable.sh) or set VOICE_BANK=0" >&2; exit 2; }
    # a resumed call on the same machine finds the bank of the first
    [[ -f runs/data/voices.npz ]] || "$PY" -m omni.cli data voice-bank --pack runs/data/train.pack.npz \
      --out runs/data/voices.npz --renderings "$VOICE_BANK" --timbres "$TIMBRES" --sentences "$SENTENCES" \
      --rewordings "$REWORDINGS" --rewording-style "$REWORDING_STYLE" --no-progress
  fi
  [[ -n "${PREPARE_ONLY:-}" ]] && exit 0
  # the training ends within the call whatever the voice bank took (64-144 s on the same kind of
  # machine): its budget is at most what is left of CALL_LIMIT, less TRAIN_MARGIN for loading the
  # packs before the clock starts and for the checkpoint after it stops
  left=$(( call_start + CALL_LIMIT - $(date +%s) - ${TRAIN_MARGIN:-40} ))
  if (( BUDGET > left )); then echo "time budget: $BUDGET s of training -> $left s, what is left of the call"; BUDGET=$left; fi
  start=$(date +%s)
  "$PY" -m omni.cli train --recipe omni-mini --out-dir "$RUN" \
    --set curriculum.pack=runs/data/train.pack.npz --set budget.time_s="$BUDGET" --set output.plot=false "${sets[@]}" 2>&1 \
    | tr '\r' '\n' | grep -v -E '^\s*$' | awk 'NR % 20 == 1 || /stage|export|stopped|held-out|encoder pre-training|time budget|Error|error|Traceback|File/' \
    || echo "training failed (see above)"
  echo "train wall: $(( $(date +%s) - start )) s"
} 2>&1 | tee "$log"
if [[ -n "${PREPARE_ONLY:-}" ]]; then echo "prepared: runs/data stays on this machine for the next call"; exit 0; fi

# at most 8 files come back: the logs, the bench reports and the training log travel in one archive
pack_logs() {  # may run twice in a call: the earlier calls' log, then this one's so far
  cat "$RUN/train_log_before.txt" "$log" > "$RUN/train_log.txt"  # every call's log, in order
  tar -czf "$OUT/omni_mini_logs.tgz" -C "$RUN" $(cd "$RUN" && ls -d train_log.txt plan.json heldout.json heldout.png \
    encoders.json default_model_gpu*.json tool_world_gpu*.json */loss.json */loss.csv */done.json 2>/dev/null) || echo "no training logs to bring back"
}
# the judges run in what is left of the call (CALL_LIMIT: the device call's limit, less a margin
# for the files' return): the model is packed for the return first, so a judge that runs out of
# time costs its own figure, never the trained weights
judge() {  # judge NAME CMD...: run CMD within the time left, its tail into the log
  local name=$1 left=$(( call_start + CALL_LIMIT - $(date +%s) )); shift
  if (( left < 30 )); then echo "skipped $name: ${left} s left of the call" | tee -a "$log"; return 0; fi
  timeout "$left" "$@" 2>&1 | tail -25 | tee -a "$log" || echo "$name: stopped (time or error)" | tee -a "$log"
}
if [[ -f "$RUN/model/model.safetensors" ]]; then
  (cd "$RUN/model" && sha256sum model.safetensors > model.safetensors.sha256 \
    && tar -czf "$out_abs/omni_mini_meta.tgz" config.json model.safetensors.sha256 tokenizer)
  split -b 15m -d "$RUN/model/model.safetensors" "$OUT/model.safetensors.part-"
  echo "DONE: the model is in $OUT (collect with: bash scripts/train_default_gpu.sh --collect FILES_DIR DEST)" | tee -a "$log"
  pack_logs  # the logs so far travel even if the call ends inside a judge
  judge "held-out" "$PY" bench/default_model.py --model "$RUN/model" --pack runs/data/heldout.pack.npz --device "$DEVICE" \
    --batch 64 --limit "$BENCH_LIMIT" --out "$RUN/default_model_gpu.json"
  for q in $PROBES; do
    judge "probe $q" "$PY" bench/default_model.py --model "$RUN/model" --pack runs/data/heldout.pack.npz --device "$DEVICE" \
      --batch 64 --limit "$PROBE_LIMIT" --question "$q" --out "$RUN/default_model_gpu_$q.json"
  done
  # the world's tool, where the packs have its requests (omni data default --tool-ratio R): request -> call -> answer
  judge "tool requests" "$PY" bench/tool_world.py --model "$RUN/model" --pack runs/data/heldout.pack.npz --device "$DEVICE" \
    --batch 64 --cases 0 --out "$RUN/tool_world_gpu.json"
  # and the spoken questions with the tool declared (a session that declares it asks them so)
  if has_tool runs/data/heldout.pack.npz; then
    # typed requests in held-out wordings (no espeak-ng needed)
    judge "typed tool requests" "$PY" bench/tool_world.py --model "$RUN/model" --request text --split heldout --cases 48 \
      --device "$DEVICE" --batch 64 --out "$RUN/tool_world_gpu_text.json"
    judge "declared" "$PY" bench/default_model.py --model "$RUN/model" --pack runs/data/heldout.pack.npz --device "$DEVICE" \
      --batch 64 --limit "$BENCH_LIMIT" --declare-tools --out "$RUN/default_model_gpu_declared.json"
  fi
else
  echo "NOT DONE: the time budget ended before the last stage; call this script again to resume" | tee -a "$log"
fi
pack_logs
ls -la "$OUT"

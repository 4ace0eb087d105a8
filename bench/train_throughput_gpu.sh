#!/usr/bin/env bash
# Training throughput of the default model on one GPU, loader path against device
# path (bench/train_throughput.py), in one device call of under 9 minutes.
#
# On the CPU machine, once (the GPU image has no espeak-ng, av, pocketsphinx,
# silero-vad, gradio or websockets, so the pack is made here and travels; ~12 MB):
#     omni data default --out runs/throughput_pack --train-scenes 800 --heldout-scenes 8 --max-mb 14
# On the GPU machine (device `run`, timeout 600, carry runs/throughput_pack/train.pack.npz):
#     bash bench/train_throughput_gpu.sh
# Files back in $OUT: train_throughput_gpu.json (every case), train_throughput_gpu_log.txt.
#
# Each stage runs in its own process with its own time limit, so that a failure or
# an overrun costs that stage only; the cases are batch 192 of each stage, both paths.
# Time left after them goes, in order, to the device path at batch 768 on the
# dialogue stage, then to the device path with torch.compile'd decoder layers (the
# first steps compile: ~100 s on a 2-core CPU, less there; the arm is cut at 150 s).
set -uo pipefail

PACK=${PACK:-runs/throughput_pack/train.pack.npz}
OUT=${OUT:-runs/throughput-out}
PY=${PYTHON:-python3}
BATCH=${BATCH:-192}
STEPS=${STEPS:-20}
WORKERS=${WORKERS:-12}    # the recipe's loader workers
BUDGET=${BUDGET:-520}     # seconds this script may take in all
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$OUT" runs/throughput-cases
log="$OUT/train_throughput_gpu_log.txt"
[[ -f "$PACK" ]] || { echo "missing $PACK: carry it (see the head of this script)" | tee "$log"; exit 2; }
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  "$PY" -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.cuda.is_available())"
} 2>&1 | tee "$log"

left() { echo $(( BUDGET - SECONDS )); }
case_run() {  # name limit_s args...: one bench process, its JSON in runs/throughput-cases
  local name=$1 limit=$2
  shift 2
  (( limit > $(left) )) && limit=$(left)
  if (( limit < 40 )); then echo "skipped $name: $(left) s left" | tee -a "$log"; return; fi
  echo "== $name (limit $limit s, $(left) s left)" | tee -a "$log"
  timeout "$limit" "$PY" bench/train_throughput.py --pack "$PACK" --device cuda "$@" \
    --out "runs/throughput-cases/$name.json" 2>&1 | tr '\r' '\n' | grep -v -E '^\s*$|step\]$|step/s\]$' | tee -a "$log"
  echo "== $name: exit ${PIPESTATUS[0]}" | tee -a "$log"
}

for stage in speech vision dialogue; do
  case_run "$stage" 170 --stage "$stage" --batch "$BATCH" --steps "$STEPS" --warmup 5 --workers "$WORKERS"
done
case_run dialogue_768_device 90 --stage dialogue --batch 768 --paths device --steps 10 --warmup 3
case_run dialogue_compile_device 150 --stage dialogue --batch "$BATCH" --paths device --steps "$STEPS" --warmup 8 \
  --compile layers

"$PY" - "$OUT/train_throughput_gpu.json" runs/throughput-cases/*.json <<'EOF' 2>&1 | tee -a "$log"
import json, sys
out, parts = sys.argv[1], sys.argv[2:]
rows, runs = [], {}
for p in parts:
    with open(p) as fh:
        d = json.load(fh)
    name = p.rsplit("/", 1)[-1][:-5]
    runs[name] = {k: d[k] for k in ("device", "torch", "command", "speedup_device_over_loader")}
    rows += [dict(r, case=name) for r in d["rows"]]
with open(out, "w") as fh:
    json.dump({"runs": runs, "rows": rows}, fh, indent=1)
for r in rows:
    if r.get("error"):
        print(f"{r['case']:26s} {r['stage']:9s} {r['batch']:4d} {r['path']:7s} ERROR {r['error']}")
        continue
    print(f"{r['case']:26s} {r['stage']:9s} {r['batch']:4d} {r['path']:7s} {r['samples_per_s']:9.0f} samples/s "
          f"{r['ms_per_step']:7.1f} ms/step  phases {r.get('phases_ms')}  syncs {r.get('cuda_syncs', r.get('host_reads'))}")
print("wrote", out)
EOF
echo "total $SECONDS s" | tee -a "$log"

#!/usr/bin/env bash
# Training throughput of the default model on one GPU, loader path against device
# path (bench/train_throughput.py), in one device call of under 9 minutes.
#
# On the CPU machine, once (the GPU image has no espeak-ng, av, pocketsphinx,
# silero-vad, gradio or websockets, so the pack is made here and travels; ~13 MB):
#     omni data default --out runs/throughput_pack --train-scenes 800 --heldout-scenes 8 --max-mb 14
# On the GPU machine (device `run`, timeout 600, carry runs/throughput_pack/train.pack.npz):
#     bash bench/train_throughput_gpu.sh
# Files back in $OUT (4):
#     train_throughput_gpu.json      every case: samples/s, phases, syncs, and one profiled
#                                    step (kernels by family, busiest kernels and host ops)
#     train_throughput_gpu_log.txt   this log
#     train_throughput_sdpa.json     the attention calls of both paths, new vs repeated shapes
#     train_throughput_traces.tar    chrome traces (.json.gz) of the dialogue stage's profiled steps
#
# In order, each in its own process with its own time limit (a failure or an overrun
# costs that case only):
#   1. bench/train_throughput_sdpa.py: does a new attention shape cost a plan build?
#   2. each stage at batch 192: loader, device_legacy (the device path as it was where
#      a switch exists: torch's SDPA choice, the ViT through SDPA, lengths rounded to
#      16) and device (this version), one step of each profiled
#   3. time left: dialogue at batch 768 (device, device_legacy), then the device path
#      with decoder layers and audio heads compiled with CUDA graphs (reduce-overhead,
#      2 lengths per doubling: few shapes to record), the same with the ViT's layers
#      too, then layers and heads compiled without CUDA graphs.
set -uo pipefail

PACK=${PACK:-runs/throughput_pack/train.pack.npz}
OUT=${OUT:-runs/throughput-out}
PY=${PYTHON:-python3}
BATCH=${BATCH:-192}
STEPS=${STEPS:-20}
WORKERS=${WORKERS:-12}    # the recipe's loader workers
WARMUP=${WARMUP:-5}
BIG=${BIG:-768}           # the larger dialogue batch
COMPILE=${COMPILE:-1}     # 0: no compiled arms
DEVICE=${DEVICE:-cuda}    # cpu: a smoke run of this script (tiny BATCH, BIG, STEPS; WORKERS=0 COMPILE=0)
BUDGET=${BUDGET:-500}     # seconds this script may take in all (the call: 600 s with ~60 s to start)
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
CASES=runs/throughput-cases TRACES=runs/throughput-traces
mkdir -p "$OUT" "$CASES" "$TRACES"
log="$OUT/train_throughput_gpu_log.txt"
[[ -f "$PACK" ]] || { echo "missing $PACK: carry it (see the head of this script)" | tee "$log"; exit 2; }
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  "$PY" -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'cudnn', torch.backends.cudnn.version())"
} 2>&1 | tee "$log"

left() { echo $(( BUDGET - SECONDS )); }
run_limited() {  # name limit_s command...: one process, its output in the log
  local name=$1 limit=$2
  shift 2
  (( limit > $(left) )) && limit=$(left)
  if (( limit < 40 )); then echo "skipped $name: $(left) s left" | tee -a "$log"; return; fi
  echo "== $name (limit $limit s, $(left) s left)" | tee -a "$log"
  timeout "$limit" "$@" 2>&1 | tr '\r' '\n' | grep -v -E '^\s*$|step\]$|step/s\]$|it/s\]$' | tee -a "$log"
  echo "== $name: exit ${PIPESTATUS[0]} at $SECONDS s" | tee -a "$log"
}
case_run() {  # name limit_s bench-args...
  local name=$1 limit=$2
  shift 2
  run_limited "$name" "$limit" "$PY" bench/train_throughput.py --pack "$PACK" --device "$DEVICE" --profile "$@" \
    --out "$CASES/$name.json"
}

run_limited sdpa 60 "$PY" bench/train_throughput_sdpa.py --device "$DEVICE" --out "$OUT/train_throughput_sdpa.json"
for stage in speech vision dialogue; do
  extra=()
  [[ $stage == dialogue ]] && extra=(--trace-dir "$TRACES")
  case_run "$stage" 150 --stage "$stage" --batch "$BATCH" --steps "$STEPS" --warmup "$WARMUP" --workers "$WORKERS" \
    --paths loader,device_legacy,device ${extra[@]+"${extra[@]}"}
done
case_run "dialogue_$BIG" 100 --stage dialogue --batch "$BIG" --paths device,device_legacy --steps 10 --warmup 3
(( COMPILE )) && case_run dialogue_graphs 150 --stage dialogue --batch "$BATCH" --paths device --steps "$STEPS" --warmup 16 \
  --compile layers,heads --compile-mode reduce-overhead --length-buckets 2 --trace-dir "$TRACES"
(( COMPILE )) && case_run dialogue_graphs_all 130 --stage dialogue --batch "$BATCH" --paths device --steps "$STEPS" \
  --warmup 16 --compile layers,heads,vision --compile-mode reduce-overhead --length-buckets 2
(( COMPILE )) && case_run dialogue_compiled 120 --stage dialogue --batch "$BATCH" --paths device --steps "$STEPS" --warmup 10 \
  --compile layers,heads

"$PY" - "$OUT/train_throughput_gpu.json" "$CASES"/*.json <<'EOF' 2>&1 | tee -a "$log"
import json, os, sys
out, parts = sys.argv[1], sys.argv[2:]
rows, runs = [], {}
for p in parts:
    if not os.path.isfile(p):  # the shell's unmatched glob: no case finished
        continue
    with open(p) as fh:
        d = json.load(fh)
    name = p.rsplit("/", 1)[-1][:-5]
    runs[name] = {k: d[k] for k in ("device", "torch", "command", "speedup_device_over_loader")}
    rows += [dict(r, case=name) for r in d["rows"]]
with open(out, "w") as fh:
    json.dump({"runs": runs, "rows": rows}, fh, indent=1)
base = {(r["stage"], r["batch"]): r["samples_per_s"] for r in rows if r["path"] == "loader" and "error" not in r}
for r in rows:
    if r.get("error"):
        print(f"{r['case']:18s} {r['stage']:9s} {r['batch']:4d} {r['path']:13s} ERROR {r['error'][:300]}")
        continue
    b = base.get((r["stage"], r["batch"]))
    x = f"{r['samples_per_s'] / b:5.1f}x" if b else "      "
    pr = r.get("profile", {})
    print(f"{r['case']:18s} {r['stage']:9s} {r['batch']:4d} {r['path']:13s} {r['samples_per_s']:7.0f} samples/s {x} "
          f"{r['ms_per_step']:6.1f} ms/step phases {r.get('phases_ms')} syncs {r.get('cuda_syncs', r.get('host_reads'))} "
          f"| profiled: {pr.get('kernels')} kernels, {pr.get('device_ms')} ms on the GPU in {pr.get('wall_ms')} ms")
for r in rows:  # the busiest kernels of each profiled step
    pr = r.get("profile")
    if pr:
        print(f"-- {r['case']} {r['stage']} {r['batch']} {r['path']}: by family {pr['by_kind']}")
        for name, ms, n in pr["top_kernels"][:8]:
            print(f"     {ms:8.2f} ms x{n:<5d} {name[:100]}")
        for name, ms, n in pr["top_host_ops"][:5]:
            print(f"     host {ms:8.2f} ms x{n:<5d} {name[:95]}")
print("wrote", out)
EOF
# the traces (already gzipped) in one file, under the 16 MiB a file may have: largest dropped first
while (( $(du -cb "$TRACES"/*.gz 2>/dev/null | tail -1 | cut -f1) > 15000000 )); do
  big=$(ls -S "$TRACES"/*.gz | head -1); echo "dropped trace $big (size)" | tee -a "$log"; rm -f "$big"
done
ls "$TRACES"/*.gz >/dev/null 2>&1 && tar -cf "$OUT/train_throughput_traces.tar" -C "$TRACES" .
ls -la "$OUT" | tee -a "$log"
echo "total $SECONDS s" | tee -a "$log"

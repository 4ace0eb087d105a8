#!/usr/bin/env bash
# Run one test again and again while busy loops hold the CPUs, as a whole CI run does on
# a small machine: a test that waits on timing shows here whether it holds under load.
#
#   bash scripts/under_load.sh [-n RUNS] [-l LOADERS] [-o OUT.json] TEST_ID
#   e.g. bash scripts/under_load.sh -n 6 -l 2 -o bench/results/demo_world_under_load_cpu.json \
#            tests/demo/test_demo_world.py
#
# Prints a line per run and writes {test, runs, passes, loaders, commit, hardware, failures}.
set -euo pipefail
runs=6 loaders=2 out=""
while getopts "n:l:o:h" opt; do
  case $opt in
    n) runs=$OPTARG ;;
    l) loaders=$OPTARG ;;
    o) out=$OPTARG ;;
    *) sed -n '2,9p' "$0"; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
test_id=${1:?a test id (see -h)}
py=${PYTHON:-.venv/bin/python}
[[ -x "$py" ]] || { echo "no $py: run ./omni.sh test once to install" >&2; exit 2; }

pids=()
stop_load() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap stop_load EXIT
for _ in $(seq 1 "$loaders"); do python3 -c 'while True: pass' & pids+=($!); done

logs=$(mktemp -d)
passes=0 failures=()
for i in $(seq 1 "$runs"); do
  if "$py" -m pytest -q -x -p no:cacheprovider "$test_id" > "$logs/run$i.txt" 2>&1; then
    passes=$((passes + 1)); echo "run $i: pass"
  else
    where=$(grep -m1 -E "^(E |FAILED|ERROR)" "$logs/run$i.txt" || tail -1 "$logs/run$i.txt")
    failures+=("run $i: $where"); echo "run $i: FAIL  $where"
  fi
done
echo "passes $passes/$runs with $loaders busy loops (logs: $logs)"

if [[ -n "$out" ]]; then
  printf '%s\n' "${failures[@]+"${failures[@]}"}" | "$py" -c '
import json, os, platform, subprocess, sys
test, runs, passes, loaders, out = sys.argv[1:6]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
json.dump({"test": test, "runs": int(runs), "passes": int(passes), "busy_loops": int(loaders),
           "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
           "hardware": f"{os.cpu_count()}-core CPU ({cpu})",
           "failures": [l for l in sys.stdin.read().splitlines() if l]}, open(out, "w"), indent=1)
print("wrote", out)' "$test_id" "$runs" "$passes" "$loaders" "$out"
fi

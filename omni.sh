#!/usr/bin/env bash
# The project's front door. Installs what is missing, then:
#   ./omni.sh demo     the live assistant (server + Gradio page) on the default model
#   ./omni.sh test     the test suite (what CI runs)
#   ./omni.sh ARGS...  any `omni` subcommand, e.g. ./omni.sh chat --text "hello"
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/bootstrap.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False
case "${1:-demo}" in
  test)
    shift || true
    # The suite writes up to ~3 GiB of models, packs and checkpoints under the temporary folder
    # (a run with too little room fails midway with "No space left on device").
    tmp=${TMPDIR:-/tmp}
    free_kb=$(df -Pk "$tmp" 2>/dev/null | awk 'NR==2 {print $4}') || free_kb=""
    if [[ -n "$free_kb" ]] && (( free_kb < 4 * 1024 * 1024 )); then
      echo "omni.sh test: warning: $((free_kb / 1024)) MiB free in $tmp, the tests need about 3 GiB there" \
           "(TMPDIR=DIR picks another folder)" >&2
    fi
    exec .venv/bin/python -m pytest -q "$@"
    ;;
  *)
    exec .venv/bin/omni "$@"
    ;;
esac

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
    exec .venv/bin/python -m pytest -q "$@"
    ;;
  *)
    exec .venv/bin/omni "$@"
    ;;
esac

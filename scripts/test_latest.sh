#!/usr/bin/env bash
# Runs the test suite against the NEWEST releases that pyproject.toml's ranges
# admit, in a separate environment (.venv-latest), to see what an upgrade would
# break before the lock is refreshed on purpose (bash scripts/lock.sh).
# Prints which packages differ from requirements.lock, then runs pytest.
#
#   bash scripts/test_latest.sh                 # whole suite
#   bash scripts/test_latest.sh tests/llm -x    # any pytest arguments
set -euo pipefail
cd "$(dirname "$0")/.."
env_dir=.venv-latest
python3 -m venv --clear "$env_dir"
"$env_dir/bin/pip" install -q --upgrade pip
"$env_dir/bin/pip" install -q --upgrade --upgrade-strategy eager -e '.[test]'
echo "[latest] packages newer (or other) than requirements.lock:"
"$env_dir/bin/pip" freeze --all --exclude-editable | grep -v -E '^(omni-stream|-e )' | LC_ALL=C sort -f > "$env_dir/versions.txt"
changes=$(diff <(grep '==' requirements.lock) "$env_dir/versions.txt" | grep '^[<>]' | sed 's/^</  locked:/; s/^>/  newest:/' || true)
echo "${changes:-  (none)}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False
exec "$env_dir/bin/python" -m pytest -q "$@"

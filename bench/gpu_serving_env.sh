# Sourced by the GPU serving benchmarks (bench/streaming_gpu.sh, bench/turn_taking_gpu.sh): the GPU
# image has neither websockets nor silero-vad, so install the carried wheels (bash
# bench/streaming_carry.sh DIR makes them) into /tmp/site and put it and the repository on
# PYTHONPATH, offline. Usage: source bench/gpu_serving_env.sh WHEEL_DIR
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  --find-links "${1:?folder with the websockets and silero-vad wheels}" websockets silero-vad  # the image's CPython picks its websockets wheel
export PYTHONPATH=/tmp/site:$PWD HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader

"""Build the RealtimeModel the server drives: a checkpoint directory, or a flavor.

Without `--model` the server runs a `debug`-flavor OmniModel with random
weights (it babbles; every piece of the pipeline is real) and says so.
"""

from __future__ import annotations

import logging
import os

import torch

log = logging.getLogger(__name__)


def pick_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


DECODE_MODES = ("auto", "eager", "static", "graph", "compiled")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def pick_dtype(dtype: str | None, device: str) -> torch.dtype:
    """"auto" (or None): bf16 on a GPU, where the shipped weights' own bf16 halves what a
    decode step reads and the CUDA-graph path is the one measured; fp32 on CPU, whose
    matrix kernels are fastest there."""
    if dtype in (None, "auto"):
        return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of auto, {', '.join(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype]


def pick_decode_mode(mode: str, device: str) -> str:
    """"auto": CUDA graphs on a GPU (the decode step replayed, not re-launched op
    by op), the eager forward on CPU. "compiled": the decoder layers compiled
    (OmniModel.compile_decode), their step replayed in CUDA graphs on a GPU."""
    if mode not in DECODE_MODES:
        raise ValueError(f"decode mode must be one of {', '.join(DECODE_MODES)}, got {mode!r}")
    if mode == "auto":
        return "graph" if torch.device(device).type == "cuda" else "eager"
    return mode


def prepare_decode(model, mode: str) -> str:
    """Set the model up for a serving decode mode; returns the OmniModel decode mode to run
    (`RealtimeOmni(decode_mode=...)`). "compiled" compiles the decoder layers and runs them in
    CUDA graphs on a GPU, in the static step on a CPU (where torch compiles the experts' grouped
    matmul for bf16 only)."""
    if mode != "compiled":
        return mode
    if model.device.type != "cuda" and model.dtype != torch.bfloat16:
        raise ValueError("decode mode compiled on a CPU needs bf16 weights (--dtype bf16)")
    model.compile_decode()
    return "graph" if model.device.type == "cuda" else "static"


def load_realtime_model(model_dir: str | None = None, flavor: str | None = None, device: str = "auto",
                        dtype: str | None = "auto", max_slots: int = 4, capacity: int = 4096,
                        max_steps: int = 1000, seed: int = 0, decode_mode: str = "auto"):
    """-> (RealtimeOmni, description). decode_mode: auto | eager | static | graph | compiled
    (see OmniModel.set_decode_mode and prepare_decode; auto = graph on CUDA, eager on CPU); dtype: auto | fp32 |
    bf16 | fp16 (pick_dtype: auto = bf16 on CUDA, fp32 on CPU)."""
    from omni.generation import GenerationOptions
    from omni.model import OmniModel
    from omni.realtime import RealtimeOmni

    from omni.defaults import DEFAULT_MODEL_DIR, resolve_model

    model_dir, flavor = resolve_model(model_dir, flavor)  # no --model/--flavor: the shipped default
    device = pick_device(device)
    mode = pick_decode_mode(decode_mode, device)
    torch_dtype = pick_dtype(dtype, device)
    if model_dir:
        model = OmniModel.from_pretrained(model_dir, device=device, dtype=torch_dtype)
        shipped = os.path.realpath(model_dir) == os.path.realpath(DEFAULT_MODEL_DIR)
        desc = f"the shipped default model ({model_dir})" if shipped else f"checkpoint {model_dir}"
    else:
        from omni.config import get_omni_config

        torch.manual_seed(seed)
        model = OmniModel(get_omni_config(flavor)).to(device).to_dtype(torch_dtype)  # fp32: a no-op
        desc = f"flavor {flavor} with RANDOM weights (pass --model DIR for a trained checkpoint)"
    from omni.turn_end import load_turn_end

    # the model's end-of-turn head, when its directory has one: semantic_vad (streaming/semantic_turn.py)
    turn_end = load_turn_end(model_dir, model.config.llm.hidden_size, device) if model_dir else None
    if turn_end is not None:
        desc += "; semantic end of turn"
    run_mode = prepare_decode(model, mode)
    rt = RealtimeOmni(model, max_slots=max_slots, capacity=capacity,
                      options=GenerationOptions(max_new_tokens=max_steps), decode_mode=run_mode, turn_end=turn_end)
    if run_mode == "graph":  # capture every batch size's graph (compiling first) before the first client
        rt.warm_up_decode()
    return rt, f"{desc}; {str(torch_dtype).removeprefix('torch.')}; decode mode {mode}"

"""Build the RealtimeModel the server drives: a checkpoint directory, or a flavor.

Without `--model` the server runs a `debug`-flavor OmniModel with random
weights (it babbles; every piece of the pipeline is real) and says so.
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)


def pick_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def load_realtime_model(model_dir: str | None = None, flavor: str = "debug", device: str = "auto",
                        dtype: str | None = None, max_slots: int = 4, capacity: int = 4096,
                        max_steps: int = 1000, seed: int = 0):
    """-> (RealtimeOmni, description)."""
    from omni.generation import GenerationOptions
    from omni.model import OmniModel
    from omni.realtime import RealtimeOmni

    device = pick_device(device)
    torch_dtype = {None: None, "fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    if model_dir:
        model = OmniModel.from_pretrained(model_dir, device=device, dtype=torch_dtype)
        desc = f"checkpoint {model_dir}"
    else:
        from omni.config import get_omni_config

        torch.manual_seed(seed)
        model = OmniModel(get_omni_config(flavor)).to(device)
        if torch_dtype is not None:
            model = model.to_dtype(torch_dtype)
        desc = f"flavor {flavor} with RANDOM weights (pass --model DIR for a trained checkpoint)"
    rt = RealtimeOmni(model, max_slots=max_slots, capacity=capacity,
                      options=GenerationOptions(max_new_tokens=max_steps))
    return rt, desc

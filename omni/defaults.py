"""Where the shipped default model lives, and how commands resolve "no --model".

`omni chat`, `omni serve` and `omni demo` (which starts `omni serve`) share one
rule: an explicit `--model DIR` wins; otherwise an explicit `--flavor` builds a
randomly initialized model of that flavor; otherwise the shipped default model
is used when its directory holds a checkpoint, else a random `debug` model (and
the command says so).
"""

from __future__ import annotations

import os

# omni/pretrained/default/: an OmniModel.save_pretrained directory (config.json,
# model.safetensors, tokenizer/, codec/), written by the default-model recipe.
DEFAULT_MODEL_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pretrained", "default")
FALLBACK_FLAVOR = "debug"


def default_model_dir(path: str | None = None) -> str | None:
    """The shipped default model's directory, or None when none is shipped."""
    path = DEFAULT_MODEL_DIR if path is None else path
    return path if os.path.isfile(os.path.join(path, "config.json")) else None


def resolve_model(model: str | None, flavor: str | None, default_dir: str | None = None) -> tuple[str | None, str | None]:
    """-> (checkpoint dir or None, flavor or None): exactly one is set."""
    if model:
        return model, None
    if flavor:
        return None, flavor
    found = default_model_dir(default_dir)
    if found:
        return found, None
    return None, FALLBACK_FLAVOR

"""The LongCat-Flash backbone: MLA + shortcut-connected MoE with
zero-computation experts, compressed KV cache, generation, checkpoint I/O."""

from omni.llm.cache import MLACache
from omni.llm.fusion import fuse_projections_
from omni.llm.generation import generate, prefill
from omni.llm.loading import from_pretrained, save_pretrained
from omni.llm.model import BackboneOutput, LongcatFlashForCausalLM
from omni.llm.router import Routing
from omni.llm.runner import DecodeRunner, compile_layers
from omni.llm.sampling import SamplingConfig, sample_next

__all__ = [
    "BackboneOutput",
    "DecodeRunner",
    "LongcatFlashForCausalLM",
    "MLACache",
    "Routing",
    "SamplingConfig",
    "compile_layers",
    "from_pretrained",
    "fuse_projections_",
    "generate",
    "prefill",
    "sample_next",
    "save_pretrained",
]

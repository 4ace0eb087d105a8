"""The LongCat-Flash backbone: MLA + shortcut-connected MoE with
zero-computation experts, compressed KV cache, generation, checkpoint I/O."""

from omni.llm.cache import MLACache
from omni.llm.model import BackboneOutput, LongcatFlashForCausalLM
from omni.llm.router import Routing
from omni.llm.loading import from_pretrained, save_pretrained

__all__ = ["MLACache", "BackboneOutput", "LongcatFlashForCausalLM", "Routing", "from_pretrained", "save_pretrained"]

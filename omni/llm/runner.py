"""Decode-step runners: eager, or captured once in a CUDA graph and replayed.

A `DecodeRunner` serves a fixed batch size B. Each `step` takes B slots (any
slots, any lengths: positions come from the cache on the device) and one
token id (or one embedding) per slot, and returns logits [B, V] and the final
hidden states [B, H]. In graph mode the inputs are copied into static
buffers and the whole step (all layers, the cache write and the length
update) is one graph replay: about one microsecond per kernel instead of an
eager launch each. Optionally the decoder layers are compiled first with
torch.compile (regional: one compiled layer body shared by every layer).
"""

from __future__ import annotations

from typing import Sequence

import torch

from omni.llm.cache import MLACache
from omni.llm.experts import grouped_mm_available
from omni.llm.model import LongcatFlashForCausalLM
from omni.llm.moe_triton import triton_moe_available


def compile_layers(model: LongcatFlashForCausalLM, **kwargs) -> None:
    """torch.compile each decoder layer in place (same code -> compiled once)."""
    probe_expert_kernels(model)
    kwargs.setdefault("fullgraph", True)
    kwargs.setdefault("dynamic", False)
    for layer in model.model.layers:
        layer.compile(**kwargs)


def probe_expert_kernels(model: LongcatFlashForCausalLM) -> None:
    """Run the experts' kernel-availability probes now, eagerly, for the model's
    device and dtype. They build generators and read results back to the host,
    which a full-graph compile cannot trace: a compiled decode step with a small
    batch would otherwise be the first to ask, and fail to compile."""
    p = next(model.parameters())
    triton_moe_available(p.device, p.dtype)
    grouped_mm_available(p.device, p.dtype)


def uncompile_layers(model: LongcatFlashForCausalLM) -> None:
    """Undo `compile_layers`: every decoder layer runs its plain forward again."""
    for layer in model.model.layers:
        layer._compiled_call_impl = None


class DecodeRunner:
    def __init__(
        self,
        model: LongcatFlashForCausalLM,
        cache: MLACache,
        batch: int,
        use_graph: bool = False,
        embeds: bool = False,
        fixed_slots: Sequence[int] | None = None,
        warmup: int = 2,
    ) -> None:
        """fixed_slots: if given (a contiguous range), the runner always decodes
        exactly these slots and reads the cache through views (no gather)."""
        self.model, self.cache, self.batch = model, cache, batch
        self.use_graph = use_graph
        self.embeds = embeds
        self.warmup = warmup
        dev = cache.device
        self.slot_buf = torch.zeros(batch, dtype=torch.long, device=dev)
        self.slot_slice: slice | None = None
        if fixed_slots is not None:
            fixed = [int(s) for s in fixed_slots]
            if len(fixed) != batch or fixed != list(range(fixed[0], fixed[0] + batch)):
                raise ValueError(f"fixed_slots must be {batch} contiguous slots, got {fixed}")
            self.slot_slice = slice(fixed[0], fixed[0] + batch)
            self.slot_buf.copy_(torch.tensor(fixed))
        if embeds:
            self.in_buf = torch.zeros(batch, model.config.hidden_size, dtype=model.dtype, device=dev)
        else:
            self.in_buf = torch.zeros(batch, dtype=torch.long, device=dev)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.out: tuple[torch.Tensor, torch.Tensor] | None = None
        if use_graph and not dev.type == "cuda":
            raise ValueError("CUDA graphs need a CUDA device; use use_graph=False on CPU")

    def _run(self) -> tuple[torch.Tensor, torch.Tensor]:
        kw = {"inputs_embeds": self.in_buf} if self.embeds else {"input_ids": self.in_buf}
        return self.model.decode_step(self.slot_buf, cache=self.cache, slot_slice=self.slot_slice, **kw)

    def _capture(self) -> None:
        saved = self.cache.lengths.clone()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(self.warmup):  # allocator / cuBLAS / compile warm-up
                self._run()
        torch.cuda.current_stream().wait_stream(stream)
        self.cache.lengths.copy_(saved)  # warm-up steps must leave no trace
        self.graph = torch.cuda.CUDAGraph()
        # thread-local capture: the encoder stage may launch work on its own stream meanwhile
        with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
            self.out = self._run()
        self.cache.lengths.copy_(saved)

    @torch.no_grad()
    def step(
        self, slots: Sequence[int], input_ids: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        slots = [int(s) for s in slots]
        if len(slots) != self.batch:
            raise ValueError(f"runner built for batch {self.batch}, got {len(slots)} slots")
        if self.slot_slice is not None and slots != list(range(self.slot_slice.start, self.slot_slice.stop)):
            raise ValueError(f"runner is fixed to slots {self.slot_slice}, got {slots}")
        self.cache.check_room(slots, [1] * len(slots))
        x = inputs_embeds if self.embeds else input_ids
        if x is None:
            raise ValueError("pass inputs_embeds" if self.embeds else "pass input_ids")
        self.in_buf.copy_(x.reshape(self.in_buf.shape))
        if self.slot_slice is None:
            self.slot_buf.copy_(torch.tensor(slots, dtype=torch.long), non_blocking=True)
        if self.use_graph:
            if self.graph is None:
                self._capture()
            self.graph.replay()
            out = self.out
        else:
            out = self._run()
        self.cache.advance(slots, [1] * len(slots), device_too=False)
        return out

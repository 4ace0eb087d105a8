"""Pre-allocated compressed KV cache for MLA, organised in slots.

One slot holds one sequence (one streaming session, one batch row). Per
attention sublayer and per token the cache stores only MLA's compressed state:
the normalized, scaled kv latent (`kv_lora_rank` values) followed by the
rotated shared rope key (`qk_rope_head_dim` values) - not the expanded
per-head keys and values.

Shapes are static: `kv` is [num_sublayers, max_slots, capacity + 1, D]. Row
`capacity` of each slot is a trash row: writes of right-padding tokens go there,
so a padded batch never overwrites valid entries and needs no data-dependent
shapes. Lengths live on the device (read inside CUDA graphs) with a host
mirror (read by Python without a device sync); every mutation goes through the
methods below so the two never disagree.
"""

from __future__ import annotations

from typing import Sequence

import torch

from omni.config import LLMConfig


class MLACache:
    """Compressed KV cache with `max_slots` slots of `capacity` tokens."""

    def __init__(
        self,
        cfg: LLMConfig,
        max_slots: int,
        capacity: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        if max_slots < 1 or capacity < 1:
            raise ValueError(f"MLACache needs max_slots >= 1 and capacity >= 1, got {max_slots}, {capacity}")
        self.num_sublayers = 2 * cfg.num_layers
        self.max_slots = max_slots
        self.capacity = capacity
        self.kv_lora_rank = cfg.kv_lora_rank
        self.rope_dim = cfg.qk_rope_head_dim
        self.width = cfg.kv_lora_rank + cfg.qk_rope_head_dim
        self.kv = torch.zeros(self.num_sublayers, max_slots, capacity + 1, self.width, dtype=dtype, device=device)
        self.lengths = torch.zeros(max_slots, dtype=torch.long, device=device)
        self._host = [0] * max_slots

    # --- queries ---------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return self.kv.device

    @property
    def dtype(self) -> torch.dtype:
        return self.kv.dtype

    @property
    def trash_index(self) -> int:
        return self.capacity

    def length(self, slot: int) -> int:
        self._check_slot(slot)
        return self._host[slot]

    def host_lengths(self, slots: Sequence[int]) -> list[int]:
        return [self.length(s) for s in slots]

    def nbytes(self) -> int:
        return self.kv.numel() * self.kv.element_size()

    # --- mutations -------------------------------------------------------

    def truncate(self, slot: int, length: int) -> None:
        """Forget everything after `length` tokens (rollback). Entries past the
        new length are left in memory but are masked out and overwritten by
        later writes, so the slot behaves exactly as if never extended."""
        self._check_slot(slot)
        if not 0 <= length <= self._host[slot]:
            raise ValueError(
                f"truncate(slot={slot}, length={length}): length must be in [0, {self._host[slot]}]"
            )
        self._host[slot] = length
        self.lengths[slot] = length

    def reset(self, slot: int) -> None:
        """Empty a slot (zeroing its entries too, for hygiene)."""
        self._check_slot(slot)
        self.kv[:, slot].zero_()
        self._host[slot] = 0
        self.lengths[slot] = 0

    def reset_all(self) -> None:
        self.kv.zero_()
        self.lengths.zero_()
        self._host = [0] * self.max_slots

    def check_room(self, slots: Sequence[int], new_tokens: Sequence[int]) -> None:
        for s, n in zip(slots, new_tokens):
            self._check_slot(s)
            if self._host[s] + n > self.capacity:
                raise ValueError(
                    f"KV cache slot {s} would hold {self._host[s] + n} tokens; capacity is {self.capacity}"
                )

    def advance(self, slots: Sequence[int], new_tokens: Sequence[int], device_too: bool = True) -> None:
        """Record that `new_tokens[i]` tokens were written to `slots[i]`.

        `device_too=False` is for callers (CUDA graphs) that already advanced
        the device lengths inside the captured step.
        """
        for s, n in zip(slots, new_tokens):
            self._host[s] += int(n)
        if device_too:
            idx = torch.as_tensor(list(slots), dtype=torch.long, device=self.device)
            add = torch.as_tensor(list(new_tokens), dtype=torch.long, device=self.device)
            self.lengths.index_add_(0, idx, add)

    def _check_slot(self, slot: int) -> None:
        if not 0 <= slot < self.max_slots:
            raise IndexError(f"KV cache slot {slot} out of range [0, {self.max_slots})")

"""The conversation a session keeps: its items as the protocol shows them.

Every item the session announces (user turns, text items, the assistant's
replies, function calls and their outputs) is kept here by id, in order, so
that `conversation.item.retrieve` can return it (with the input transcript once
it is known) and `conversation.item.delete` can remove it. The model's context
is a separate thing (a KV cache that is only ever cut at its end): deleting an
item does not take back what the model has already read; docs/protocol.md says
so. Only the most recent `MAX_ITEMS` are kept (the oldest go first).
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Any

MAX_ITEMS = 512


class Conversation:
    def __init__(self, max_items: int = MAX_ITEMS) -> None:
        self.items: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.max_items = max_items

    def add(self, item: dict[str, Any]) -> None:
        """Keep `item` (a copy; an item with the same id is replaced in place)."""
        self.items[item["id"]] = copy.deepcopy(item)
        while len(self.items) > self.max_items:
            self.items.popitem(last=False)

    def get(self, item_id: str) -> dict[str, Any] | None:
        item = self.items.get(item_id)
        return copy.deepcopy(item) if item is not None else None

    def delete(self, item_id: str) -> bool:
        return self.items.pop(item_id, None) is not None

    def set_transcript(self, item_id: str, transcript: str) -> None:
        """The input transcript of a user audio item, once the recognizer has it."""
        item = self.items.get(item_id)
        for part in (item or {}).get("content", []):
            if part.get("type") == "input_audio":
                part["transcript"] = transcript
                return

    def last_id(self) -> str | None:
        return next(reversed(self.items), None)

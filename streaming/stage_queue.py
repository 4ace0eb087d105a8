"""The hand-over queue of the pipeline's worker stages (encoder, audio)."""

from __future__ import annotations

import queue


def collect(q: queue.SimpleQueue, pending: list) -> bool:
    """Wait for one item if `pending` is empty, then move everything queued into
    `pending`. Returns False once the stop sentinel (None) has been taken."""
    if not pending:
        item = q.get()
        if item is None:
            return False
        pending.append(item)
    while True:
        try:
            item = q.get_nowait()
        except queue.Empty:
            return True
        if item is None:
            return False
        pending.append(item)

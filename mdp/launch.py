"""Run a function on N local processes with a gloo (CPU) or NCCL process group.

Used by the tests and the benchmark: `spawn(fn, world_size, *args)` starts the
processes with torch.multiprocessing, initializes torch.distributed through a
file store, calls `fn(rank, world_size, *args)` and returns rank 0's return
value. An exception on any rank fails the whole call with that rank's traceback.
"""

from __future__ import annotations

import io
import os
import tempfile
import traceback
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _entry(rank: int, world: int, store_path: str, backend: str, fn: Callable, args: tuple, queue) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    os.environ["RANK"], os.environ["LOCAL_RANK"], os.environ["WORLD_SIZE"] = str(rank), str(rank), str(world)
    if backend == "nccl":
        torch.cuda.set_device(rank)
    dist.init_process_group(backend, init_method=f"file://{store_path}", rank=rank, world_size=world)
    try:
        out = fn(rank, world, *args)
        buf = io.BytesIO()  # tensors by value: shared-memory handles die with this process
        torch.save(out if rank == 0 else None, buf)
        queue.put((rank, "ok", buf.getvalue()))
    except BaseException:  # report, then let the others time out on their own
        queue.put((rank, "error", traceback.format_exc()))
        raise
    finally:
        try:
            dist.barrier()
        except Exception:
            pass
        dist.destroy_process_group()


def spawn(fn: Callable, world_size: int, *args: Any, backend: str = "gloo") -> Any:
    """Run fn(rank, world_size, *args) on world_size processes; return rank 0's result."""
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    with tempfile.TemporaryDirectory() as tmp:
        store = os.path.join(tmp, "store")
        procs = [
            ctx.Process(target=_entry, args=(r, world_size, store, backend, fn, args, queue), daemon=False)
            for r in range(world_size)
        ]
        for p in procs:
            p.start()
        results: dict[int, tuple[str, Any]] = {}
        while len(results) < world_size:
            rank, status, payload = queue.get()
            results[rank] = (status, payload)
            if status == "error":
                for p in procs:
                    p.kill()  # a failed rank leaves the others blocked in a collective
                break
        for p in procs:
            p.join()
    errors = {r: v for r, (s, v) in results.items() if s == "error"}
    if errors:
        r = min(errors)
        raise RuntimeError(f"rank {r} of {world_size} failed:\n{errors[r]}")
    return torch.load(io.BytesIO(results[0][1]), weights_only=False)

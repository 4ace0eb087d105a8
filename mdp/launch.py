"""Run a function on N local processes with a gloo (CPU) or NCCL process group.

Used by the tests and the benchmark: `spawn(fn, world_size, *args)` starts the
processes with torch.multiprocessing, initializes torch.distributed through a
file store, calls `fn(rank, world_size, *args)` and returns rank 0's return
value. An exception on any rank fails the whole call with that rank's traceback.
`start` returns the running `Job` instead (`wait()` or `kill()`, the latter a
SIGKILL of every rank). Jobs launched with torchrun use `mdp.train` instead.
"""

from __future__ import annotations

import io
import os
import signal
import tempfile
import time
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


# Modules the fork server imports once; every later process forks from it with them
# loaded, which saves seconds per rank (torch + the model packages) on small machines.
PRELOAD = ["torch", "torch.distributed", "torch.distributed.fsdp", "torch.distributed.tensor", "mdp.trainer"]


def _context():
    """forkserver (fast, and safe: the server has started no threads) or spawn."""
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        return ctx
    return mp.get_context("spawn")


class Job:
    """A running group of ranks (see `start`)."""

    def __init__(self, ctx, fn: Callable, world_size: int, args: tuple, backend: str) -> None:
        self._tmp = tempfile.TemporaryDirectory()
        self.world_size = world_size
        self.queue = ctx.SimpleQueue()
        store = os.path.join(self._tmp.name, "store")
        self.procs = [
            ctx.Process(target=_entry, args=(r, world_size, store, backend, fn, args, self.queue))
            for r in range(world_size)
        ]
        for p in self.procs:
            p.start()

    def kill(self) -> None:
        """SIGKILL every rank: no cleanup, no flushing, like `kill -9`."""
        for p in self.procs:
            if p.is_alive():
                os.kill(p.pid, signal.SIGKILL)
        for p in self.procs:
            p.join()
        self._tmp.cleanup()

    def wait(self) -> Any:
        """Rank 0's return value; raises with the traceback of the first failing rank."""
        results: dict[int, tuple[str, Any]] = {}
        while len(results) < self.world_size:
            if self.queue.empty():
                dead = [r for r, p in enumerate(self.procs) if p.exitcode not in (None, 0) and r not in results]
                if dead:  # died without reporting (signal, abort in C++)
                    time.sleep(0.5)  # its message may still be in flight
                    if self.queue.empty():
                        results[dead[0]] = ("error", f"exited with code {self.procs[dead[0]].exitcode}")
                        for p in self.procs:
                            p.kill()
                        break
                time.sleep(0.02)
                continue
            rank, status, payload = self.queue.get()
            results[rank] = (status, payload)
            if status == "error":
                for p in self.procs:
                    p.kill()  # a failed rank leaves the others blocked in a collective
                break
        for p in self.procs:
            p.join()
        self._tmp.cleanup()
        errors = {r: v for r, (s, v) in results.items() if s == "error"}
        if errors:
            r = min(errors)
            raise RuntimeError(f"rank {r} of {self.world_size} failed:\n{errors[r]}")
        return torch.load(io.BytesIO(results[0][1]), weights_only=False)


def start(fn: Callable, world_size: int, *args: Any, backend: str = "gloo") -> Job:
    """Start fn(rank, world_size, *args) on world_size processes without waiting."""
    return Job(_context(), fn, world_size, args, backend)


def spawn(fn: Callable, world_size: int, *args: Any, backend: str = "gloo") -> Any:
    """Run fn(rank, world_size, *args) on world_size processes; return rank 0's result."""
    return start(fn, world_size, *args, backend=backend).wait()

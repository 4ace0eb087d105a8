"""What it costs a DataLoader worker to hand a batch to the main process as many
small tensors versus the same bytes as one tensor.

Each tensor a worker returns travels separately (a shared-memory segment and a
file descriptor each) and the main process receives them one by one; the default
model's loader used to return ~10 tensors per sample. Prints a table and writes JSON.

    python bench/loader_handover.py --mb 140 --tensors 1900 --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch


class _Batches(torch.utils.data.Dataset):
    def __init__(self, n: int, mb: float, tensors: int, packed: bool) -> None:
        self.n, self.packed, self.tensors = n, packed, tensors
        self.numel = int(mb * 1e6 / 4 / tensors)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, k: int):
        parts = [torch.zeros(self.numel) for _ in range(self.tensors)]
        return torch.cat(parts) if self.packed else parts


def measure(packed: bool, args) -> float:
    ds = _Batches(args.warmup + args.batches, args.mb, args.tensors, packed)
    it = iter(torch.utils.data.DataLoader(ds, batch_size=None, num_workers=args.workers, prefetch_factor=2,
                                          collate_fn=lambda x: x))
    for _ in range(args.warmup):
        next(it)
    t = time.perf_counter()
    for _ in range(args.batches):
        next(it)
    return (time.perf_counter() - t) / args.batches


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mb", type=float, default=140.0, help="bytes per batch, MB (a dialogue batch of 192 is ~140)")
    p.add_argument("--tensors", type=int, default=1900, help="tensors per batch when not packed")
    p.add_argument("--workers", type=int, default=2, help="loader worker processes")
    p.add_argument("--batches", type=int, default=12, help="timed batches per case")
    p.add_argument("--warmup", type=int, default=4, help="untimed warm-up steps")
    p.add_argument("--out", default="bench/results/loader_handover_cpu.json", help="JSON report path")
    args = p.parse_args(argv)
    many, one = measure(False, args), measure(True, args)
    print(f"{'hand-over':24s} ms/batch")
    print(f"{str(args.tensors) + ' tensors':24s} {many * 1e3:8.0f}")
    print(f"{'one tensor':24s} {one * 1e3:8.0f}")
    print(f"ratio {many / one:.1f}x ({args.mb:.0f} MB per batch, {args.workers} workers, {os.cpu_count()} CPUs)")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump({"device": f"{platform.machine()} CPU, {os.cpu_count()} cores", "mb_per_batch": args.mb,
                   "tensors": args.tensors, "workers": args.workers, "ms_per_batch_many": many * 1e3,
                   "ms_per_batch_one": one * 1e3, "ratio": many / one}, fh, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

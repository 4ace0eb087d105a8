"""Where a training step of the default-model recipe spends its time.

Builds the `omni-mini` trainer for one stage from a pack on one device and, for
each global batch size asked, runs a few warm-up steps and then timed steps,
splitting each into data wait (loader workers), encoders (+ bridge), and the rest
(embedding, LLM forward/backward, losses, optimizer); the device is synchronized
at the phase edges. Then one step runs under torch.profiler and the busiest ops
(by device time and by host time) and the number of kernels are printed. Prints a
table and writes JSON.

    python bench/train_step_profile.py --pack runs/data/train.pack.npz --stage dialogue --batch 48,192
    python bench/train_step_profile.py --train-path device --stage dialogue --batch 192

(`bench/train_throughput.py` compares the two paths side by side.)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _timed(fn, acc: dict, key: str, dev: torch.device):
    def wrap(*a, **k):
        _sync(dev)
        t = time.perf_counter()
        out = fn(*a, **k)
        _sync(dev)
        acc[key] = acc.get(key, 0.0) + time.perf_counter() - t
        return out

    return wrap


def _trainer(args, pack, codes, stage: str, batch: int, dev: torch.device, work: str, steps: int, tag: str,
             workers: int):
    """The omni-mini trainer of `stage` at `batch`, its loader covering `steps` steps
    (`--train-path device`: the device-batch trainer, no loader)."""
    from mdp.curriculum.run import MiniTrainer, _stage_recipe
    from mdp.curriculum.stages import write_stage_manifest
    from mdp.recipes import get_recipe

    r = _stage_recipe(get_recipe("omni-mini"), stage, steps)
    out = os.path.join(work, f"{tag}{stage}_{batch}_{workers}")
    r = r.replace(global_batch=batch, output={"out_dir": out, "ckpt_dir": os.path.join(out, "ck")},
                  data={"manifest": os.path.join(work, f"{stage}.jsonl")})
    if not os.path.isfile(r.data.manifest):
        write_stage_manifest(pack, stage, r.data.manifest, args.samples, r.seed)
    if args.train_path == "device":
        from mdp.curriculum.device import DeviceMiniTrainer

        tr = DeviceMiniTrainer(r, dev)
        tr.attach_device_data(r.data.manifest, pack, codes)
        return tr
    tr = MiniTrainer(r, dev)
    tr.attach_pack(r.data.manifest, pack, codes, workers, 0, steps)
    return tr


def profile_batch(args, pack, codes, stage: str, batch: int, dev: torch.device, work: str,
                  workers: int) -> dict:
    steps = args.warmup + args.steps + 1
    if args.busy_loader:  # the loader keeps building (prefetch_factor 4 a worker) while the timed steps run
        steps += 4 * workers + args.steps
    tr = _trainer(args, pack, codes, stage, batch, dev, work, steps, "", workers)
    acc: dict[str, float] = {}
    if args.train_path == "device":  # its step's record is read at once here (training reads it a step later)
        from mdp.curriculum.device import materialize

        tr.data = _timed(tr.data, acc, "data", dev)
        tr.encoders = _timed(tr.encoders, acc, "encoders", dev)
        step = tr.step
        tr.step = lambda s: materialize(step(s))
    else:
        tr._load = _timed(tr._load, acc, "data_wait", dev)
        tr._encode = _timed(tr._encode, acc, "encoders", dev)
    for s in range(args.warmup):
        tr.step(s)
    acc.clear()
    _sync(dev)
    t0 = time.perf_counter()
    for s in range(args.warmup, args.warmup + args.steps):
        tr.step(s)
    _sync(dev)
    total = (time.perf_counter() - t0) / args.steps
    per = {k: v / args.steps for k, v in acc.items()}
    per["rest"] = total - sum(per.values())
    row = {"stage": stage, "global_batch": batch, "workers": workers, "train_path": args.train_path,
           "busy_loader": args.busy_loader, "step_s": total, "phases_s": per}
    if args.no_profile:
        tr.close_loader()
        return row
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with profile(activities=acts) as prof:
        tr.step(args.warmup + args.steps)
        _sync(dev)
    ev = prof.key_averages()
    kernels = sum(e.count for e in ev if getattr(e, "device_type", None) is not None and "CUDA" in str(e.device_type))
    dev_key = "self_device_time_total" if dev.type == "cuda" else "self_cpu_time_total"
    top_dev = sorted(ev, key=lambda e: getattr(e, dev_key, 0.0), reverse=True)[: args.top]
    top_cpu = sorted(ev, key=lambda e: e.self_cpu_time_total, reverse=True)[: args.top]
    tr.close_loader()
    return {
        **row, "kernels": kernels,
        "ops_dispatched": int(sum(e.count for e in ev)),
        "top_device_ms": [(e.key, round(getattr(e, dev_key, 0.0) / 1e3, 3), e.count) for e in top_dev],
        "top_host_ms": [(e.key, round(e.self_cpu_time_total / 1e3, 3), e.count) for e in top_cpu],
    }


def loader_throughput(args, pack, codes, stage: str, batch: int, dev: torch.device, work: str,
                      workers: int) -> dict:
    """Samples/s of the data loader alone (no model): the first batches (worker start,
    prefetch) are skipped, then `--loader-batches` are timed."""
    n = args.loader_batches
    tr = _trainer(args, pack, codes, stage, batch, dev, work, n + workers + 1, "L", workers)
    t = time.perf_counter()
    first = tr._load(0)
    start_s = time.perf_counter() - t
    mb = sum(v.numel() * v.element_size() for it in first[1] for v in it.data.values() if torch.is_tensor(v)) / 1e6
    t = time.perf_counter()
    for k in range(1, n + 1):
        tr._load(k)
    dt = time.perf_counter() - t
    tr.close_loader()
    t = time.perf_counter()
    for i in tr.dataset.step_indices(tr.r.seed, 0, 32):
        tr.dataset.sample(i)
    one = (time.perf_counter() - t) / 32
    return {"stage": stage, "global_batch": batch, "workers": workers, "first_batch_s": start_s,
            "samples_per_s": n * batch / dt, "s_per_batch": dt / n, "batch_media_mb": mb,
            "main_process_ms_per_sample": one * 1e3}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pack", default="runs/data/train.pack.npz", help="pack written by `omni data pack`")
    p.add_argument("--stage", default="speech,dialogue", help="comma-separated stages: speech, vision, dialogue")
    p.add_argument("--batch", default="48,192", help="comma-separated global batch sizes")
    p.add_argument("--steps", type=int, default=5, help="timed steps per case")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--workers", default="12", help="loader worker processes (comma-separated: one case each)")
    p.add_argument("--busy-loader", action="store_true",
                   help="keep the loader building batches during the timed steps, as in training (by default "
                        "it has built them all by then)")
    p.add_argument("--no-profile", action="store_true", help="skip the torch.profiler step")
    p.add_argument("--samples", type=int, default=4000, help="manifest lines drawn per stage")
    p.add_argument("--top", type=int, default=15, help="ops listed per profile")
    p.add_argument("--loader-only", action="store_true", help="measure the data loader's throughput alone")
    p.add_argument("--train-path", choices=("loader", "device"), default="loader",
                   help="loader: DataLoader workers (MiniTrainer); device: batches built on the device "
                        "(DeviceMiniTrainer, no workers; --workers is ignored)")
    p.add_argument("--loader-batches", type=int, default=36, help="batches timed with --loader-only")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="torch device, e.g. cpu or cuda")
    p.add_argument("--out", default="bench/results/train_step_profile.json", help="JSON report path")
    args = p.parse_args(argv)

    from mdp.curriculum.data import answer_code_table
    from omni.synth.pack import Pack

    from mdp.train import init_one_process

    dev = init_one_process(args.device)
    pack = Pack(args.pack)
    codes = answer_code_table(pack)
    rows = []
    with tempfile.TemporaryDirectory() as work:
        cases = [(st, int(b), int(w)) for st in args.stage.split(",") for b in args.batch.split(",")
                 for w in args.workers.split(",")]
        for stage, b, workers in cases:
            if args.loader_only and args.train_path == "device":
                raise SystemExit("--loader-only measures the loader path's DataLoader: use --train-path loader")
            if args.loader_only:
                rows.append(loader_throughput(args, pack, codes, stage, b, dev, work, workers))
                r = rows[-1]
                print(f"{stage:9s} batch {b:4d} workers {workers:2d}: {r['samples_per_s']:7.0f} samples/s "
                      f"({r['s_per_batch'] * 1e3:.0f} ms/batch, {r['batch_media_mb']:.0f} MB media/batch, "
                      f"one process {r['main_process_ms_per_sample']:.1f} ms/sample, first batch "
                      f"{r['first_batch_s']:.1f} s)", flush=True)
                continue
            rows.append(profile_batch(args, pack, codes, stage, b, dev, work, workers))
            r = rows[-1]
            ph = " ".join(f"{k} {v * 1e3:.0f}" for k, v in r["phases_s"].items())
            busy = ", loader busy" if args.busy_loader else ""
            feed = "device path" if args.train_path == "device" else f"workers {workers:2d}{busy}"
            print(f"{stage:9s} batch {b:4d} {feed}: {r['step_s'] * 1e3:7.0f} "
                  f"ms/step ({ph} ms)" + ("" if args.no_profile else
                  f", {r['kernels']} kernels, {r['ops_dispatched']} profiled events"), flush=True)
            if args.no_profile:
                continue
            for name, ms, n in r["top_device_ms"]:
                print(f"    dev  {ms:9.2f} ms  x{n:<6d} {name[:90]}")
            for name, ms, n in r["top_host_ms"][:8]:
                print(f"    host {ms:9.2f} ms  x{n:<6d} {name[:90]}")
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU"
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump({"device": name, "rows": rows}, fh, indent=1)
    print(f"wrote {args.out}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()

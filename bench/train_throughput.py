"""Training throughput of the default model: the loader path against the device path,
side by side in one run, on the same pack, stage manifest and weights.

    loader  `train_path=loader`: `MiniTrainer` fed by DataLoader workers that build
            each sample in Python (`PackDataset`), rows padded to the stage length
    device  `train_path=device`: `DeviceMiniTrainer`, batches planned on the host
            with whole-array numpy and built on the device, rows length-bucketed and
            trimmed, no host reads inside a step, fused AdamW on CUDA

For every stage x batch x path: `--warmup` untimed steps, then `--steps` timed steps
as training runs them (the loader keeps building ahead; the device path reads each
step's record after launching the next) -> samples/s and LLM tokens per step
(real / as computed, i.e. padded). Then `--breakdown` steps with the device
synchronized at the phase edges: data (loader wait, or host plan + device build),
encoders (forward), LLM (embedding, decoder, loss, the backward of everything),
optimizer (clipping, AdamW, expert bias), and the host syncs of one step: reads of
device values by project code (both devices) and, on CUDA, every synchronizing
CUDA call (`torch.cuda.set_sync_debug_mode`). The loader path's records of step s
are those the device path trains in the window of steps holding s (its length
buckets reorder rows within `--window` steps). With `--profile`, one more step of
each case runs under torch.profiler: its kernel count, device time, the busiest
kernels and host ops go into the case's row (`--trace-dir`: its chrome trace too).
`--paths device_legacy` runs the device path with what this version changed set
back where a switch exists (torch's own SDPA choice, cuDNN attention included; the
ViT through SDPA; trimmed lengths rounded to 16 only; the audio heads on every
position), for old-vs-new in one run; `device_all_heads` only the last of these (the
audio heads on every position, not only the spoken replies' rows). On CUDA every row
records the step's peak memory. A pack with the world's tool gets dialogue rows of 704.
Prints a table, writes JSON.

    python bench/train_throughput.py --pack runs/data/train.pack.npz --device cuda --batch 192
    python bench/train_throughput.py --pack runs/tp_data/train.pack.npz --device cpu --batch 8 --steps 3 --workers 0
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import tempfile
import time
import traceback
import warnings

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


class _Phases:
    """Wraps trainer methods so that each call is timed with the device synchronized
    at its edges (only while `on`)."""

    def __init__(self, dev: torch.device) -> None:
        self.dev, self.on, self.acc = dev, False, {}

    def wrap(self, obj, method: str, phase: str) -> None:
        fn = getattr(obj, method)

        def timed(*a, **k):
            if not self.on:
                return fn(*a, **k)
            _sync(self.dev)
            t = time.perf_counter()
            out = fn(*a, **k)
            _sync(self.dev)
            self.acc[phase] = self.acc.get(phase, 0.0) + time.perf_counter() - t
            return out

        timed.__dict__.update(getattr(fn, "__dict__", {}))  # e.g. the LR scheduler's mark on optimizer.step
        setattr(obj, method, timed)


def _recipe(stage: str, batch: int, work: str, manifest: str, args):
    from mdp.curriculum.run import _stage_recipe
    from mdp.recipes import get_recipe

    r = _stage_recipe(get_recipe("omni-mini"), stage, args.warmup + args.steps + args.breakdown + 2)
    if stage == "dialogue" and args.tool_rows:  # its tool conversations need 704 (scripts/train_default_gpu.sh)
        r = r.replace(seq_len=704)
    return r.replace(global_batch=batch, output={"out_dir": os.path.join(work, stage),
                                                 "ckpt_dir": os.path.join(work, stage, "ck")},
                     data={"manifest": manifest, "workers": args.workers},
                     curriculum={"bucket_window": args.window})


def _count_syncs(step, dev: torch.device, host_only: list) -> dict:
    """Host reads by project code (and synchronizing CUDA calls) during one step;
    reads inside the (obj, method)s of `host_only` (work on host tensors) are not counted."""
    from mdp.curriculum.device import HostReads

    with warnings.catch_warnings(record=True) as caught, HostReads() as reads:
        saved = [(obj, name, getattr(obj, name)) for obj, name in host_only]
        for obj, name, fn in saved:
            setattr(obj, name, reads.pause(fn))
        warnings.simplefilter("always")
        if dev.type == "cuda":
            torch.cuda.set_sync_debug_mode("warn")
        try:
            result = step()
            _sync(dev)
        finally:
            if dev.type == "cuda":
                torch.cuda.set_sync_debug_mode(0)
            for obj, name, fn in saved:
                setattr(obj, name, fn)
    cuda = [str(w.message) for w in caught if "synchroniz" in str(w.message)]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
    sites = sorted(set(c.split(" at ")[1].replace(root, "") for c in reads.calls))
    out = {"host_reads": len(reads.calls), "host_read_sites": sites[:20]}
    if dev.type == "cuda":
        out["cuda_syncs"] = len(cuda)
        out["cuda_sync_messages"] = sorted(set(cuda))[:10]
    return out, result


def run_loader(args, pack, codes, stage: str, batch: int, dev: torch.device, work: str, manifest: str, bar) -> dict:
    from mdp.curriculum.run import MiniTrainer

    r = _recipe(stage, batch, work, manifest, args)
    tr = MiniTrainer(r, dev)
    total = args.warmup + args.steps + args.breakdown + 1 + int(args.profile)
    tr.attach_pack(manifest, pack, codes, args.workers, 0, total, prefetch=args.prefetch)
    seen = {"tokens": 0, "on": False}
    load = tr._load

    def counted(step):  # real positions of the rows (ids, a spoken reply's codec rows or a label)
        out = load(step)
        if seen["on"]:
            b = out[0]
            real = (b["ids"] != tr.cfg.llm.pad_token_id) | (b["codec"] != tr.cfg.audio_pad_id).any(-1) | (b["text_cat"] > 0)
            seen["tokens"] += int(real.sum()) + len(b["ids"])  # + each row's last (target-only) position
        return out

    tr._load = counted
    ph = _Phases(dev)
    ph.wrap(tr, "_load", "data")
    ph.wrap(tr, "_encode", "encoders")
    for name in ("clip_grads", "update_expert_bias"):
        ph.wrap(tr, name, "optimizer")
    ph.wrap(tr.optimizer, "step", "optimizer")
    s = 0
    for _ in range(args.warmup):
        tr.step(s)
        s += 1
        bar.update(1)
    _sync(dev)
    t0 = time.perf_counter()
    seen["on"] = True
    for _ in range(args.steps):
        tr.step(s)
        s += 1
        bar.update(1)
    _sync(dev)
    elapsed = time.perf_counter() - t0
    seen["on"] = False
    row = {"path": "loader", "stage": stage, "batch": batch, "steps": args.steps, "seconds": elapsed,
           "samples_per_s": args.steps * batch / elapsed, "ms_per_step": 1e3 * elapsed / args.steps,
           "llm_positions_per_step": batch * r.seq_len, "workers": args.workers}
    row["llm_tokens_per_step"] = seen["tokens"] / args.steps
    row.update(_breakdown(tr, ph, dev, s, args, bar, tr.step, tr.step, [(tr, "_load")]))
    if args.profile:
        row["profile"] = _profile(tr.step, s + args.breakdown + 1, dev, args, f"{stage}_{batch}_loader")
    tr.close_loader()
    return row


def run_device(args, pack, codes, stage: str, batch: int, dev: torch.device, work: str, manifest: str, bar,
               tables, legacy: bool = False, all_heads: bool = False) -> tuple[dict, object]:
    from mdp.curriculum.device import DeviceMiniTrainer, materialize

    r = _recipe(stage, batch, work, manifest, args)
    tr = DeviceMiniTrainer(r, dev)
    if args.length_buckets >= 0:
        tr.per_octave = args.length_buckets
    if legacy:  # the settings before this version's changes, where a switch exists
        tr.attention, tr.per_octave = (), 0
        for layer in tr.model.encoders["vision"].vit.encoder.layers if "vision" in tr.model.encoders else []:
            layer.attn.backend = "sdpa"  # a dense SDPA batch (without the old all-True key mask)
    tr.spoken_audio_heads = not (legacy or all_heads)
    if args.compile:
        tr.compile_regions(args.compile, args.compile_mode or None)
    tr.attach_device_data(manifest, pack, codes, tables=tables, augment=not args.no_augment)
    ph = _Phases(dev)
    ph.wrap(tr.planner, "plan", "data")
    ph.wrap(tr, "data", "data")
    ph.wrap(tr, "encoders", "encoders")
    ph.wrap(tr, "llm", "llm")
    ph.wrap(tr, "update", "optimizer")
    s, pending = 0, None
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    for _ in range(args.warmup):
        materialize(tr.step(s))
        s += 1
        bar.update(1)
    _sync(dev)
    t0 = time.perf_counter()
    tokens = positions = 0
    for _ in range(args.steps):  # as training runs: read a record once the next step is launched
        rec = tr.step(s)
        tokens += rec["tokens"]
        positions += rec["llm_tokens"] + rec["samples"]
        if pending is not None:
            materialize(pending)
        pending = rec
        s += 1
        bar.update(1)
    materialize(pending)
    _sync(dev)
    elapsed = time.perf_counter() - t0
    path = "device_legacy" if legacy else "device_all_heads" if all_heads else "device"
    row = {"path": path, "stage": stage, "batch": batch, "steps": args.steps,
           "peak_memory_gb": torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else None,
           "seconds": elapsed, "samples_per_s": args.steps * batch / elapsed, "ms_per_step": 1e3 * elapsed / args.steps,
           "llm_tokens_per_step": tokens / args.steps, "llm_positions_per_step": positions / args.steps,
           "window": args.window, "expert_backend": tr.expert_backend, "augment": not args.no_augment,
           "compile": args.compile, "compile_mode": args.compile_mode, "attention": list(tr.attention),
           "lengths_per_octave": tr.per_octave}
    row.update(_breakdown(tr, ph, dev, s, args, bar, lambda k: materialize(tr.step(k)), tr.step,
                          [(tr.planner, "plan")]))
    if args.profile:
        tag = f"{stage}_{batch}_{row['path']}" + (f"_compile_{args.compile_mode or 'default'}" if args.compile else "")
        row["profile"] = _profile(lambda k: materialize(tr.step(k)), s + args.breakdown + 1, dev, args, tag)
    return row, tr.tables


def _breakdown(tr, ph: _Phases, dev, s: int, args, bar, step, bare, host_only: list) -> dict:
    """Phase times over `--breakdown` steps (`step`), then the syncs of one `bare` step
    (the device path's without reading its record, which training does after the next)."""
    out: dict = {}
    if args.breakdown:
        ph.on, ph.acc = True, {}
        _sync(dev)
        t0 = time.perf_counter()
        for _ in range(args.breakdown):
            step(s)
            s += 1
            bar.update(1)
        _sync(dev)
        total = (time.perf_counter() - t0) / args.breakdown
        ph.on = False
        per = {k: v / args.breakdown for k, v in ph.acc.items()}
        if "llm" not in per:  # the loader path's LLM phase is the rest of its step
            per["llm"] = total - sum(per.values())
        out["phases_ms"] = {k: round(1e3 * per.get(k, 0.0), 2) for k in ("data", "encoders", "llm", "optimizer")}
        out["synced_ms_per_step"] = round(1e3 * total, 2)
    counted, result = _count_syncs(lambda: bare(s), dev, host_only)
    out.update(counted)
    if isinstance(result, dict) and "stats" in result:
        from mdp.curriculum.device import materialize

        materialize(result)
    bar.update(1)
    return out


# kernel families by name, to see where the launches go (first match wins)
KERNEL_KINDS = (("attention", ("flash", "fmha", "sdpa", "attention")),
                ("conv/fft", ("conv", "depthwise", "fft")),
                ("gemm", ("gemm", "cutlass", "sm90_", "xmma", "cublas", "matmul", "grouped_mm")),
                ("reduce", ("reduce", "norm", "softmax", "cross_entropy", "nll")),
                ("index/scatter/sort", ("index", "scatter", "gather", "sort", "radix", "embedding", "search")),
                ("copy/fill", ("copy", "memcpy", "memset", "fill", "cat")),
                ("elementwise", ("elementwise", "vectorized", "unrolled", "pointwise", "triton_")))


def _profile(step, s: int, dev: torch.device, args, tag: str) -> dict:
    """One step under torch.profiler: kernels launched and their device time (by
    family, and the busiest), the busiest host ops by self time, the step's wall
    time; `--trace-dir`: the chrome trace, gzipped."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    _sync(dev)
    with profile(activities=acts) as prof:
        t = time.perf_counter()
        step(s)
        _sync(dev)
        wall = time.perf_counter() - t
    ev = prof.key_averages()
    on_dev = [e for e in ev if "CUDA" in str(getattr(e, "device_type", ""))]
    dev_us = lambda e: getattr(e, "self_device_time_total", 0.0)
    kinds: dict[str, list] = {}
    for e in on_dev:
        name = e.key.lower()
        kind = next((k for k, words in KERNEL_KINDS if any(w in name for w in words)), "other")
        acc = kinds.setdefault(kind, [0, 0.0])
        acc[0] += e.count
        acc[1] += dev_us(e) / 1e3
    out = {"wall_ms": round(1e3 * wall, 2), "kernels": int(sum(e.count for e in on_dev)),
           "device_ms": round(sum(dev_us(e) for e in on_dev) / 1e3, 2),
           "by_kind": {k: [n, round(ms, 2)] for k, (n, ms) in sorted(kinds.items(), key=lambda kv: -kv[1][1])},
           "top_kernels": [(e.key[:120], round(dev_us(e) / 1e3, 3), e.count)
                           for e in sorted(on_dev, key=dev_us, reverse=True)[: args.top]],
           "top_host_ops": [(e.key[:120], round(e.self_cpu_time_total / 1e3, 3), e.count)
                            for e in sorted(ev, key=lambda e: e.self_cpu_time_total, reverse=True)[: args.top]],
           "host_ops": int(sum(e.count for e in ev if e.key.startswith("aten::")))}
    if args.trace_dir:
        import gzip
        import shutil

        os.makedirs(args.trace_dir, exist_ok=True)
        raw = os.path.join(args.trace_dir, f"{tag}.json")
        prof.export_chrome_trace(raw)
        with open(raw, "rb") as src, gzip.open(raw + ".gz", "wb", compresslevel=6) as dst:
            shutil.copyfileobj(src, dst)
        os.remove(raw)
    return out


def _release(dev) -> None:
    gc.collect()
    if dev.type == "cuda":
        torch.cuda.empty_cache()


def _table(rows: list[dict]) -> str:
    head = (f"{'stage':9s} {'batch':>5s} {'path':16s} {'samples/s':>10s} {'ms/step':>8s} {'tokens':>13s} "
            f"{'data':>7s} {'enc':>7s} {'llm':>7s} {'opt':>7s} {'syncs':>6s} {'speedup':>8s} {'peak GB':>8s}")
    lines = [head, "-" * len(head)]
    base = {(r["stage"], r["batch"]): r["samples_per_s"] for r in rows if r["path"] == "loader" and "error" not in r}
    for r in rows:
        if "error" in r:
            lines.append(f"{r['stage']:9s} {r['batch']:5d} {r['path']:16s} failed: {r['error'][:80]}")
            continue
        ph = r.get("phases_ms", {})
        syncs = r.get("cuda_syncs", r.get("host_reads", float("nan")))
        tok = f"{r['llm_tokens_per_step']:.0f}/{r['llm_positions_per_step']:.0f}"
        b = base.get((r["stage"], r["batch"]))
        sp = f"{r['samples_per_s'] / b:7.1f}x" if b else ""
        lines.append(f"{r['stage']:9s} {r['batch']:5d} {r['path']:16s} {r['samples_per_s']:10.1f} {r['ms_per_step']:8.1f} "
                     f"{tok:>13s} {ph.get('data', 0):7.1f} {ph.get('encoders', 0):7.1f} {ph.get('llm', 0):7.1f} "
                     f"{ph.get('optimizer', 0):7.1f} {syncs:6d} {sp:>8s} "
                     + (f"{r['peak_memory_gb']:8.1f}" if r.get("peak_memory_gb") is not None else f"{'':8s}"))
    return "\n".join(lines)


def _write(args, dev: torch.device, rows: list[dict]) -> dict:
    """The JSON report of the rows so far (rewritten after every case: a run stopped
    by a time limit keeps the cases it finished). Returns the speed-ups."""
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"{platform.machine()} CPU, {os.cpu_count()} cores"
    speedups = {}
    for r in rows:
        if r["path"].startswith("device") and "error" not in r:
            base = [b for b in rows if b["path"] == "loader" and b["stage"] == r["stage"] and b["batch"] == r["batch"]
                    and "error" not in b]
            if base:
                key = f"{r['stage']}@{r['batch']}" + ("" if r["path"] == "device" else f":{r['path']}")
                speedups[key] = round(r["samples_per_s"] / base[0]["samples_per_s"], 2)
    heads = {}  # the audio heads on the spoken rows only against every position, same stage and batch
    for r in rows:
        all_heads = [b for b in rows if b["path"] == "device_all_heads" and b["stage"] == r["stage"]
                     and b["batch"] == r["batch"] and "error" not in b]
        if r["path"] == "device" and "error" not in r and all_heads:
            heads[f"{r['stage']}@{r['batch']}"] = {
                "samples_per_s": round(r["samples_per_s"] / all_heads[0]["samples_per_s"], 3),
                "peak_memory": None if r.get("peak_memory_gb") is None else
                round(r["peak_memory_gb"] / all_heads[0]["peak_memory_gb"], 3)}
    report = {"device": name, "torch": torch.__version__, "command": " ".join(sys.argv), "args": vars(args),
              "rows": rows, "speedup_device_over_loader": speedups, "spoken_heads_over_all_heads": heads}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out + ".tmp", "w") as fh:
        json.dump(report, fh, indent=1)
    os.replace(args.out + ".tmp", args.out)
    return speedups


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pack", default="runs/data/train.pack.npz", help="train pack written by `omni data default`")
    p.add_argument("--stage", default="speech,vision,dialogue",
                   help="comma-separated stages of the omni-mini recipe (speech, vision, dialogue)")
    p.add_argument("--batch", default="192", help="comma-separated global batch sizes (rows per step)")
    p.add_argument("--paths", default="loader,device",
                   help="comma-separated paths to run: loader, device, device_legacy (the device path with the "
                        "settings this version changed set back: see the top of this file), device_all_heads "
                        "(the device path with the audio heads on every position)")
    p.add_argument("--steps", type=int, default=20, help="timed steps per case (throughput)")
    p.add_argument("--warmup", type=int, default=5,
                   help="untimed steps first (the loader path adds --workers more, so that its prefetched "
                        "queue is mostly drained before timing)")
    p.add_argument("--breakdown", type=int, default=3,
                   help="steps timed phase by phase with the device synchronized at each edge (0: skip)")
    p.add_argument("--workers", type=int, default=12, help="loader path: DataLoader worker processes (recipe: 12)")
    p.add_argument("--prefetch", type=int, default=1,
                   help="loader path: batches queued per worker (recipe: 4; 1 reaches the steady state sooner)")
    p.add_argument("--window", type=int, default=8, help="device path: steps whose rows are length-bucketed together")
    p.add_argument("--no-augment", action="store_true", help="device path: clean clips (no microphone augmentation)")
    p.add_argument("--compile", default="", metavar="REGIONS",
                   help="device path: torch.compile these regions, comma-separated: layers (decoder layers), "
                        "heads (audio heads), audio (DFSMN layers), vision (ViT layers); a hook to measure on the "
                        "GPU (default: none)")
    p.add_argument("--compile-mode", default="",
                   help="device path with --compile: torch.compile's mode, e.g. reduce-overhead (CUDA graphs); "
                        "default: torch's")
    p.add_argument("--length-buckets", type=int, default=-1,
                   help="device path: trimmed lengths per doubling (mdp.curriculum.plan.bucket_length; 0: multiples "
                        "of 16 only; -1: the trainer's default)")
    p.add_argument("--profile", action="store_true",
                   help="profile one more step of each case (kernels, device time, busiest kernels and host ops)")
    p.add_argument("--top", type=int, default=20, help="with --profile: kernels and host ops listed per case")
    p.add_argument("--trace-dir", default="", help="with --profile: write each profiled step's chrome trace here (.gz)")
    p.add_argument("--samples", type=int, default=0,
                   help="stage manifest lines (0: enough for every step of the run, both paths)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cuda or cpu")
    p.add_argument("--out", default="bench/results/train_throughput.json", help="JSON report path")
    args = p.parse_args(argv)

    from tqdm import tqdm

    from mdp.curriculum.data import answer_code_table
    from mdp.curriculum.stages import write_stage_manifest
    from omni.synth.pack import Pack

    if args.threads:
        torch.set_num_threads(args.threads)
    from mdp.train import init_one_process

    dev = init_one_process(args.device)
    pack = Pack(args.pack)
    codes = answer_code_table(pack, use_pack=True)
    stages, batches = args.stage.split(","), [int(b) for b in args.batch.split(",")]
    paths = [x for x in args.paths.split(",") if x]
    per_case = {"loader": args.warmup + args.workers + args.steps + args.breakdown + 1 + int(args.profile),
                "device": args.warmup + args.steps + args.breakdown + 1 + int(args.profile)}
    per_case["device_legacy"] = per_case["device_all_heads"] = per_case["device"]
    args.tool_rows = bool(pack.samples_of("tool"))
    bar = tqdm(total=sum(per_case[x] for x in paths) * len(stages) * len(batches), desc="train_throughput",
               unit="step", file=sys.stderr)
    rows: list[dict] = []
    tables = None
    with tempfile.TemporaryDirectory() as work:
        for stage in stages:
            for batch in batches:
                manifest = os.path.join(work, f"{stage}_{batch}.jsonl")
                n = args.samples or batch * (args.window + 1) * (
                    (args.warmup + args.workers + args.steps + args.breakdown + 3) // args.window + 2)
                write_stage_manifest(pack, stage, manifest, n, 0)
                for path in paths:
                    case = os.path.join(work, f"{stage}_{batch}_{path}")
                    try:  # a failing case is reported and the others still run
                        if path == "loader":
                            a = argparse.Namespace(**{**vars(args), "warmup": args.warmup + args.workers})
                            rows.append(run_loader(a, pack, codes, stage, batch, dev, case, manifest, bar))
                        elif path in ("device", "device_legacy", "device_all_heads"):
                            row, tables = run_device(args, pack, codes, stage, batch, dev, case, manifest, bar, tables,
                                                     legacy=path == "device_legacy", all_heads=path == "device_all_heads")
                            rows.append(row)
                        else:
                            raise ValueError(f"unknown path {path!r}: use loader, device, device_legacy, device_all_heads")
                        bar.write(f"{stage} batch {batch} {path}: {rows[-1]['samples_per_s']:.1f} samples/s, "
                                  f"{rows[-1]['ms_per_step']:.1f} ms/step")
                    except Exception as exc:
                        traceback.print_exc()
                        rows.append({"path": path, "stage": stage, "batch": batch, "error": repr(exc)[:800]})
                    _release(dev)
                    _write(args, dev, rows)
    bar.close()
    print(_table(rows))
    speedups = _write(args, dev, rows)
    print(f"speed-up (device over loader, samples/s): {speedups}")
    print(f"wrote {args.out}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()

"""Backbone benchmark: ours vs transformers' LongcatFlashForCausalLM, same
weights, same run, with the hardware floors printed next to each figure.

    python bench/backbone.py                      # a1b flavor, bf16, CUDA
    python bench/backbone.py --quick --device cpu # tiny dry run of every code path

Measures (median of CUDA-event timings after warm-up):
* prefill latency, 1 x 2048 and 8 x 512 tokens, into empty cache slots;
* decode tokens/s at batch 1 and batch 32 with 1k tokens of context, eager,
  CUDA graph, and torch.compile + CUDA graph;
* transformers' eager implementation on the same inputs (fewer steps: it is slow);
* checks first: fp32 logits parity with transformers on the debug flavor (on
  this device), bf16 agreement on the benchmark flavor, greedy tokens of graph
  vs eager decode for 128 steps.
Floors: decode = weight + KV bytes one step must read / measured copy
bandwidth; prefill = FLOPs / measured bf16 matmul rate. Results: a table on
stdout, JSON under --out (default bench/results/backbone.json).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from backbone_lib import (  # noqa: E402
    T0,
    build_hf,
    build_ours,
    check_parity_fp32,
    compare_logits,
    count_params,
    decode_floor_tok_s,
    decode_tok_s,
    get_llm_config,
    hardware,
    hf_decode_tok_s,
    hf_prefill_ms,
    log,
    prefill_flops,
    prefill_ms,
    profile_decode,
    set_variant,
    teacher_forced_logits,
)
from omni.llm.runner import compile_layers  # noqa: E402
from omni.llm.router import Router  # noqa: E402

import torch  # noqa: E402

# ----------------------------------------------------------------- main


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--flavor", default="a1b", help="backbone flavor (default a1b)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="torch device, e.g. cpu or cuda")
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"], help="compute dtype")
    p.add_argument("--context", type=int, default=1024, help="decode context length (default 1024)")
    p.add_argument("--decode-steps", type=int, default=128, help="timed decode steps, batch 1 (default 128)")
    p.add_argument("--batch", type=int, default=32, help="large decode batch (default 32)")
    p.add_argument("--hf-steps", type=int, default=6, help="timed transformers decode steps (default 6)")
    p.add_argument("--iters", type=int, default=10, help="timed prefill iterations (default 10)")
    p.add_argument("--no-hf", action="store_true", help="skip transformers")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile variant")
    p.add_argument("--budget-s", type=float, default=400, help="skip optional phases past this many seconds")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a dry run of every code path")
    p.add_argument("--out", default="bench/results/backbone.json", help="JSON output path")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    dev = torch.device(args.device)
    dtype = {"bfloat16": torch.bfloat16, "float32": torch.float32}[args.dtype]
    if args.quick:
        args.flavor = "debug"
        args.context, args.decode_steps, args.batch, args.hf_steps, args.iters = 64, 16, 4, 2, 2
    prefill_shapes = [(1, 2048), (8, 512)] if not args.quick else [(1, 64), (2, 32)]
    cfg = get_llm_config(args.flavor)
    res: dict = {"flavor": args.flavor, "dtype": args.dtype, "config": dataclasses.asdict(cfg), "errors": {}}
    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)

    def save():
        with open(args.out, "w") as fh:
            json.dump(res, fh, indent=2)

    def phase(name, fn, optional=False):
        if optional and time.perf_counter() - T0 > args.budget_s:
            log(f"skip {name}: over the {args.budget_s:.0f}s budget")
            res["errors"][name] = "skipped: time budget"
            return None
        log(f"{name} ...")
        try:
            out = fn()
            log(f"{name} done")
            return out
        except Exception as e:  # record and go on: one failing phase must not lose the others
            traceback.print_exc()
            res["errors"][name] = f"{type(e).__name__}: {e}"
            return None
        finally:
            save()

    hw = phase("hardware", lambda: hardware(dev, args.quick))
    res["hardware"] = hw
    bw, fl = hw["copy_GBps"], hw["matmul_TFLOPs"]
    pc = count_params(cfg)
    res["params"] = {"total": pc.total, "active_min": pc.active_min, "active_max": pc.active_max,
                     "expected_active": pc.expected_active(cfg)}
    if not args.no_hf:
        res["parity_fp32_debug"] = phase("parity", lambda: check_parity_fp32(dev))

    ours = phase("build ours", lambda: build_ours(cfg, dev, dtype))
    if ours is None:
        return 1
    hf = None if args.no_hf else phase("build transformers", lambda: build_hf(ours, dev, dtype))
    if hf is not None:
        def agree():
            ids = torch.randint(4, cfg.vocab_size, (1, 64), device=dev)
            with torch.no_grad():
                return compare_logits(ours(ids).logits.float()[0], hf(ids).logits.float()[0])
        res["bf16_agreement"] = phase("bf16 agreement", agree)
    from omni.llm.experts import grouped_mm_available
    from omni.llm.fusion import fuse_projections_
    from omni.llm.moe_triton import triton_moe_available

    fuse_projections_(ours)
    fused_store: dict = {}
    res["backends"] = {"grouped_mm": grouped_mm_available(dev, dtype), "triton_moe": triton_moe_available(dev, dtype)}
    log(f"expert backends available: {res['backends']}")

    # --- prefill (eager) ---
    res["prefill"] = []
    cap = max(s for _, s in prefill_shapes) + 1
    pcache = ours.new_cache(max(b for b, _ in prefill_shapes), cap)
    for b, s in prefill_shapes:
        row = {"batch": b, "seq": s, "floor_ms": prefill_flops(cfg, b, s) / (fl * 1e12) * 1e3}
        row["ours_ms"] = phase(f"prefill {b}x{s} ours", lambda: prefill_ms(ours, pcache, b, s, args.iters, dev))
        if hf is not None:
            row["hf_ms"] = phase(f"prefill {b}x{s} transformers",
                                 lambda: hf_prefill_ms(hf, cfg, b, s, max(2, args.iters // 3), dev))
        res["prefill"].append(row)

    # --- decode (eager and CUDA graph) ---
    steps = args.decode_steps
    nsteps = {1: steps, args.batch: max(8, steps // 4)}
    res["decode"] = []
    graphs = dev.type == "cuda"
    for b in (1, args.batch):
        n = nsteps[b]
        row = {"batch": b, "context": args.context, "floor_tok_s": decode_floor_tok_s(cfg, b, args.context, bw)}
        r = phase(f"decode b{b} eager", lambda: decode_tok_s(ours, b, args.context, n, False, dev))
        if r:
            row["ours_eager_tok_s"], toks_eager = r
        if graphs:
            r = phase(f"decode b{b} graph", lambda: decode_tok_s(ours, b, args.context, n, True, dev))
            if r:
                row["ours_graph_tok_s"], toks_graph = r
                if b == 1 and "ours_eager_tok_s" in row:
                    res["greedy_graph_vs_eager"] = {"steps": n, "identical": toks_graph == toks_eager}
            if b == 1:  # what each decode optimization buys (graph, no compile)
                row["variants_graph_tok_s"] = {}
                toks = {}
                for fused, backend, router in ((False, "grouped_mm", False), (True, "grouped_mm", False),
                                               (True, "auto", False), (True, "auto", True)):
                    key = f"{'fused' if fused else 'unfused'}+{backend}" + ("+router_kernel" if router else "")
                    set_variant(ours, fused, backend, fused_store)
                    for moe in ours.moe_layers():
                        moe.router.fused_kernel = router
                    r = phase(f"decode b1 graph {key}", lambda: decode_tok_s(ours, 1, args.context, n, True, dev))
                    row["variants_graph_tok_s"][key] = r[0] if r else None
                    toks[key] = r[1] if r else None
                set_variant(ours, True, "auto", fused_store)
                for moe in ours.moe_layers():  # back to the default for what follows
                    moe.router.fused_kernel = Router.FUSED_KERNEL_DEFAULT
                a, b2 = toks.get("fused+auto"), toks.get("fused+auto+router_kernel")
                if a is not None and b2 is not None:  # does the router kernel change a greedy token?
                    first = next((k for k, (u, v) in enumerate(zip(a, b2)) if u != v), None)
                    res["greedy_router_kernel_vs_torch"] = {"steps": n, "identical": a == b2, "first_difference": first}
        if hf is not None:
            row["hf_tok_s"] = phase(f"decode b{b} transformers",
                                    lambda: hf_decode_tok_s(hf, cfg, b, args.context, args.hf_steps, dev), optional=True)
        res["decode"].append(row)
    del hf, pcache
    if graphs:
        torch.cuda.empty_cache()

    # --- torch.compile (regional: one compiled layer body) ---
    if graphs and not args.no_compile:
        tf_steps = 16
        ref = phase("teacher-forced eager logits", lambda: teacher_forced_logits(ours, args.context, tf_steps, False, dev))
        ok = phase("compile layers", lambda: compile_layers(ours) or True, optional=True)
        if ok:
            for row in res["decode"]:
                b = row["batch"]
                r = phase(f"decode b{b} compiled graph",
                          lambda: decode_tok_s(ours, b, args.context, nsteps[b], True, dev), optional=True)
                if r:
                    row["ours_compiled_graph_tok_s"] = r[0]
            if ref is not None:
                got = phase("teacher-forced compiled graph logits",
                            lambda: teacher_forced_logits(ours, args.context, tf_steps, True, dev), optional=True)
                if got is not None:
                    res["compiled_vs_eager_teacher_forced"] = dict(compare_logits(got, ref), steps=tf_steps)
            pcache = ours.new_cache(max(b for b, _ in prefill_shapes), cap)
            for row in res["prefill"]:
                b, s = row["batch"], row["seq"]
                row["ours_compiled_ms"] = phase(f"prefill {b}x{s} compiled",
                                                lambda: prefill_ms(ours, pcache, b, s, args.iters, dev), optional=True)
            del pcache
            res["profile_b1_compiled"] = phase(
                "profile b1 compiled",
                lambda: profile_decode(ours, args.context, dev, os.path.join(out_dir, "backbone_profile.txt")),
                optional=True)
            set_variant(ours, True, "grouped_mm", fused_store)
            r = phase("decode b1 compiled graph grouped_mm",
                      lambda: decode_tok_s(ours, 1, args.context, nsteps[1], True, dev), optional=True)
            res["decode"][0]["compiled_graph_grouped_mm_tok_s"] = r[0] if r else None
            set_variant(ours, True, "auto", fused_store)
    save()
    print_table(res)
    plot(res, os.path.splitext(args.out)[0] + ".png")
    return 0


def _fmt(x, unit=""):
    return "-" if x is None else f"{x:,.1f}{unit}"


def print_table(res: dict) -> None:
    hw = res.get("hardware") or {}
    print(f"\nLongCat-Flash backbone, flavor {res['flavor']}, {res['dtype']}, on {hw.get('name')} "
          f"(torch {hw.get('torch')}, transformers {hw.get('transformers')}); measured copy "
          f"{_fmt(hw.get('copy_GBps'))} GB/s, bf16 matmul {_fmt(hw.get('matmul_TFLOPs'))} TFLOP/s")
    print(f"{'prefill':<16}{'ours ms':>10}{'compiled':>10}{'transformers ms':>17}{'floor ms':>10}{'best/floor':>12}{'speed-up':>10}")
    for r in res.get("prefill", []):
        o, c, h, f = r.get("ours_ms"), r.get("ours_compiled_ms"), r.get("hf_ms"), r["floor_ms"]
        best = min(x for x in (o, c, float("inf")) if x)
        best = None if best == float("inf") else best
        print(f"{r['batch']} x {r['seq']:<12}{_fmt(o):>10}{_fmt(c):>10}{_fmt(h):>17}{_fmt(f):>10}"
              f"{_fmt(best / f if best else None, 'x'):>12}{_fmt(h / best if best and h else None, 'x'):>10}")
    print(f"{'decode tok/s':<16}{'eager':>9}{'graph':>9}{'compiled':>10}{'transformers':>14}{'floor':>9}{'best/floor':>12}")
    for r in res.get("decode", []):
        best = max([r.get(k) or 0 for k in ("ours_eager_tok_s", "ours_graph_tok_s", "ours_compiled_graph_tok_s")])
        print(f"b{r['batch']} @ {r['context']:<10}{_fmt(r.get('ours_eager_tok_s')):>9}{_fmt(r.get('ours_graph_tok_s')):>9}"
              f"{_fmt(r.get('ours_compiled_graph_tok_s')):>10}{_fmt(r.get('hf_tok_s')):>14}{_fmt(r['floor_tok_s']):>9}"
              f"{_fmt(100 * best / r['floor_tok_s'], '%'):>12}")
    for r in res.get("decode", []):
        if r.get("variants_graph_tok_s"):
            print(f"b{r['batch']} graph variants (tok/s): {r['variants_graph_tok_s']}; compiled graph grouped_mm: "
                  f"{_fmt(r.get('compiled_graph_grouped_mm_tok_s'))}")
    prof = res.get("profile_b1_compiled")
    if prof:
        print(f"profile b1 compiled: {prof['kernels_per_step']:.0f} kernels/step, GPU busy {prof['gpu_busy_us_per_step']:.0f} us/step")
    for k in ("backends", "parity_fp32_debug", "bf16_agreement", "greedy_graph_vs_eager", "compiled_vs_eager_teacher_forced"):
        if res.get(k) is not None:
            print(f"{k}: {res[k]}")
    if res.get("errors"):
        print("errors:", res["errors"])


def plot(res: dict, path: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    labels, ours, hf = [], [], []
    for r in res.get("prefill", []):
        best = min(x for x in (r.get("ours_ms"), r.get("ours_compiled_ms"), float("inf")) if x)
        if best < float("inf"):
            labels.append(f"{r['batch']}x{r['seq']}")
            ours.append(r["floor_ms"] / best * 100)
            hf.append(r["floor_ms"] / r["hf_ms"] * 100 if r.get("hf_ms") else 0)
    x = range(len(labels))
    a.bar([i - 0.2 for i in x], ours, 0.4, label="ours")
    a.bar([i + 0.2 for i in x], hf, 0.4, label="transformers")
    a.set_xticks(list(x), labels)
    a.set_ylabel("% of floor (higher is better)")
    a.set_title("prefill")
    a.legend()
    labels, vals = [], {k: [] for k in ("ours_eager_tok_s", "ours_graph_tok_s", "ours_compiled_graph_tok_s", "hf_tok_s")}
    for r in res.get("decode", []):
        labels.append(f"batch {r['batch']}")
        for k in vals:
            vals[k].append(100 * (r.get(k) or 0) / r["floor_tok_s"])
    x = range(len(labels))
    for j, (k, v) in enumerate(vals.items()):
        b.bar([i - 0.3 + 0.2 * j for i in x], v, 0.2, label=k.replace("_tok_s", ""))
    b.axhline(50, ls="--", c="gray", lw=1)
    b.set_xticks(list(x), labels)
    b.set_title(f"decode @ {res['decode'][0]['context'] if res.get('decode') else '?'} context")
    b.set_ylabel("% of bandwidth floor")
    b.legend(fontsize=7)
    hw = res.get("hardware") or {}
    fig.suptitle(f"LongCat-Flash {res['flavor']} {res['dtype']} on {hw.get('name')}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())

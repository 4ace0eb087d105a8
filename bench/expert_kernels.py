"""Launch shapes of the decode experts' Triton kernels (omni/llm/moe_triton.py), side by side.

At decode the routed experts run as two GEMV kernels per layer (gate/up with SiLU, then down),
and the gate/up one read its weights at ~1.7 TB/s in the backbone's profile, well under the
card's bandwidth. This times both kernels on the `a1b` expert shapes over a grid of launch
shapes (rows per program, weights per loop step, warps, pipeline stages), each checked against
the torch reference, at batch 1 and 8 (8 experts a token; larger batches take the grouped GEMM), with the weights of all 64 experts
in memory and the experts of successive calls rotated so that the L2 cache does not serve them.
It prints the fastest shapes beside today's (`CONFIGS`), as ratios, and writes JSON and a plot.

    python bench/expert_kernels.py --out bench/results/expert_kernels_h100.json   (a CUDA GPU)

With TRITON_INTERPRET=1 it runs on the CPU in Triton's interpreter (tiny shapes only: a check
of the script and of the kernels' results, timings meaningless).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from omni.llm import moe_triton as mt  # noqa: E402
from omni.llm.moe_triton import KernelConfig  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", default="1,8", help="tokens per decode step (comma list; the kernels serve up to 64 pairs: batch 8)")
    ap.add_argument("--topk", type=int, default=8, help="experts per token (a1b: 8)")
    ap.add_argument("--hidden", type=int, default=2048, help="model width H (a1b: 2048)")
    ap.add_argument("--inner", type=int, default=1024, help="expert inner width I (a1b: 1024)")
    ap.add_argument("--experts", type=int, default=64, help="real experts per layer (a1b: 64)")
    ap.add_argument("--calls", type=int, default=40, help="kernel launches per timing (rotating experts)")
    ap.add_argument("--repeats", type=int, default=7, help="timings per shape (median)")
    ap.add_argument("--block-n", default="4,8,16,32")
    ap.add_argument("--block-k", default="256,512,1024,2048")
    ap.add_argument("--warps", default="2,4,8")
    ap.add_argument("--stages", default="1,2,3,4", help="stages tried on the best shapes found with 3")
    ap.add_argument("--decode-batches", default="1,8",
                    help="then the a1b backbone's decode (CUDA graph, random weights) at these batches with "
                         "today's shapes and the fastest found, side by side (empty: skip)")
    ap.add_argument("--decode-context", type=int, default=1024)
    ap.add_argument("--decode-steps", type=int, default=128)
    ap.add_argument("--out", default="bench/results/expert_kernels.json")
    ap.add_argument("--plot", default=None, help="PNG (default: the JSON's name with .png)")
    return ap.parse_args(argv)


def ints(s: str) -> list[int]:
    return [int(v) for v in s.split(",") if v]


class Problem:
    """One batch size: inputs and rotating expert choices, the kernels' operands, the reference."""

    def __init__(self, a, m: int, dev: torch.device, gate_up: torch.Tensor, down: torch.Tensor) -> None:
        g = torch.Generator(device="cpu").manual_seed(m)
        self.m, self.k, self.h, self.i = m, a.topk, a.hidden, a.inner
        self.gate_up, self.down = gate_up, down
        self.x = torch.randn(m, a.hidden, generator=g).to(dev, torch.bfloat16)
        # per call, each token's top-k distinct real experts; calls rotate through the experts
        self.idx = [torch.stack([torch.randperm(a.experts, generator=g)[: a.topk] for _ in range(m)]).to(dev)
                    for _ in range(a.calls)]
        self.wts = torch.rand(m, a.topk, generator=g).to(dev)
        self.p = m * a.topk
        self.tok = torch.arange(m, device=dev, dtype=torch.int32).repeat_interleave(a.topk)
        self.exp = [i.reshape(-1).to(torch.int32) for i in self.idx]
        self.wt = self.wts.reshape(-1).float().contiguous()
        self.act = torch.empty(self.p, a.inner, device=dev, dtype=torch.bfloat16)
        self.out = torch.empty(self.p, a.hidden, device=dev, dtype=torch.float32)
        # reference of call 0: gate/up activations and the weighted outputs
        e = self.idx[0].reshape(-1)
        gu = torch.einsum("pnh,ph->pn", gate_up[e].float(), self.x[self.tok.long()].float())
        self.act_ref = (torch.nn.functional.silu(gu[:, : a.inner]) * gu[:, a.inner:]).to(torch.bfloat16)
        self.out_ref = torch.einsum("phi,pi->ph", down[e].float(), self.act_ref.float()) * self.wt[:, None]

    def bytes_read(self, kernel: str) -> int:
        """Weight bytes one call reads (each pair its expert's rows; the experts differ within a token)."""
        per = 2 * self.i * self.h if kernel == "gate_up" else self.h * self.i
        return self.p * per * 2

    def launch(self, kernel: str, cfg: KernelConfig, call: int) -> None:
        if kernel == "gate_up":
            mt._gate_up_kernel[(self.p, -(-self.i // cfg.block_n))](
                self.x, self.gate_up, self.tok, self.exp[call], self.act, self.h, self.i, **cfg.launch(self.h))
        else:
            mt._down_kernel[(self.p, -(-self.h // cfg.block_n))](
                self.act_ref, self.down, self.exp[call], self.wt, self.out, self.h, self.i, **cfg.launch(self.i))

    def check(self, kernel: str, cfg: KernelConfig) -> float:
        """Relative max error of call 0 against the reference."""
        self.launch(kernel, cfg, 0)
        sync()
        got, ref = (self.act.float(), self.act_ref.float()) if kernel == "gate_up" else (self.out, self.out_ref)
        return float((got - ref).abs().max() / ref.abs().max().clamp_min(1e-6))

    def time_us(self, kernel: str, cfg: KernelConfig, repeats: int) -> float:
        """Median microseconds per launch of `calls` back-to-back launches (rotating experts),
        replayed as one CUDA graph: launched from Python one by one, a launch costs about what
        the kernel does, and the GPU would wait on the host."""
        n = len(self.exp)
        for c in range(n):  # warm-up (and compile)
            self.launch(kernel, cfg, c)
        sync()
        if not torch.cuda.is_available():  # the interpreter: wall time of one round
            t = time.perf_counter()
            for c in range(n):
                self.launch(kernel, cfg, c)
            return (time.perf_counter() - t) * 1e6 / n
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for c in range(n):
                self.launch(kernel, cfg, c)
        graph.replay()
        sync()
        out = []
        for _ in range(repeats):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            graph.replay()
            b.record()
            b.synchronize()
            out.append(a.elapsed_time(b) * 1e3 / n)
        return statistics.median(out)


def save(report: dict, path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as fh:
        json.dump(report, fh, indent=1)


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def candidates(a, kernel: str, k_len: int) -> list[KernelConfig]:
    return [KernelConfig(bn, bk, w, 3) for bn, bk, w in itertools.product(ints(a.block_n), ints(a.block_k), ints(a.warps))
            if bk <= k_len and bn * bk <= 32768]


def sweep(a, prob: Problem, kernel: str, tol: float) -> list[dict]:
    k_len = prob.h if kernel == "gate_up" else prob.i
    rows, seen = [], set()

    def run(cfg: KernelConfig) -> None:
        if cfg in seen:
            return
        seen.add(cfg)
        try:
            err = prob.check(kernel, cfg)
            us = prob.time_us(kernel, cfg, a.repeats) if err <= tol else None
        except Exception as e:  # a shape this compiler refuses (registers, shared memory)
            rows.append({"config": cfg.__dict__, "error": f"{type(e).__name__}: {str(e)[:120]}"})
            return
        rows.append({"config": cfg.__dict__, "rel_err": err, "us": us,
                     "tb_s": None if us is None else prob.bytes_read(kernel) / us / 1e6})

    run(mt.CONFIGS[0] if kernel == "gate_up" else mt.CONFIGS[1])  # today's, first
    for cfg in candidates(a, kernel, k_len):
        run(cfg)
    timed = sorted((r for r in rows if r.get("us")), key=lambda r: r["us"])
    for r in timed[:3]:  # pipeline stages on the three fastest shapes
        c = r["config"]
        for st in ints(a.stages):
            run(KernelConfig(c["block_n"], c["block_k"], c["num_warps"], st))
    return rows


def best(rows: list[dict]) -> dict:
    return min((r for r in rows if r.get("us")), key=lambda r: r["us"])


def main(argv=None) -> int:
    a = parse_args(argv)
    interpret = os.environ.get("TRITON_INTERPRET") == "1"
    if not mt.HAVE_TRITON or not (torch.cuda.is_available() or interpret):
        print("expert_kernels: needs triton and a CUDA GPU (or TRITON_INTERPRET=1)", file=sys.stderr)
        return 2
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    t0 = time.perf_counter()
    g = torch.Generator(device="cpu").manual_seed(0)
    gate_up = (0.02 * torch.randn(a.experts, 2 * a.inner, a.hidden, generator=g)).to(dev, torch.bfloat16)
    down = (0.02 * torch.randn(a.experts, a.hidden, a.inner, generator=g)).to(dev, torch.bfloat16)
    tol = 2e-2
    name = torch.cuda.get_device_name(0) if dev.type == "cuda" else "CPU (Triton interpreter)"
    report = {"device": name, "torch": torch.__version__, "triton": __import__("triton").__version__,
              "shapes": {"hidden": a.hidden, "inner": a.inner, "experts": a.experts, "topk": a.topk},
              "baseline": [mt.CONFIGS[0].__dict__, mt.CONFIGS[1].__dict__], "tolerance": tol,
              "command": "python bench/expert_kernels.py " + " ".join(sys.argv[1:]), "batches": {}}
    print(f"{report['device']}: a1b experts H={a.hidden} I={a.inner}, {a.experts} experts, top-{a.topk}")
    print(f"{'batch':>5} {'kernel':>8} {'today us':>9} {'TB/s':>6} {'best us':>8} {'TB/s':>6} {'x':>5}  best shape")
    for m in ints(a.batches):
        prob = Problem(a, m, dev, gate_up, down)
        entry = {}
        for kernel in ("gate_up", "down"):
            rows = sweep(a, prob, kernel, tol)
            base, top = rows[0], best(rows)
            entry[kernel] = {"rows": rows, "baseline": base, "best": top,
                             "speedup": base["us"] / top["us"] if base.get("us") else None}
            c = top["config"]
            print(f"{m:>5} {kernel:>8} {base['us']:9.1f} {base['tb_s']:6.2f} {top['us']:8.1f} {top['tb_s']:6.2f} "
                  f"{base['us'] / top['us']:5.2f}  n{c['block_n']} k{c['block_k']} w{c['num_warps']} s{c['num_stages']}")
        report["batches"][str(m)] = entry
        del prob
        save(report, a.out)  # what is measured so far, should the call end early
    # each batch's best shapes at the other batch too: one default has to serve both
    for m in ints(a.batches):
        prob = Problem(a, m, dev, gate_up, down)
        for src in ints(a.batches):
            for kernel in ("gate_up", "down"):
                cfg = KernelConfig(**report["batches"][str(src)][kernel]["best"]["config"])
                report["batches"][str(m)][kernel][f"best_of_batch_{src}_us"] = prob.time_us(kernel, cfg, a.repeats)
        del prob
    if a.decode_batches and dev.type == "cuda":
        del gate_up, down
        torch.cuda.empty_cache()
        report["decode"] = decode_side_by_side(a, report, dev)
    report["wall_s"] = round(time.perf_counter() - t0, 1)
    save(report, a.out)
    plot(report, a.plot or os.path.splitext(a.out)[0] + ".png")
    print(f"wrote {a.out} ({report['wall_s']} s)")
    return 0


def decode_side_by_side(a, report: dict, dev: torch.device) -> dict:
    """tok/s of the a1b backbone's graph decode with today's launch shapes and with each
    kernel's fastest at batch 1 (the step the experts' GEMVs dominate), and whether the
    greedy tokens stay the same (a changed reduction order may round differently)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from backbone_lib import build_ours, decode_tok_s

    from omni.config import get_llm_config

    model = build_ours(get_llm_config("a1b"), dev, torch.bfloat16)
    found = tuple(KernelConfig(**report["batches"][str(ints(a.batches)[0])][k]["best"]["config"])
                  for k in ("gate_up", "down"))
    today = mt.CONFIGS
    out = {"context": a.decode_context, "steps": a.decode_steps, "found": [c.__dict__ for c in found], "batches": {}}
    print(f"a1b decode, CUDA graph, context {a.decode_context}, {a.decode_steps} steps: tok/s today / found")
    try:
        for b in ints(a.decode_batches):
            row = {}
            for name, cfgs in (("today", today), ("found", found), ("today_again", today)):
                mt.CONFIGS = cfgs  # read when the graph is captured
                row[name], row[name + "_tokens"] = decode_tok_s(model, b, a.decode_context, a.decode_steps, True, dev)
            row["speedup"] = row["found"] / max(row["today"], row["today_again"])
            row["same_tokens"] = row["found_tokens"] == row["today_tokens"]
            # random weights leave tiny logit gaps: where does a reordered sum first flip a token?
            row["first_difference"] = next((i for i, (u, v) in enumerate(zip(row["found_tokens"], row["today_tokens"]))
                                            if u != v), None)
            for k in ("today_tokens", "found_tokens", "today_again_tokens"):
                row.pop(k)
            out["batches"][str(b)] = row
            print(f"  batch {b:>3}: {row['today']:8.1f} / {row['found']:8.1f} tok/s (x{row['speedup']:.3f}; "
                  f"again today {row['today_again']:.1f}), greedy tokens the same: {row['same_tokens']}")
    finally:
        mt.CONFIGS = today
    return out


def plot(report: dict, path: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    batches = list(report["batches"])
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, kernel in zip(axes, ("gate_up", "down")):
        for b in batches:
            rows = [r for r in report["batches"][b][kernel]["rows"] if r.get("tb_s")]
            ax.plot(sorted((r["tb_s"] for r in rows), reverse=True), marker=".", label=f"batch {b}")
            ax.axhline(report["batches"][b][kernel]["baseline"]["tb_s"], ls="--", lw=0.8, color=ax.lines[-1].get_color())
        ax.set_title(f"{kernel} kernel: launch shapes, fastest first (dashed: today's)")
        ax.set_xlabel("launch shape (rank)")
        ax.set_ylabel("weights read, TB/s")
        ax.legend()
    fig.suptitle(report["device"])
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())

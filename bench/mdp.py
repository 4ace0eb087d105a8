"""Benchmark of modality-decoupled parallel training (MDP).

Parts (each writes a row to the table and to bench/results/mdp.json):

  mfu        one GPU: training-step MFU of the a1b LLM at sequence 4096 (bf16, AdamW),
             counting only real-expert FLOPs (zero experts do none); both expert backends,
             eager (foreach AdamW) beside compiled (each decoder layer compiled, fused AdamW)
  ep_overlap 2 GPUs: one ScMoE layer at EP = 2, >= 4096 tokens per rank, fwd + bwd,
             shortcut overlap on vs off; all-to-all time measured alone; outputs and
             gradients compared bitwise
  bridge     >= 2 GPUs: ModalityBridge gather + scatter with 1 vs 4 chunks: peak memory
             of the exchange and bitwise equality
  mm_vs_text >= 2 GPUs: the MDP trainer (pp = 2 so the bridge is active, encoders HSDP),
             text-only vs multimodal batches of the same LLM token count, encoder inputs
             skewed as in the spec's Table 2; LLM tokens/s ratio

Parts that need more GPUs than present are reported as `blocked` with the reason.
`--cpu-smoke` runs every part with the debug flavor on CPU (gloo) to check the code
paths; its numbers are not performance.

    python bench/mdp.py                       # on a GPU machine
    python bench/mdp.py --cpu-smoke --out /tmp/mdp_smoke.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mdp.launch import spawn  # noqa: E402
from omni.config import get_llm_config  # noqa: E402

PEAK_BF16 = {"H100": 989e12, "H200": 989e12}


def _timer(device: torch.device):
    """Callable returning elapsed seconds of fn(), synchronized (CUDA events on GPU)."""

    def run(fn) -> float:
        if device.type == "cuda":
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            return a.elapsed_time(b) / 1e3
        t = time.perf_counter()
        fn()
        return time.perf_counter() - t

    return run


def llm_train_flops_per_token(cfg, seq: int, real_per_token: float) -> float:
    """fwd + bwd (3x forward) matmul FLOPs per token; causal attention counted at T/2."""
    h, nh = cfg.hidden_size, cfg.num_attention_heads
    qk, v = cfg.qk_head_dim, cfg.v_head_dim
    mla = (h * cfg.q_lora_rank + cfg.q_lora_rank * nh * qk + h * (cfg.kv_lora_rank + cfg.qk_rope_head_dim)
           + cfg.kv_lora_rank * nh * (cfg.qk_nope_head_dim + v) + nh * v * h)
    attn = nh * (qk + v) * seq / 2
    dense = 2 * 3 * h * cfg.ffn_hidden_size
    router = h * cfg.num_experts_total
    experts = real_per_token * 3 * h * cfg.expert_ffn_hidden_size
    per_layer = 2 * (mla + attn) + dense + router + experts
    macs = cfg.num_layers * per_layer + h * cfg.vocab_size
    return 3 * 2 * macs


# --- mfu ---------------------------------------------------------------------------


MFU_VARIANTS = {
    # what the trainer does today: eager modules, AdamW over foreach kernels
    "eager": {"compile": False, "fused_adamw": False},
    # each decoder layer compiled on its own (regional compilation: one graph reused by
    # every layer), AdamW fused into one kernel per parameter group (CUDA)
    "compiled": {"compile": True, "fused_adamw": True},
}


def bench_mfu(device: torch.device, flavor: str, seq: int, iters: int, backends: list[str],
              variants: list[str] = ("eager",)) -> list[dict]:
    """One row per (variant, expert backend), each on a fresh model from the same seed,
    side by side in one run; the compiled variant's first steps (compilation) are untimed."""
    from omni.llm.model import LongcatFlashForCausalLM

    cfg = get_llm_config(flavor)
    rows = []
    ids = torch.randint(0, cfg.vocab_size, (1, seq + 1), generator=torch.Generator().manual_seed(0)).to(device)
    timer = _timer(device)
    for variant in variants:
        opts = MFU_VARIANTS[variant]
        torch.manual_seed(0)
        with torch.device(device):
            model = LongcatFlashForCausalLM(cfg)
        model.to_dtype(torch.bfloat16)
        if opts["compile"]:
            for layer in model.model.layers:
                layer.compile()
        fused = opts["fused_adamw"] and device.type == "cuda"
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5, **({"fused": True} if fused else {"foreach": True}))
        for backend in backends:
            model.set_expert_backend(backend)
            losses: list[torch.Tensor] = []

            def step() -> None:
                out = model(input_ids=ids[:, :-1], logits="all")
                loss = torch.nn.functional.cross_entropy(out.logits.float().flatten(0, 1), ids[0, 1:])
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
                losses.append(loss.detach())

            for moe in model.moe_layers():  # before warm-up: a compiled layer would recompile on the flip
                moe.track_load = True
            for _ in range(3 if opts["compile"] else 2):
                step()
            for moe in model.moe_layers():
                moe.reset_stats()
            times = [timer(step) for _ in range(iters)]
            real = statistics.mean(m.mean_real_experts_per_token() for m in model.moe_layers())
            t = statistics.median(times)
            flops = llm_train_flops_per_token(cfg, seq, real) * seq
            name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
            peak = next((v for k, v in PEAK_BF16.items() if k in name), None)
            rows.append({
                "part": "mfu", "variant": variant, "backend": backend, "flavor": flavor, "seq": seq,
                "compile": opts["compile"], "fused_adamw": fused, "step_ms": t * 1e3,
                "tokens_per_s": seq / t, "real_experts_per_token": real, "tflops": flops / t / 1e12,
                "mfu": (flops / t / peak) if peak else None, "target_mfu": 0.25,
                "first_loss": float(losses[0]), "losses_finite": bool(all(torch.isfinite(l).item() for l in losses)),
                "peak_mem_gb": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
            })
        del model, opt
    base = {r["backend"]: r["step_ms"] for r in rows if r["variant"] == variants[0]}
    for r in rows:  # side by side: each variant's speed-up over the first one
        r["speedup_vs_" + variants[0]] = base[r["backend"]] / r["step_ms"]
    return rows


# --- ep overlap -------------------------------------------------------------------------


def _ep_worker(rank: int, world: int, flavor: str, tokens: int, iters: int) -> dict:
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh

    from mdp.ep import apply_expert_parallel
    from omni.llm.context import build_context
    from omni.llm.layer import DecoderLayer

    dev = torch.device("cuda", rank) if torch.cuda.is_available() else torch.device("cpu")
    cfg = get_llm_config(flavor)
    mesh = init_device_mesh(dev.type, (world,), mesh_dim_names=("ep",))
    torch.manual_seed(0)
    layer = DecoderLayer(cfg, 0).to(dev)
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_(0, 0.02) if p.dim() > 1 else p.fill_(1.0)
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    layer.to(dtype)
    apply_expert_parallel(layer, mesh, overlap=False)
    g = torch.Generator(device=dev).manual_seed(rank)
    x = torch.randn(1, tokens, cfg.hidden_size, device=dev, dtype=dtype, generator=g)
    ctx = build_context(1, tokens, cfg.qk_rope_head_dim, cfg.rope_theta, dev)
    timer = _timer(dev)
    res: dict = {}
    for overlap in (False, True):
        layer.mlp.dispatcher.overlap = overlap
        xi = x.clone().requires_grad_()

        def fb() -> torch.Tensor:
            xi.grad = None
            for p in layer.parameters():
                p.grad = None
            out = layer(xi, ctx)
            out.float().square().mean().backward()
            return out

        for _ in range(3):
            fb()
        dist.barrier()
        times = [timer(fb) for _ in range(iters)]
        out = fb().detach()
        grads = [xi.grad.clone()] + [(p.grad.to_local() if hasattr(p.grad, "to_local") else p.grad).clone()
                                     for p in layer.parameters() if p.grad is not None]
        res[overlap] = (statistics.median(times), out, grads)
    # the exchange alone: same sizes as the layer's dispatch + combine, forward and backward
    from mdp.ep_comm import exchange_counts

    flat = layer.mlp.route(x.view(-1, cfg.hidden_size)).indices.reshape(-1)
    n = cfg.n_routed_experts
    counts = torch.bincount(torch.where(flat < n, flat, n), minlength=n + 1)[:n]
    recv = exchange_counts(counts, mesh.get_group()).tolist()
    per = n // world
    ins = [int(counts[r * per:(r + 1) * per].sum()) for r in range(world)]
    outs = [sum(recv[s * per:(s + 1) * per]) for s in range(world)]
    send = torch.randn(sum(ins), cfg.hidden_size, device=dev, dtype=dtype)
    buf = torch.empty(sum(outs), cfg.hidden_size, device=dev, dtype=dtype)

    def a2a() -> None:
        for _ in range(2):  # forward dispatch + combine, backward the same again
            dist.all_to_all_single(buf, send, outs, ins, group=mesh.get_group())
            dist.all_to_all_single(send, buf, ins, outs, group=mesh.get_group())

    for _ in range(3):
        a2a()
    t_a2a = statistics.median(timer(a2a) for _ in range(iters))
    off, on = res[False], res[True]
    bitwise = torch.equal(off[1], on[1]) and all(torch.equal(a, b) for a, b in zip(off[2], on[2]))
    flag = torch.tensor([1.0 if bitwise else 0.0], device=dev)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return {
        "part": "ep_overlap", "flavor": flavor, "ep": world, "tokens_per_rank": tokens,
        "layer_ms_off": off[0] * 1e3, "layer_ms_on": on[0] * 1e3, "speedup": off[0] / on[0],
        "a2a_ms": t_a2a * 1e3, "a2a_share": t_a2a / off[0],
        "a2a_hidden": min(1.0, max(0.0, (off[0] - on[0]) / t_a2a)) if t_a2a > 0 else None,
        "bitwise_equal": bool(flag.item() == 1.0), "target_speedup": 1.10, "target_hidden": 0.60,
    }


# --- bridge -----------------------------------------------------------------------------------


def _bridge_worker(rank: int, world: int, tokens: int, hidden: int, chunk_list: list[int]) -> dict:
    import torch.distributed as dist

    from mdp.bridge import ModalityBridge, balance

    dev = torch.device("cuda", rank) if torch.cuda.is_available() else torch.device("cpu")
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    item_tokens = [tokens // 4] * (4 * world)  # 4 items per rank
    plan = balance([float(t) for t in item_tokens], world)
    g = torch.Generator(device=dev).manual_seed(rank)
    local = torch.randn(tokens, hidden, device=dev, dtype=dtype, generator=g)
    up = torch.randn(tokens * world, hidden, device=dev, dtype=dtype, generator=torch.Generator(device=dev).manual_seed(99))
    res = {}
    for chunks in chunk_list:
        bridge = ModalityBridge(dist.group.WORLD, chunks)
        x = local.clone().requires_grad_()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
            torch.cuda.reset_peak_memory_stats(dev)
            base = torch.cuda.memory_allocated(dev)
        t = time.perf_counter()
        out = bridge.gather(x, plan, item_tokens)
        out.backward(up if rank == 0 else torch.zeros_like(out))
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        dt = time.perf_counter() - t
        peak = (torch.cuda.max_memory_allocated(dev) - base) if dev.type == "cuda" else None
        res[chunks] = (out.detach().clone(), x.grad.clone(), peak, dt)
    first = chunk_list[0]
    bitwise = all(torch.equal(res[c][0], res[first][0]) and torch.equal(res[c][1], res[first][1]) for c in chunk_list)
    flag = torch.tensor([1.0 if bitwise else 0.0], device=dev)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    # peak of the exchange itself: subtract what every chunking must hold (output + grads)
    return {
        "part": "bridge", "world": world, "tokens_per_rank": tokens, "hidden": hidden,
        "peak_bytes": {str(c): res[c][2] for c in chunk_list}, "seconds": {str(c): res[c][3] for c in chunk_list},
        "bitwise_equal": bool(flag.item() == 1.0),
    }


# --- multimodal vs text-only -----------------------------------------------------------------------


def _mm_worker(rank: int, world: int, recipe_name: str, overrides: list[str], steps: int, tmp: str) -> dict:
    import torch.distributed as dist

    from mdp.dims import device_for_rank
    from mdp.recipes import get_recipe
    from mdp.synth import synthesize
    from mdp.trainer import Trainer, build_config

    r = get_recipe(recipe_name).override(overrides)
    paths = {k: os.path.join(tmp, k, "manifest.jsonl") for k in ("text", "multimodal")}
    if rank == 0:
        cfg = build_config(r)
        n = max(2 * r.global_batch, 8)
        synthesize(os.path.join(tmp, "text"), cfg, n, r.seq_len, seed=1, modalities=(), text_only_fraction=1.0)
        synthesize(os.path.join(tmp, "multimodal"), cfg, n, r.seq_len, seed=1, modalities=("image", "video", "audio"))
    dist.barrier()
    dev = device_for_rank()
    tr = Trainer(r, dev)
    out = {"part": "mm_vs_text", "world": world, "recipe": recipe_name, "overrides": overrides}
    for kind, path in paths.items():
        tr.attach_data(path)
        for s in range(2):
            tr.step(s)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        dist.barrier()
        t = time.perf_counter()
        toks = 0
        for s in range(2, 2 + steps):
            toks += tr.step(s)["llm_tokens"]
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        dt = time.perf_counter() - t
        out[f"{kind}_tokens_per_s"] = toks / dt
    out["ratio"] = out["multimodal_tokens_per_s"] / out["text_tokens_per_s"]
    out["target_ratio"] = 0.90
    return out


# --- driver ------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--parts", default="mfu,ep_overlap,bridge,mm_vs_text", help="comma-separated parts to run")
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny debug-flavor run on CPU (gloo), not performance")
    ap.add_argument("--iters", type=int, default=10, help="timed iterations per measurement (median reported)")
    ap.add_argument("--mfu-backends", default="grouped_mm,bmm", help="expert backends for the MFU part")
    ap.add_argument("--mfu-variants", default="eager,compiled",
                    help=f"training-step variants for the MFU part, side by side: {', '.join(MFU_VARIANTS)}")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "mdp.json"),
                    help="JSON report path")
    args = ap.parse_args()
    parts = [p for p in args.parts.split(",") if p]
    smoke = args.cpu_smoke
    ngpu = 0 if smoke else torch.cuda.device_count()
    backend = "gloo" if smoke else "nccl"
    hw = "cpu (smoke)" if smoke else (f"{ngpu}x {torch.cuda.get_device_name(0)}" if ngpu else "no GPU")
    rows: list[dict] = []
    if smoke:
        os.environ.setdefault("OMP_NUM_THREADS", "1")

    def blocked(part: str, need: int) -> None:
        rows.append({"part": part, "status": "blocked", "reason": f"needs {need} GPUs, {ngpu} present on {hw}"})

    if "mfu" in parts:
        if smoke:
            rows += bench_mfu(torch.device("cpu"), "debug", 64, 2, ["bmm"], ["eager"])
        elif ngpu >= 1:
            variants = [v for v in args.mfu_variants.split(",") if v]
            unknown = [v for v in variants if v not in MFU_VARIANTS]
            if unknown or not variants:
                ap.error(f"--mfu-variants: unknown {unknown}; known: {', '.join(MFU_VARIANTS)}")
            rows += bench_mfu(torch.device("cuda", 0), "a1b", 4096, args.iters, args.mfu_backends.split(","), variants)
        else:
            blocked("mfu", 1)
    if "ep_overlap" in parts:
        if smoke or ngpu >= 2:
            flavor, tokens = ("debug", 64) if smoke else ("a1b", 4096)
            rows.append(spawn(_ep_worker, 2, flavor, tokens, 2 if smoke else args.iters, backend=backend))
        else:
            blocked("ep_overlap", 2)
    if "bridge" in parts:
        if smoke or ngpu >= 2:
            world = 2 if smoke else min(ngpu, 4)
            tokens, hidden = (64, 32) if smoke else (65536, 2048)
            rows.append(spawn(_bridge_worker, world, tokens, hidden, [1, 4], backend=backend))
        else:
            blocked("bridge", 2)
    if "mm_vs_text" in parts:
        if smoke or ngpu >= 2:
            world = 2 if smoke else (4 if ngpu >= 4 else 2)
            name = "debug" if smoke else "a1b"
            ov = ["pp=2", "microbatches=2", "bridge_chunks=4", "global_batch=4", "seq_len=48" if smoke else "seq_len=4096",
                  "deterministic=false", "bias_update_rate=0.001"]
            if world == 4:
                ov += ["dp=2", "ep=2"]
            with tempfile.TemporaryDirectory() as tmp:
                rows.append(spawn(_mm_worker, world, name, ov, 2 if smoke else 5, tmp, backend=backend))
        else:
            blocked("mm_vs_text", 2)

    for r in rows:
        r.setdefault("status", "measured" if not smoke else "smoke")
        r["hardware"] = hw
    _print(rows)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump({"hardware": hw, "torch": torch.__version__, "rows": rows}, fh, indent=1)
    print(f"wrote {args.out}")
    return 0


def _print(rows: list[dict]) -> None:
    print(f"{'part':<11} {'status':<9} result")
    for r in rows:
        if r["status"] == "blocked":
            msg = r["reason"]
        elif r["part"] == "mfu":
            mfu = "n/a" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%"
            speedup = next((f", x{v:.2f} vs {k[len('speedup_vs_'):]}" for k, v in r.items() if k.startswith("speedup_vs_")), "")
            msg = (f"{r['variant']} {r['backend']}: {r['step_ms']:.1f} ms/step{speedup}, {r['tokens_per_s']:.0f} tok/s, "
                   f"{r['tflops']:.1f} TFLOP/s, MFU {mfu} (target 25%), real experts/token "
                   f"{r['real_experts_per_token']:.2f}, losses finite {r['losses_finite']}")
        elif r["part"] == "ep_overlap":
            msg = (f"off {r['layer_ms_off']:.3f} ms, on {r['layer_ms_on']:.3f} ms, x{r['speedup']:.3f} "
                   f"(target 1.10), a2a {r['a2a_ms']:.3f} ms = {100 * r['a2a_share']:.0f}% of layer, "
                   f"hidden {r['a2a_hidden']}, bitwise {r['bitwise_equal']}")
        elif r["part"] == "bridge":
            msg = f"peak bytes {r['peak_bytes']}, bitwise {r['bitwise_equal']}"
        else:
            msg = (f"text {r['text_tokens_per_s']:.0f} tok/s, multimodal {r['multimodal_tokens_per_s']:.0f} tok/s, "
                   f"ratio {r['ratio']:.3f} (target 0.90)")
        print(f"{r['part']:<11} {r['status']:<9} {msg}")


if __name__ == "__main__":
    sys.exit(main())

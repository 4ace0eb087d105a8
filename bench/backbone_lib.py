"""Measurement pieces of the backbone benchmark (bench/backbone.py): timing
with CUDA events, the hardware ceilings, the decode / prefill floors, building
our model and transformers' with the same weights, and one function per
measured phase."""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from omni.config import LLMConfig, get_llm_config  # noqa: E402
from omni.llm import LongcatFlashForCausalLM  # noqa: E402
from omni.llm.hf_compat import hf_config_dict  # noqa: E402
from omni.llm.params import count_params  # noqa: E402
from omni.llm.runner import DecodeRunner  # noqa: E402

T0 = time.perf_counter()


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:7.1f}s] {msg}", flush=True)


# ----------------------------------------------------------------- timing


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def time_ms(fn, dev: torch.device, iters: int, warmup: int = 2) -> float:
    """Median milliseconds of fn() (CUDA events on GPU, perf_counter on CPU)."""
    for _ in range(warmup):
        fn()
    sync(dev)
    out = []
    for _ in range(iters):
        if dev.type == "cuda":
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            out.append(a.elapsed_time(b))
        else:
            t = time.perf_counter()
            fn()
            out.append((time.perf_counter() - t) * 1e3)
    return statistics.median(out)


def hardware(dev: torch.device, quick: bool) -> dict:
    info = {"device": str(dev), "torch": torch.__version__, "python": platform.python_version()}
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        pass
    if dev.type != "cuda":
        info.update(name=platform.processor() or "cpu", copy_GBps=20.0, matmul_TFLOPs=0.2)
        return info
    p = torch.cuda.get_device_properties(dev)
    info["name"] = f"1x {p.name} {round(p.total_memory / 2**30)}GiB"
    n = (1 << 28) if not quick else (1 << 20)  # 512 MiB of bf16
    src = torch.randn(n, device=dev, dtype=torch.bfloat16)
    dst = torch.empty_like(src)
    ms = time_ms(lambda: dst.copy_(src), dev, 20, 3)
    info["copy_GBps"] = 2 * src.numel() * 2 / ms / 1e6
    m = 8192
    a = torch.randn(m, m, device=dev, dtype=torch.bfloat16)
    b = torch.randn(m, m, device=dev, dtype=torch.bfloat16)
    ms = time_ms(lambda: a @ b, dev, 10, 3)
    info["matmul_TFLOPs"] = 2 * m**3 / ms / 1e9
    del src, dst, a, b
    return info


# ----------------------------------------------------------------- floors


def decode_floor_tok_s(cfg: LLMConfig, batch: int, context: int, bw_GBps: float, nbytes: int = 2) -> float:
    """Weights touched by one step of `batch` tokens + their KV reads, over bandwidth."""
    pc = count_params(cfg)
    n, z, k = cfg.n_routed_experts, cfg.zero_expert_num, cfg.moe_topk
    k_eff = k * n / (n + z)
    touched = n * (1 - (1 - k_eff / n) ** batch) if n else 0.0  # distinct experts per layer
    weights = nbytes * (pc.dense + pc.per_expert * cfg.num_layers * touched + batch * cfg.hidden_size)
    kv = batch * context * 2 * cfg.num_layers * (cfg.kv_lora_rank + cfg.qk_rope_head_dim) * nbytes
    step_s = (weights + kv) / (bw_GBps * 1e9)
    return batch / step_s


def prefill_flops(cfg: LLMConfig, batch: int, seq: int) -> float:
    pc = count_params(cfg)
    lm_head = cfg.vocab_size * cfg.hidden_size
    per_token = pc.expected_active(cfg) - lm_head  # logits only for the last token
    heads, dqk, dv = cfg.num_attention_heads, cfg.qk_head_dim, cfg.v_head_dim
    attn = 2 * cfg.num_layers * 2 * seq * seq * heads * (dqk + dv) / 2  # causal: half the square
    return batch * (2 * per_token * seq + attn + 2 * lm_head)


# ----------------------------------------------------------------- models


def build_ours(cfg: LLMConfig, dev: torch.device, dtype: torch.dtype, seed: int = 0) -> LongcatFlashForCausalLM:
    torch.manual_seed(seed)
    with torch.device(dev):
        m = LongcatFlashForCausalLM(cfg, init=False)
    m.init_weights(std=cfg.initializer_range)
    with torch.no_grad():
        for moe in m.moe_layers():
            moe.router.e_score_correction_bias.normal_(0, 0.01)
    return m.to_dtype(dtype).eval()


def hf_state_dict_for(hf, ours: LongcatFlashForCausalLM) -> dict:
    """Our weights in whatever expert layout this transformers version's module uses."""
    cfg = ours.config
    n = cfg.n_routed_experts
    target = hf.state_dict()
    out = {}
    for k, t in ours.state_dict().items():
        if k.endswith("experts.gate_up_proj") or k.endswith("experts.down_proj"):
            if k in target:  # fused layout (transformers >= 5): pad unused zero-expert rows
                full = torch.zeros_like(target[k])
                full[:n] = t
                out[k] = full
            else:  # per-expert modules
                prefix, proj = k.rsplit(".", 1)
                for e in range(n):
                    if proj == "gate_up_proj":
                        g, u = t[e].split(cfg.expert_ffn_hidden_size)
                        out[f"{prefix}.{e}.gate_proj.weight"], out[f"{prefix}.{e}.up_proj.weight"] = g, u
                    else:
                        out[f"{prefix}.{e}.down_proj.weight"] = t[e]
        else:
            out[k] = t
    for k in target:  # zero experts' unused per-expert weights, if any
        if k not in out:
            out[k] = torch.zeros_like(target[k])
    return out


def build_hf(ours: LongcatFlashForCausalLM, dev: torch.device, dtype: torch.dtype, attn: str = "sdpa"):
    from transformers import LongcatFlashConfig, LongcatFlashForCausalLM as HFModel

    conf = {k: v for k, v in hf_config_dict(ours.config).items() if k not in ("architectures", "model_type")}
    hf_cfg = LongcatFlashConfig(**conf)
    hf_cfg._attn_implementation = attn
    prev = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(dev):
            hf = HFModel(hf_cfg)
    finally:
        torch.set_default_dtype(prev)
    for mod in hf.modules():  # the reference keeps its router in fp32 too (before loading: no rounding)
        if type(mod).__name__.endswith("TopkRouter"):
            mod.float()
    hf.load_state_dict(hf_state_dict_for(hf, ours), strict=True)
    return hf.eval()


# ----------------------------------------------------------------- phases


@torch.no_grad()
def check_parity_fp32(dev: torch.device) -> dict:
    cfg = get_llm_config("debug")
    ours = build_ours(cfg, dev, torch.float32, seed=1)
    with torch.no_grad():
        for p in ours.parameters():
            p.normal_(0, 0.08)
    hf = build_hf(ours, dev, torch.float32, attn="eager")
    ids = torch.randint(0, cfg.vocab_size, (2, 33), device=dev)
    d = (ours(ids).logits - hf(ids).logits).abs().max().item()
    return {"flavor": "debug", "dtype": "float32", "max_abs_logit_diff": d, "ok": d <= 1e-4}


@torch.no_grad()
def prefill_ms(model, cache, batch: int, seq: int, iters: int, dev) -> float:
    ids = torch.randint(4, model.config.vocab_size, (batch, seq), device=dev)
    slots = list(range(batch))

    def run():
        for s in slots:
            cache.truncate(s, 0)
        model(ids, cache=cache, slots=slots, logits="last")

    return time_ms(run, dev, iters)


@torch.no_grad()
def hf_prefill_ms(hf, cfg, batch: int, seq: int, iters: int, dev) -> float:
    ids = torch.randint(4, cfg.vocab_size, (batch, seq), device=dev)
    return time_ms(lambda: hf(ids, use_cache=True, logits_to_keep=1), dev, iters, warmup=1)


@torch.no_grad()
def fill_context(model, cache, batch: int, context: int, dev, chunk_rows: int = 8) -> torch.Tensor:
    """Prefill `context` random tokens into slots 0..batch-1 (eagerly, even when
    the layers are compiled: no compile for these shapes); returns the next
    input tokens [batch]."""
    last = []
    with torch.compiler.set_stance("force_eager"):
        for a in range(0, batch, chunk_rows):
            rows = list(range(a, min(batch, a + chunk_rows)))
            for s in rows:
                cache.truncate(s, 0)
            g = torch.Generator(device="cpu").manual_seed(1234 + a)
            ids = torch.randint(4, model.config.vocab_size, (len(rows), context), generator=g).to(dev)
            last.append(model(ids, cache=cache, slots=rows, logits="last").logits[:, 0].argmax(-1))
    return torch.cat(last)


@torch.no_grad()
def decode_run(runner: DecodeRunner, slots: list[int], tok: torch.Tensor, steps: int) -> list[torch.Tensor]:
    toks = []
    for _ in range(steps):
        logits, _ = runner.step(slots, input_ids=tok)
        tok = logits.argmax(-1)
        toks.append(tok)
    return toks


@torch.no_grad()
def decode_tok_s(model, batch: int, context: int, steps: int, use_graph: bool, dev) -> tuple[float, list]:
    cache = model.new_cache(batch, context + steps + 8)
    tok = fill_context(model, cache, batch, context, dev)
    slots = list(range(batch))
    runner = DecodeRunner(model, cache, batch, use_graph=use_graph, fixed_slots=slots)
    decode_run(runner, slots, tok, 3)  # warm-up / compile / capture
    for s in slots:
        cache.truncate(s, context)
    sync(dev)
    t = time.perf_counter()
    toks = decode_run(runner, slots, tok, steps)
    sync(dev)
    dt = time.perf_counter() - t
    return batch * steps / dt, [x.tolist() for x in toks]


@torch.no_grad()
def teacher_forced_logits(model, context: int, steps: int, use_graph: bool, dev) -> torch.Tensor:
    """Logits [steps, V] of batch-1 decode fed fixed tokens (no feedback)."""
    cache = model.new_cache(1, context + steps + 8)
    fill_context(model, cache, 1, context, dev)
    runner = DecodeRunner(model, cache, 1, use_graph=use_graph, fixed_slots=[0])
    decode_run(runner, [0], torch.tensor([5], device=dev), 2)
    cache.truncate(0, context)
    forced = torch.randint(4, model.config.vocab_size, (steps,), generator=torch.Generator().manual_seed(99))
    out = []
    for i in range(steps):
        logits, _ = runner.step([0], input_ids=forced[i : i + 1].to(dev))
        out.append(logits[0].float().cpu().clone())
    return torch.stack(out)


def compare_logits(a: torch.Tensor, b: torch.Tensor) -> dict:
    return {"max_abs_logit_diff": (a - b).abs().max().item(), "logit_std": b.std().item(),
            "argmax_agreement": (a.argmax(-1) == b.argmax(-1)).float().mean().item()}


@torch.no_grad()
def profile_decode(model, context: int, dev, path: str, steps: int = 5) -> dict:
    """Kernel-level profile of batch-1 decode steps (compiled layers, no graph,
    so every kernel is recorded with its own duration)."""
    from torch.profiler import ProfilerActivity, profile

    cache = model.new_cache(1, context + 32)
    tok = fill_context(model, cache, 1, context, dev)
    runner = DecodeRunner(model, cache, 1, use_graph=False, fixed_slots=[0])
    decode_run(runner, [0], tok, 3)
    sync(dev)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        decode_run(runner, [0], tok, steps)
        sync(dev)
    avgs = prof.key_averages()
    kern = [e for e in avgs if str(getattr(e, "device_type", "")).endswith("CUDA")]

    def dev_us(e):
        return getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0.0)

    total = sum(dev_us(e) for e in kern)
    top = sorted(kern, key=dev_us, reverse=True)[:25]
    lines = [f"{'kernel':<90}{'calls/step':>11}{'us/step':>10}{'share':>8}"]
    for e in top:
        lines.append(f"{e.key[:88]:<90}{e.count / steps:>11.1f}{dev_us(e) / steps:>10.1f}{dev_us(e) / max(total, 1e-9):>8.1%}")
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return {"kernels_per_step": sum(e.count for e in kern) / steps, "gpu_busy_us_per_step": total / steps,
            "top": [(e.key[:80], round(dev_us(e) / steps, 1)) for e in top[:12]]}


@torch.no_grad()
def hf_decode_tok_s(hf, cfg, batch: int, context: int, steps: int, dev) -> float:
    ids = torch.randint(4, cfg.vocab_size, (batch, context), device=dev)
    out = hf(ids, use_cache=True, logits_to_keep=1)
    past, tok = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
    out = hf(tok, past_key_values=past, use_cache=True)  # warm-up step
    past, tok = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
    sync(dev)
    t = time.perf_counter()
    for _ in range(steps):
        out = hf(tok, past_key_values=past, use_cache=True)
        past, tok = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
    sync(dev)
    return batch * steps / (time.perf_counter() - t)


def set_variant(model, fused: bool, backend: str, store: dict) -> None:
    """Switch projection fusion on/off (keeping the fused buffers) and the expert backend."""
    from omni.llm.attention import MLA
    from omni.llm.fusion import SwiGLU

    for mod in model.modules():
        name = "gate_up_fused" if isinstance(mod, SwiGLU) else "qkv_a_fused" if isinstance(mod, MLA) else None
        if name is None:
            continue
        if getattr(mod, name) is not None:
            store[id(mod)] = getattr(mod, name)
        setattr(mod, name, store.get(id(mod)) if fused else None)
    model.set_expert_backend(backend)

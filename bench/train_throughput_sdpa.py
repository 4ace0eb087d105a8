"""The attention calls of the default model's two training paths, one call (forward +
backward) at a time, with a new shape each call as the device path's trimmed batches
bring and with one shape repeated as the loader path's fixed rows do.

    vit_masked   the device path's first ViT batch: SDPA over [U, heads, 64, 64] with
                 an all-True key mask (flash attention takes no mask)
    vit_dense    the same batch without the mask (SDPA)
    vit_varlen   the loader path's packed flash kernel (`varlen_attn`), which the
                 device path's `LongCatViT.forward_dense` now takes on CUDA
    llm_causal   the decoder's causal SDPA over [B, heads, T, 48] as T changes

each under torch's backend choice ("default") and with cuDNN attention left out
("no_cudnn"). Reports the backend SDPA picks (`torch._fused_sdp_choice`), the
priority order, cuDNN's version, and ms per call for new and repeated shapes: if
the first call of a shape costs tens of ms more than a repeat, a per-shape plan is
being built (cuDNN attention does, per (batch, length)).

    python bench/train_throughput_sdpa.py --out sdpa.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time

import torch
import torch.nn.functional as F

BACKENDS = {-1: "error", 0: "math", 1: "flash", 2: "efficient", 3: "cudnn", 4: "overrideable"}


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _priority() -> list[str]:
    """SDPA's backend order (set on the first CUDA dispatch; an older torch may not say)."""
    try:
        return [BACKENDS.get(int(b), str(b)) for b in torch._C._get_sdp_priority_order()]
    except (AttributeError, RuntimeError):
        return ["unknown"]


def _call(kind: str, n: int, dev, heads: int = 3) -> tuple[float, str]:
    """One forward + backward of `kind` at size n (units, or LLM positions); returns
    (ms, the backend SDPA chooses or 'varlen')."""
    dt = torch.bfloat16
    if kind == "llm_causal":
        q, k, v = (torch.randn(192, 4, n, 48, device=dev, dtype=dt, requires_grad=True) for _ in range(3))
        mask, causal = None, True
    else:
        q, k, v = (torch.randn(n, heads, 64, 64, device=dev, dtype=dt, requires_grad=True) for _ in range(3))
        mask = torch.ones(n, 1, 1, 64, dtype=torch.bool, device=dev) if kind == "vit_masked" else None
        causal = False
    _sync(dev)
    t = time.perf_counter()
    if kind == "vit_varlen":
        from torch.nn.attention.varlen import varlen_attn

        cu = torch.arange(0, (n + 1) * 64, 64, dtype=torch.int32, device=dev)
        flat = lambda x: x.transpose(1, 2).reshape(n * 64, heads, 64)
        out, chose = varlen_attn(flat(q), flat(k), flat(v), cu, cu, 64, 64), "varlen"
    else:
        chose = BACKENDS.get(int(torch._fused_sdp_choice(q, k, v, mask, 0.0, causal)), "?")
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
    out.float().square().mean().backward()
    _sync(dev)
    return 1e3 * (time.perf_counter() - t), chose


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", type=int, default=12, help="calls per case with a new shape each, then as many repeats")
    p.add_argument("--device", default="cuda", help="cuda (cpu: a smoke run, no varlen kernel)")
    p.add_argument("--out", default="bench/results/train_throughput_sdpa.json", help="JSON report path")
    args = p.parse_args(argv)
    from torch.nn.attention import SDPBackend, sdpa_kernel

    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    if not cuda:  # a smoke run
        args.calls = min(args.calls, 3)
    _call("vit_dense", 4, dev)  # first work on the device (context, the priority order's initialization)
    report = {"device": torch.cuda.get_device_name(dev) if cuda else "cpu", "torch": torch.__version__,
              "cudnn": torch.backends.cudnn.version() if cuda else None,
              "priority": _priority(), "cases": []}
    sizes = {"llm_causal": [64 + 16 * i for i in range(args.calls)]}  # the device path's trimmed lengths
    no_cudnn = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
    for kind in ("vit_masked", "vit_dense", "vit_varlen", "llm_causal"):
        for mode in ("default", "no_cudnn"):
            if kind == "vit_varlen" and (mode == "no_cudnn" or not cuda):
                continue
            new = sizes.get(kind, [120 + 3 * i for i in range(args.calls)])  # distinct units per step
            with sdpa_kernel(no_cudnn) if mode == "no_cudnn" else contextlib.nullcontext():
                first = [_call(kind, n + (1 if mode == "no_cudnn" else 0), dev) for n in new]  # shapes unseen
                again = [_call(kind, new[-1] + (1 if mode == "no_cudnn" else 0), dev) for _ in new]
            row = {"case": kind, "mode": mode, "backend": first[0][1],
                   "new_shape_ms": round(sum(ms for ms, _ in first[1:]) / (len(first) - 1), 3),
                   "repeat_ms": round(sorted(ms for ms, _ in again)[len(again) // 2], 3),
                   "first_ms": round(first[0][0], 3)}
            report["cases"].append(row)
            print(f"{kind:11s} {mode:8s} backend {row['backend']:9s} new shape {row['new_shape_ms']:8.2f} ms  "
                  f"repeat {row['repeat_ms']:7.2f} ms  (first call {row['first_ms']:.1f} ms)", flush=True)
    print(f"priority {report['priority']}, cuDNN {report['cudnn']}, torch {report['torch']}")
    with open(args.out, "w") as fh:
        json.dump(report, fh, indent=1)


if __name__ == "__main__":
    main()

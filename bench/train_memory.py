"""What a training step of the default model keeps for its backward, part by part, with the
decoder layers' activations kept (today's default) and recomputed in the backward (recipe
`parallel.recompute_positions`), side by side on the same step.

The step is the longest of the first length-bucket window of the dialogue stage (with the
world's tool in the pack, rows of up to 704 positions, as `scripts/train_default_gpu.sh`
trains them). Every tensor autograd saves in the forward is counted once (by storage) under
the part that saved it: the encoders, each decoder layer, the final norm, the text and audio
heads with the loss. On the CPU, SDPA's math kernel keeps each layer's attention
probabilities ([rows, heads, T, T]); a GPU's flash kernel keeps none: they are listed on
their own line. A recomputed layer keeps its input, counted under the part before it.
Bytes grow with the rows: the table also gives them at `--scale-to` rows.
On CUDA each case also records the step's peak allocated memory.

    python bench/train_memory.py --pack runs/data/train.pack.npz --batch 32 --out bench/results/train_memory_cpu.json
    python bench/train_memory.py --pack runs/data/train.pack.npz --batch 768 --device cuda --out /root/out/train_memory.json
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

ATTENTION_PROBS = "attention probabilities"


def _trainer(args, dev: torch.device, work: str):
    from mdp.curriculum.data import answer_code_table
    from mdp.curriculum.device import DeviceMiniTrainer
    from mdp.curriculum.run import _stage_recipe
    from mdp.curriculum.stages import write_stage_manifest
    from mdp.recipes import get_recipe
    from omni.synth.pack import Pack

    pack = Pack(args.pack)
    codes = answer_code_table(pack, use_pack=True)
    manifest = os.path.join(work, "dialogue.jsonl")
    write_stage_manifest(pack, "dialogue", manifest, args.batch * (args.window + 2), 0)
    seq_len = 704 if pack.samples_of("tool") else 384  # scripts/train_default_gpu.sh's dialogue rows
    r = _stage_recipe(get_recipe("omni-mini"), "dialogue", 4).replace(
        seq_len=seq_len, global_batch=args.batch, output={"out_dir": work, "ckpt_dir": os.path.join(work, "ck")},
        data={"manifest": manifest, "workers": 0}, curriculum={"bucket_window": args.window})
    tr = DeviceMiniTrainer(r, dev)
    tr.attach_device_data(manifest, pack, codes)
    return tr


def _tags(tr, tag: list[str]) -> None:
    """Forward pre-hooks that name the part whose tensors autograd saves next."""
    def at(name):
        return lambda module, inputs: tag.__setitem__(0, name)

    m = tr.model
    if "vision" in m.encoders:  # the step calls the ViT's forward_dense: its layers and projector
        vis = m.encoders["vision"]
        for mod in [*vis.vit.encoder.layers, vis.projector]:
            mod.register_forward_pre_hook(at("vision encoder"))
    if "audio" in m.encoders:
        m.encoders["audio"].register_forward_pre_hook(at("audio encoder"))
    for i in m.layer_ids():
        m.llm.model.layers[i].register_forward_pre_hook(at(f"decoder layer {i}"))
    m.llm.model.norm.register_forward_pre_hook(at("final norm"))
    m.llm.lm_head.register_forward_pre_hook(at("text head + loss"))
    m.audio_head.register_forward_pre_hook(at("audio heads"))


def measure(tr, plan, recompute: bool, dev: torch.device, tag: list[str]) -> dict:
    """One forward + backward of `plan`: the bytes saved for the backward by part (`tag`: the
    part running now, which `_tags`' hooks set)."""
    tr.r = dataclasses.replace(tr.r, parallel=dataclasses.replace(
        tr.r.parallel, recompute_positions=1 if recompute else 0))
    seen, parts = set(), collections.Counter()
    rows, heads = len(plan.rows.index), tr.cfg.llm.num_attention_heads

    def keep(t: torch.Tensor) -> torch.Tensor:
        st = t.untyped_storage()
        key = (st.data_ptr(), st.nbytes())
        if key not in seen and st.nbytes():
            seen.add(key)
            probs = t.dim() == 4 and t.shape[:2] == (rows, heads) and t.shape[2] == t.shape[3] == plan.T
            parts[ATTENTION_PROBS if probs else tag[0]] += st.nbytes()
        return t

    tr.model.zero_grad(set_to_none=True)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
    t0 = time.perf_counter()
    with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t), tr._attention():
        p, batch = tr.data(plan)
        tag[0] = "inputs"
        feats = tr.encoders(plan, p)
        tag[0] = "embedding"
        loss, _ = tr.llm(batch, feats)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - t0
    row = {"recompute": recompute, "parts": dict(sorted(parts.items(), key=lambda kv: -kv[1])),
           "kept_bytes": sum(parts.values()), "loss": float(loss), "seconds": seconds}
    if dev.type == "cuda":
        row["peak_allocated_gib"] = (torch.cuda.max_memory_allocated(dev) - base) / 2**30
    tr.model.zero_grad(set_to_none=True)
    return row


def _table(rows: list[dict], batch: int, scale: int) -> str:
    parts = list(dict.fromkeys(k for r in rows for k in r["parts"]))
    f = scale / batch / 2**30
    head = f"{'kept for the backward (GiB)':28s}" + "".join(
        f"{('recompute' if r['recompute'] else 'kept'):>12s}{'@' + str(scale):>10s}" for r in rows)
    lines = [head]
    for k in parts + ["all"]:
        vals = [r["kept_bytes"] if k == "all" else r["parts"].get(k, 0) for r in rows]
        lines.append(f"{k:28s}" + "".join(f"{v / 2**30:12.3f}{v * f:10.2f}" for v in vals))
    if "peak_allocated_gib" in rows[0]:
        lines.append(f"{'peak allocated (GiB)':28s}" + "".join(f"{r['peak_allocated_gib']:12.2f}{'':10s}" for r in rows))
    lines.append(f"{'step seconds':28s}" + "".join(f"{r['seconds']:12.2f}{'':10s}" for r in rows))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pack", default="runs/data/train.pack.npz", help="train pack written by `omni data default`")
    p.add_argument("--batch", type=int, default=32, help="rows of the step (the recipe trains 768)")
    p.add_argument("--scale-to", type=int, default=768, help="also give the bytes at this many rows (linear)")
    p.add_argument("--window", type=int, default=8, help="steps whose rows are length-bucketed together (recipe: 8)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cuda or cpu")
    p.add_argument("--out", default="bench/results/train_memory.json", help="JSON report path")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from mdp.train import init_one_process

    dev = init_one_process(args.device)
    with tempfile.TemporaryDirectory() as work:
        tr = _trainer(args, dev, work)
        plans = [tr.planner.plan(s) for s in range(args.window)]
        plan = max(plans, key=lambda q: q.T)
        tag = ["inputs"]
        _tags(tr, tag)
        rows = [measure(tr, plan, recompute, dev, tag) for recompute in (False, True)]
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"{platform.machine()} CPU, {os.cpu_count()} cores"
    report = {"device": name, "torch": torch.__version__, "command": "bench/train_memory.py " + " ".join(
        sys.argv[1:] if argv is None else argv), "batch": args.batch, "length": plan.T,
        "lengths_in_window": [q.T for q in plans], "scale_to": args.scale_to, "rows": rows,
        "kept_ratio": rows[1]["kept_bytes"] / rows[0]["kept_bytes"]}
    print(f"dialogue step of {args.batch} rows x {plan.T} positions on {name} (window lengths "
          f"{report['lengths_in_window']}):")
    print(_table(rows, args.batch, args.scale_to))
    print(f"recomputed / kept: {report['kept_ratio']:.3f}")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)
    print(f"wrote {args.out}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()

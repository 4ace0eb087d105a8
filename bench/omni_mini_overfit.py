"""The omni-mini curriculum on a few dozen samples per stage, on CPU: does training with
the recipe's defaults still drive the loss down, and what do they change?

    python bench/omni_mini_overfit.py --pack runs/data/train.pack.npz \\
        --out bench/results/omni_mini_overfit_cpu.json

Arms (`--arm 'NAME: key=value; key=value'`, recipe overrides; default: the recipe's
defaults against `optimizer_per_stage=true; answer_weight=1`, the earlier behaviour)
each train all three stages of `omni-mini-smoke` with tiny sizes, `--samples` manifest
lines per stage seen over and over. Reported per arm and stage: the plain stage-1 loss
(the four terms with their fixed weights, without `answer_weight`, so arms compare),
its first and last values, the jump at the stage's start over the previous stage's
end, and the reply's teacher-forced word accuracy. Also the share of the loss weight
that the answers' labels carry in `--share-rows` built rows of each stage, at
answer_weight 1 and at the recipe default (`mdp.loss.answer_share`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

STAGE_LEN = {"speech": 176, "vision": 176, "dialogue": 384}


def plain_loss(row: dict) -> float:
    from mdp.loss import WEIGHTS

    return sum(w * row[f"{t}_loss"] for t, w in WEIGHTS.items())


def answer_shares(pack_path: str, rows: int, weight: float) -> dict:
    """Per stage: the answers' share of the loss weight of `rows` built rows (clean audio)."""
    from encoders.audio import num_encoder_frames
    from mdp.data import stack
    from mdp.loss import answer_share
    from mdp.curriculum.data import PackDataset, answer_code_table
    from mdp.curriculum.stages import STAGE_ORDER, write_stage_manifest
    from omni.config import get_omni_config
    from omni.synth.pack import Pack
    from omni.tokenizer import load_tokenizer

    pack, cfg, tok = Pack(pack_path), get_omni_config("mini"), load_tokenizer()
    codes = answer_code_table(pack)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for stage in STAGE_ORDER:
            path = os.path.join(tmp, f"{stage}.jsonl")
            write_stage_manifest(pack, stage, path, rows, 0)
            ds = PackDataset(path, pack, cfg, tok, STAGE_LEN[stage], lambda n: num_encoder_frames(n, cfg.audio),
                             lambda n: 0, codes)
            ds.augment = False
            batch = stack([ds.sample(i) for i in range(rows)])
            pad = cfg.llm.pad_token_id
            out[stage] = {"weight_1": round(answer_share(batch, pad, 1.0, 1.0), 4),
                          f"weight_{weight:g}": round(answer_share(batch, pad, 1.0, weight), 4)}
    return out


def run_arm(pack: str, out_dir: str, sets: list[str], common: list[str]) -> dict:
    import torch.distributed as dist

    from mdp.curriculum.run import run_curriculum
    from mdp.curriculum.stages import STAGE_ORDER
    from mdp.recipes import get_recipe

    r = get_recipe("omni-mini-smoke").override([f"pack={pack}", f"out_dir={out_dir}", *common, *sets])
    t0 = time.perf_counter()
    assert run_curriculum(r, resume=False) is not None
    seconds = time.perf_counter() - t0
    stages, prev = {}, None
    for stage in STAGE_ORDER:
        rows = json.load(open(os.path.join(out_dir, stage, "loss.json")))
        plain = [round(plain_loss(x), 4) for x in rows]
        acc = [round(x["text_acc"], 4) for x in rows]
        stages[stage] = {"plain_loss": plain, "text_acc": acc, "lr": [x["lr"] for x in rows],
                         "first": plain[0], "last3": round(sum(plain[-3:]) / 3, 4),
                         "acc_last3": round(sum(acc[-3:]) / 3, 4),
                         "jump_at_start": None if prev is None else round(plain[0] - prev, 4)}
        prev = sum(plain[-3:]) / 3
    dist.barrier()
    return {"sets": sets, "seconds": round(seconds, 1), "stages": stages}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pack", required=True, help="train pack (`omni data`)")
    p.add_argument("--out", required=True, help="result JSON")
    p.add_argument("--stage-steps", default="speech:30,vision:30,dialogue:40")
    p.add_argument("--samples", type=int, default=24, help="manifest lines per stage (seen over and over)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--arm", action="append", default=[], help="NAME: key=value; key=value (repeatable)")
    p.add_argument("--share-rows", type=int, default=192, help="rows per stage for the answer-share measure (0: skip)")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()

    import torch

    torch.set_num_threads(a.threads)
    from mdp.recipes import ANSWER_WEIGHT
    from mdp.train import init_distributed

    arms = a.arm or ["defaults:", "earlier: optimizer_per_stage=true; answer_weight=1"]
    common = [f"stage_steps={a.stage_steps}", f"stage_samples={a.samples}", f"global_batch={a.batch}",
              "encoder_steps=", "save_every=0", "lr=3e-3", "min_lr=3e-4", "warmup_steps=3", "data_workers=0",
              "plot=false", "keep_checkpoints=1"]
    report = {"device": f"{platform.machine()} CPU, {os.cpu_count()} cores (shared), {a.threads} torch threads",
              "command": " ".join([os.path.basename(sys.executable), *sys.argv]), "common": common, "arms": {}}
    if a.share_rows:
        report["answer_share"] = answer_shares(a.pack, a.share_rows, ANSWER_WEIGHT)
        print("answer share of the loss weight:", json.dumps(report["answer_share"]), flush=True)
    init_distributed()
    with tempfile.TemporaryDirectory() as tmp:
        for spec in arms:
            name, _, rest = spec.partition(":")
            sets = [s.strip() for s in rest.split(";") if s.strip()]
            res = run_arm(a.pack, os.path.join(tmp, name.strip()), sets, common)
            report["arms"][name.strip()] = res
            summary = {s: {k: v[k] for k in ("first", "last3", "acc_last3", "jump_at_start")}
                       for s, v in res["stages"].items()}
            print(name.strip(), f"{res['seconds']} s", json.dumps(summary), flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as fh:
        json.dump(report, fh, indent=1)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

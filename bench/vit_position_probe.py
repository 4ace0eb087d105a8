"""Do the ViT's tokens say where an object is? Moved square vs swapped shape, with the
absolute position embedding off and on.

    python bench/vit_position_probe.py --seeds 3           # CPU, ~20 min on 2 cores

Scenes of the default world (`omni/synth`: its backgrounds, slots, sizes, colors), each
reduced to one object drawn as a square and rendered at the world's 112 px (8 x 8
patches, 8 x 4 merged tokens). Three renders per scene: the square, the square moved by
one merged token (2 patch columns = 28 px right or left, or 1 patch row = 14 px down
or up; the pixels are an exact shift), and a circle in the square's place. For the ViT
output tokens (patches) and the encoder's merged tokens (after the projector):

    moved    ||T(square) - T(moved)|| / ||T(square)|| with T(moved) shifted back, so each
             token is compared with the one that sees the same pixels: how much the
             tokens change when only the position does
    swapped  the same for the circle, not shifted: how much they change with the shape

RoPE alone is relative: on a uniform background a shifted object gives (nearly) shifted
tokens, so `moved` is ~0 while `swapped` is not. Arms: `off` (abs_pos_grid = 0) and
`on` (the flavor's abs_pos_grid, or --grid), both from the same seed with the same
weights but for the table (the `on` model loads the `off` model's weights).

With --finetune-steps > 0 both arms are then fine-tuned alike (same batches, same head
init) on a position task read from the mean of the ViT tokens, a readout that cannot
see token order, so it works only if the tokens themselves carry position:

    slot     the world's slot (left, right, top, bottom, center) of one object
    cell     which of 4 x 4 cells (one merged-token column, two patch rows each) holds
             the center of one object placed anywhere: finer, so precision shows

Reported: held-out accuracy every --eval-every steps and at the end, and the moved /
swapped figures again after it.

Prints a table, writes JSON (default bench/results/vit_position_probe_cpu.json).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time

sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

MOVES = {"right": (0, 2), "left": (0, -2), "down": (1, 0), "up": (-1, 0)}  # (rows, cols) of patches


def one_object(scene, shape: str | None = None, dx: float = 0.0, dy: float = 0.0):
    """The scene with only its first object (static, optionally another shape, moved by dx, dy)."""
    from omni.synth.world import Scene

    o = scene.objects[0]
    o = dataclasses.replace(o, shape=shape or o.shape, x=o.x + dx, y=o.y + dy, direction=None, travel=0.0)
    return Scene(scene.scene_id, scene.split, "image", 0.0, scene.background, (o,))


def probe_scenes(seed: int, n: int, size: int, patch: int) -> list[dict]:
    """n scenes: square / moved square / circle frames, the move in patches, exact-shift check."""
    from omni.synth.render import render_frame
    from omni.synth.world import EXTENT, sample_scene

    out, k = [], 0
    while len(out) < n:
        sc = sample_scene(seed, "train", k)
        k += 1
        o = sc.objects[0]
        ext = o.radius * EXTENT
        # horizontal moves for left/right/center slots, vertical for top/bottom, away from the border
        if o.slot in ("top", "bottom"):
            move = "down" if o.y + patch / size + ext < 1 else "up"
        else:
            move = "right" if o.x + 2 * patch / size + ext < 1 else "left"
        dr, dc = MOVES[move]
        frames = [render_frame(one_object(sc, "square"), 0.0, size),
                  render_frame(one_object(sc, "square", dc * patch / size, dr * patch / size), 0.0, size),
                  render_frame(one_object(sc, "circle"), 0.0, size)]
        a, b = frames[0], frames[1]
        py, px = dr * patch, dc * patch
        src = a[max(0, -py) : size - max(0, py), max(0, -px) : size - max(0, px)]
        dst = b[max(0, py) : size - max(0, -py), max(0, px) : size - max(0, -px)]
        out.append({"scene": sc.scene_id, "slot": o.slot, "move": move, "shift": (dr, dc), "frames": frames,
                    "exact_shift": bool(np.array_equal(src, dst))})
    return out


def overlap(t: torch.Tensor, dr: int, dc: int, moved: bool) -> torch.Tensor:
    """Tokens [H, W, D] on the part of the grid both renders share; `moved` takes the
    shifted copy (the tokens that see what the unmoved ones saw)."""
    h, w = t.shape[:2]
    if moved:
        return t[max(0, dr) : h + min(0, dr), max(0, dc) : w + min(0, dc)]
    return t[max(0, -dr) : h - max(0, dr), max(0, -dc) : w - max(0, dc)]


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / a.norm())


@torch.no_grad()
def measure(enc, scenes: list[dict]) -> dict:
    from encoders.image_processing import preprocess_image

    enc.eval()
    rows = []
    for s in scenes:
        units = [preprocess_image(f, enc.cfg) for f in s["frames"]]
        (gh, gw) = units[0].grid
        vit = enc.vit(torch.cat([u.patches for u in units]), [u.grid for u in units])
        tok = enc.projector(vit, [u.grid for u in units])
        vit = vit.view(3, gh, gw, -1)
        tok = tok.view(3, gh, gw // 2, -1)
        dr, dc = s["shift"]
        r = {}
        for name, t, (mr, mc) in (("vit", vit, (dr, dc)), ("merged", tok, (dr, dc // 2))):
            base = overlap(t[0], mr, mc, False)
            r[f"{name}_moved"] = rel(base, overlap(t[1], mr, mc, True))
            r[f"{name}_swapped"] = rel(base, overlap(t[2], mr, mc, False))
        rows.append(r)
    keys = rows[0].keys()
    summary = {k: float(np.median([r[k] for r in rows])) for k in keys}
    for name in ("vit", "merged"):
        summary[f"{name}_moved_over_swapped"] = float(np.median([r[f"{name}_moved"] / r[f"{name}_swapped"] for r in rows]))
    return {"median": summary, "per_scene": rows}


CELLS = 4  # the cell task's grid


def task_scene(task: str, seed: int, split: str, index: int):
    """(one-object scene, class) of the fine-tune task."""
    from omni.synth.world import EXTENT, POSITIONS, sample_scene

    sc = one_object(sample_scene(seed, split, index))
    o = sc.objects[0]
    if task == "slot":
        return sc, POSITIONS.index(o.slot)
    rng = np.random.default_rng([seed, 7, 0 if split == "train" else 1, index])
    lo = o.radius * EXTENT + 0.01
    x, y = (float(v) for v in rng.uniform(lo, 1 - lo, 2))
    sc = one_object(sc, dx=x - o.x, dy=y - o.y)
    return sc, min(int(y * CELLS), CELLS - 1) * CELLS + min(int(x * CELLS), CELLS - 1)


def finetune(enc, args, task: str, seed: int) -> dict:
    """Position classification from the mean of the ViT tokens (order-blind readout)."""
    from encoders.image_processing import preprocess_image
    from omni.synth.render import render_frame
    from omni.synth.world import POSITIONS

    def batch(split: str, start: int, n: int):
        items = [task_scene(task, seed, split, start + i) for i in range(n)]
        units = [preprocess_image(render_frame(sc, 0.0, args.size), enc.cfg) for sc, _ in items]
        y = torch.tensor([c for _, c in items])
        return torch.cat([u.patches for u in units]), [u.grid for u in units], y

    @torch.no_grad()
    def accuracy() -> float:
        enc.eval()
        correct = 0
        for i in range(0, args.eval_scenes, 50):
            p, g, y = held[i // 50]
            correct += int((logits(p, g).argmax(-1) == y).sum())
        enc.train()
        return round(correct / args.eval_scenes, 4)

    def logits(patches, grids):
        x = enc.vit(patches, grids)
        pooled = torch.stack([t.mean(0) for t in x.split([h * w for h, w in grids])])
        return head(pooled)

    held = [batch("heldout", i, min(50, args.eval_scenes - i)) for i in range(0, args.eval_scenes, 50)]
    torch.manual_seed(seed + 1)
    head = torch.nn.Linear(enc.cfg.hidden_size, len(POSITIONS) if task == "slot" else CELLS * CELLS)
    params = list(enc.vit.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    losses, curve, t0 = [], [], time.time()
    enc.train()
    for step in range(args.finetune_steps):
        if args.eval_every and step % args.eval_every == 0:
            curve.append([step, accuracy()])
        p, g, y = batch("train", step * args.batch, args.batch)
        loss = F.cross_entropy(logits(p, g), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(round(float(loss.detach()), 4))
    secs = time.time() - t0
    final = accuracy()
    curve.append([args.finetune_steps, final])
    enc.eval()
    return {"task": task, "steps": args.finetune_steps, "batch": args.batch, "lr": args.lr,
            "seconds_with_evals": round(secs, 1), "loss_first": losses[0],
            "loss_last20": round(float(np.mean(losses[-20:])), 4), "heldout_scenes": args.eval_scenes,
            "heldout_accuracy": final, "heldout_accuracy_by_step": curve, "losses": losses}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--flavor", default="mini", help="vision flavor (omni.config) of both arms")
    p.add_argument("--grid", type=int, default=0,
                   help="abs_pos_grid of the 'on' arm (0: the flavor's own, or 8 if the flavor has it off)")
    p.add_argument("--init-std", type=float, default=None,
                   help="abs_pos_init_std of the 'on' arm (default: the flavor's)")
    p.add_argument("--scenes", type=int, default=16, help="default-world scenes probed (medians are reported)")
    p.add_argument("--size", type=int, default=112, help="frame side in pixels (the world's frames: 112)")
    p.add_argument("--finetune-steps", type=int, default=300,
                   help="steps of the slot fine-tune of each arm (0: measure at init only)")
    p.add_argument("--tasks", default="slot,cell",
                   help="fine-tunes to run, comma-separated: slot (the world's 5 slots), cell (4 x 4 cell of a freely "
                        "placed object)")
    p.add_argument("--batch", type=int, default=16, help="scenes per fine-tune step")
    p.add_argument("--lr", type=float, default=1e-3, help="fine-tune learning rate (AdamW)")
    p.add_argument("--eval-scenes", type=int, default=250, help="held-out scenes the fine-tuned arms are scored on")
    p.add_argument("--eval-every", type=int, default=50, help="held-out accuracy every this many steps (0: at the end only)")
    p.add_argument("--seed", type=int, default=0, help="first initialization and scene seed (the same for both arms)")
    p.add_argument("--seeds", type=int, default=1, help="seeds run (seed, seed + 1, ...); medians and means over them")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--out", default="bench/results/vit_position_probe_cpu.json", help="JSON report path")
    args = p.parse_args()
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.finetune_steps > 0 else []
    if set(tasks) - {"slot", "cell"}:
        p.error(f"--tasks {args.tasks!r}: slot and/or cell")
    torch.set_num_threads(args.threads)
    from encoders.vision import VisionEncoder
    from omni.config import get_flavor, to_dict

    base = get_flavor("vision", args.flavor)
    grid = args.grid or base.abs_pos_grid or 8
    cfg_on = dataclasses.replace(base, abs_pos_grid=grid)
    if args.init_std is not None:
        cfg_on = dataclasses.replace(cfg_on, abs_pos_init_std=args.init_std)
    cfg_off = dataclasses.replace(base, abs_pos_grid=0)
    arm_names = ("off", "on")

    def arms(seed: int) -> dict:
        """Both arms from one seed, the same weights but for the table."""
        torch.manual_seed(seed)
        off = VisionEncoder(cfg_off)
        torch.manual_seed(seed)
        on = VisionEncoder(cfg_on)
        missing, unexpected = on.load_state_dict(off.state_dict(), strict=False)
        assert missing == ["vit.embeddings.position_embedding.weight"] and not unexpected, (missing, unexpected)
        return {"off": off, "on": on}

    runs = []
    for seed in range(args.seed, args.seed + args.seeds):
        scenes = probe_scenes(seed, args.scenes, args.size, base.patch_size)
        run = {"seed": seed, "scenes": [{k: v for k, v in s.items() if k != "frames"} for s in scenes],
               "init": {n: measure(e, scenes) for n, e in arms(seed).items()}, "finetune": {}, "after_finetune": {}}
        for task in tasks:
            run["finetune"][task], run["after_finetune"][task] = {}, {}
            for name, enc in arms(seed).items():
                print(f"seed {seed}, {task} fine-tune of '{name}': {args.finetune_steps} steps x {args.batch} ...",
                      file=sys.stderr)
                run["finetune"][task][name] = finetune(enc, args, task, seed)
                run["after_finetune"][task][name] = measure(enc, scenes)
        runs.append(run)

    def med(rows: list[dict]) -> dict:
        return {k: round(float(np.median([r["median"][k] for r in rows])), 6) for k in rows[0]["median"]}

    summary = {"init": {n: med([r["init"][n] for r in runs]) for n in arm_names}, "finetune": {}}
    for task in tasks:
        summary["finetune"][task] = {}
        for n in arm_names:
            fts = [r["finetune"][task][n] for r in runs]
            accs = [f["heldout_accuracy"] for f in fts]
            curve = np.mean([[a for _, a in f["heldout_accuracy_by_step"]] for f in fts], axis=0)
            summary["finetune"][task][n] = {
                "heldout_accuracy_mean": round(float(np.mean(accs)), 4), "heldout_accuracy_per_seed": accs,
                "heldout_accuracy_by_step_mean": [[k, round(float(a), 4)] for (k, _), a in
                                                  zip(fts[0]["heldout_accuracy_by_step"], curve)],
                "after": med([r["after_finetune"][task][n] for r in runs])}
    report = {"device": f"{platform.machine()} CPU, {os.cpu_count()} cores", "threads": args.threads,
              "command": "python bench/vit_position_probe.py " + " ".join(sys.argv[1:]),
              "flavor": args.flavor, "abs_pos_grid_on": grid, "abs_pos_init_std_on": cfg_on.abs_pos_init_std,
              "seeds": list(range(args.seed, args.seed + args.seeds)), "frame_px": args.size,
              "scenes_per_seed": args.scenes,
              "metric": "relative L2 change of the tokens on the part of the grid both renders share, the moved "
                        "render's tokens shifted back; median over scenes, then over seeds",
              "readout": "fine-tunes: mean of the ViT tokens -> linear (cannot see token order); whole ViT trained",
              "summary": summary, "runs": runs, "config_on": to_dict(cfg_on)}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(report, fh, indent=1)

    print(f"ViT position probe, {args.flavor} flavor, {report['device']} ({args.threads} threads), seeds "
          f"{report['seeds']}, {args.scenes} scenes each; abs_pos_grid {grid}, init std {cfg_on.abs_pos_init_std} when on")
    print(f"{'arm':5} {'when':17} {'ViT moved':>10} {'ViT swapped':>12} {'moved/swapped':>14} "
          f"{'merged moved':>13} {'merged swapped':>15} {'held-out acc':>13}")
    rows = [("init", n, summary["init"][n], None) for n in arm_names]
    rows += [(f"{t} +{args.finetune_steps} steps", n, summary["finetune"][t][n]["after"],
              summary["finetune"][t][n]["heldout_accuracy_mean"]) for t in tasks for n in arm_names]
    for when, n, m, acc in rows:
        print(f"{n:5} {when:17} {m['vit_moved']:10.3%} {m['vit_swapped']:12.2%} {m['vit_moved_over_swapped']:14.3f} "
              f"{m['merged_moved']:13.3%} {m['merged_swapped']:15.2%} {'' if acc is None else f'{acc:.1%}':>13}")
    for t in tasks:
        for n in arm_names:
            f = summary["finetune"][t][n]
            print(f"{n:5} {t} held-out accuracy by step (mean over seeds): "
                  + ", ".join(f"{k}: {a:.0%}" for k, a in f["heldout_accuracy_by_step_mean"])
                  + f"; per seed {', '.join(f'{a:.0%}' for a in f['heldout_accuracy_per_seed'])}")
    if not all(s["exact_shift"] for r in runs for s in r["scenes"]):
        print("note: some moved renders are not an exact pixel shift (see 'scenes')", file=sys.stderr)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

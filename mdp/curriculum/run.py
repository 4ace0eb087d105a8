"""The staged training run of the default model (`omni train --recipe omni-mini`).

For each stage of `recipe.curriculum.stage_steps` (see `mdp.curriculum.stages`): write the
stage manifest from the pack, train with the project's MDP trainer (AdamW, cosine
LR, stage-1 loss on the reply), checkpoint every `output.save_every` steps and at the
stage's end, log loss.csv / loss.json / loss.png in out_dir/STAGE, and leave
out_dir/STAGE/model.pt + done.json when the stage is complete. A stage starts from
the previous stage's final checkpoint: its weights and (unless
`curriculum.optimizer_per_stage`) its AdamW moments and its place in one LR schedule, a
warm-up once and a cosine over every stage's steps, so a stage boundary changes
only the data mix (a fresh optimizer re-warmed with empty moments at every stage
jolted the loss). Rerunning the command resumes: done stages are skipped, a stage
in progress continues from its newest checkpoint.
At the end the weights are exported as an `OmniModel` checkpoint directory
(`output.export_dir`, default out_dir/model) that `omni chat --model DIR` loads, and
out_dir/loss.png shows all stages on one axis.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.distributed as dist

from mdp import checkpoint
from mdp.data import ModalityItem, default_layout, stack
from mdp.log import write_json
from mdp.loop import TrainLoop, agree, deadline_after
from mdp.curriculum.data import PackDataset, answer_code_table, load_answer_phases, pack_cmvn
from mdp.curriculum.stages import stage_plan, stage_seq_lens, write_stage_manifest
from mdp.recipes import Recipe
from mdp.trainer import Trainer


class _StepBatches(torch.utils.data.Dataset):
    """Step s -> this DP rank's samples of step s (built in DataLoader workers)."""

    def __init__(self, ds: PackDataset, seed: int, global_batch: int, dp_rank: int, dp: int, start: int, end: int) -> None:
        self.ds, self.seed, self.gb, self.dp_rank, self.dp, self.start, self.end = ds, seed, global_batch, dp_rank, dp, start, end

    def __len__(self) -> int:
        return self.end - self.start

    def __getitem__(self, k: int):
        idx = self.ds.step_indices(self.seed, self.start + k, self.gb)
        return pack_step([self.ds.sample(i) for i in idx[self.dp_rank :: self.dp]])


def pack_step(samples: list) -> dict:
    """One step's samples as a few large tensors. A loader worker hands every tensor
    to the main process separately (a shared-memory segment and a file descriptor
    each), and the main process receives them one by one: with ~10 tensors per
    sample that capped the loader at ~200 samples/s on a 16-core host whatever the
    number of workers. Here the token rows are stacked and every media tensor is
    flattened into one buffer per dtype; `unpack_step` rebuilds views."""
    batch = stack(samples)
    order, base, metas = [], 0, []
    flat: dict[torch.dtype, list[torch.Tensor]] = {}
    used: dict[torch.dtype, int] = {}
    for smp in samples:
        order += [base + o for o in smp.order]
        base += sum(it.num_tokens for it in smp.items)
        for it in smp.items:
            fields = {}
            for key, v in it.data.items():
                if torch.is_tensor(v):
                    start = used.get(v.dtype, 0)
                    flat.setdefault(v.dtype, []).append(v.reshape(-1))
                    used[v.dtype] = start + v.numel()
                    fields[key] = (v.dtype, start, tuple(v.shape))
                else:
                    fields[key] = v
            metas.append((it.kind, it.num_tokens, it.cost, fields))
    buffers = {dt: torch.cat(parts) for dt, parts in flat.items()}
    return {"batch": batch, "order": torch.tensor(order, dtype=torch.long), "items": metas, "buffers": buffers}


def unpack_step(packed: dict) -> list[ModalityItem]:
    """The step's modality items (data as views into the packed buffers), in sample order."""
    items = []
    for kind, ntok, cost, fields in packed["items"]:
        data = {}
        for key, v in fields.items():
            if isinstance(v, tuple) and len(v) == 3 and isinstance(v[0], torch.dtype):
                dt, start, shape = v
                n = 1
                for d in shape:
                    n *= d
                data[key] = packed["buffers"][dt][start : start + n].view(shape)
            else:
                data[key] = v
        items.append(ModalityItem(kind, data, ntok, cost))
    return items


def main_process_threads(asked: int, workers: int, device: torch.device) -> int:
    """Torch CPU threads for the training process (0: leave torch's default).

    On a GPU with loader workers, one: that process only launches kernels and
    copies the step's inputs, and every parallel CPU op it runs (copies over
    32 K elements are parallel) waits at its barrier for the slowest of its
    threads, which busy workers deschedule (`python bench/omp_stall.py`)."""
    if asked > 0:
        return asked
    return 1 if device.type == "cuda" and workers > 0 else 0


class MiniTrainer(Trainer):
    """The MDP trainer reading a `PackDataset`: interleaved layouts put image and
    audio features in sequence order, so the encoder outputs (item order) are
    permuted into placeholder order before the embedding."""

    def attach_pack(self, manifest: str, pack, codes, workers: int, start: int, end: int, prefetch: int = 4) -> None:
        if self.dims.inner_dp > 1 or self.dims.pp > 1:
            raise ValueError("omni-mini trains with data parallelism only (inner_dp = pp = 1)")
        threads = main_process_threads(self.r.data.main_threads, workers, self.device)
        if threads:
            torch.set_num_threads(threads)
        enc = self.model.encoders["audio"]
        ready: dict[int, int] = {}

        def frames_ready(n: int) -> int:  # OmniModel.frames_ready: frames released after n samples
            if n not in ready:
                total, j = enc.num_frames(n), 0
                while j < total and enc.samples_needed(j) <= n:
                    j += 1
                ready[n] = j
            return ready[n]

        self.layout = default_layout(self.cfg.llm.pad_token_id, self.cfg.audio_pad_id)
        self.dataset = PackDataset(manifest, pack, self.cfg, run_tokenizer(self.r), self.r.seq_len,
                                   enc.num_frames, frames_ready, codes)
        data = _StepBatches(self.dataset, self.r.seed, self.r.global_batch, self.meshes.dp_rank, self.dims.dp, start, end)
        self._batches = iter(torch.utils.data.DataLoader(
            data, batch_size=None, shuffle=False, num_workers=workers, prefetch_factor=prefetch if workers else None,
            persistent_workers=False, collate_fn=lambda x: x,
        ))

    def close_loader(self) -> None:
        """Stop this stage's loader workers now. Left to the garbage collector, the
        iterator can be collected inside a worker forked for the next stage, which
        then fails to shut down processes that are not its children."""
        it, self._batches = getattr(self, "_batches", None), None
        if it is not None and hasattr(it, "_shutdown_workers"):
            it._shutdown_workers()

    def _load(self, step: int):
        packed = next(self._batches)
        # media buffers to the device first (one copy per dtype), so that padding the
        # audio and concatenating the patches run there, not as CPU copies of this
        # process (which busy loader workers stall, see main_process_threads)
        packed["buffers"] = {dt: b.to(self.device, non_blocking=True) for dt, b in packed["buffers"].items()}
        items = unpack_step(packed)
        self._order = packed["order"]
        return packed["batch"], items, [it.kind for it in items], [it.num_tokens for it in items]

    def _encode(self, plan, mine, kinds, ntok):
        gathered, anchor = super()._encode(plan, mine, kinds, ntok)
        if gathered is not None:
            gathered = gathered.index_select(0, self._order.to(gathered.device))
        return gathered, anchor


def _stage_recipe(r: Recipe, name: str, steps: int) -> Recipe:
    out = os.path.join(r.output.out_dir, name)
    seq_len = stage_seq_lens(r.curriculum.stage_seq_len, r.seq_len)[name]
    return r.replace(name=f"{r.name}:{name}", steps=steps, seq_len=seq_len,
                     output={"out_dir": out, "ckpt_dir": os.path.join(out, "checkpoints")},
                     data={"manifest": os.path.join(out, "manifest.jsonl")})


class _Plan:
    """Step counts of the stages. With `budget.fit` (and a time budget) they are
    fitted to the time left, first per stage trained in this run from the timed
    steps of that stage: the first stage's timing sizes every stage, and each later
    stage re-fits itself and the ones after it with its own measured speed (the
    first steps of a run are slower than the rest: allocator, autotuning), and again
    every REFIT_EVERY steps from the wall clock (`speed`). Step
    counts never exceed the recipe's (`bounds`); each stage's step is costed in
    proportion to its sequence length (`curriculum.stage_cost_len` where named). The
    fitted plan is kept in out_dir/plan.json for resumes. A resume takes that plan as its bounds: it
    never grows, but when this run's time budget cannot hold the rest of it, the
    stages trained in this run shrink it to fit (so a budget split over several
    calls, `budget.plan_s` in the first, still ends with an exported model)."""

    TIMED = (5, 20)  # steps [5, 20) of each stage trained in this run are timed
    # then every this many steps the stage re-fits again from the wall clock since its timed
    # start: fifteen steps' mean misses the held-out probes, checkpoints and the spread of the
    # dialogue steps' lengths (a resumed call once stopped 15 steps short of its export)
    REFIT_EVERY = 250
    STAGE_OVERHEAD_S = 15.0

    def __init__(self, recipe: Recipe, resume: bool) -> None:
        self.path = os.path.join(recipe.output.out_dir, "plan.json")
        # what a stage's step is costed as before it is timed (trimmed rows: not always its seq_len)
        lengths = stage_seq_lens(recipe.curriculum.stage_seq_len, recipe.seq_len)
        named = stage_seq_lens(recipe.curriculum.stage_cost_len, 0)  # checked as stage_seq_len is; 0: not named
        self.seq = {name: named[name] or n for name, n in lengths.items()}
        self.stages = [list(s) for s in stage_plan(recipe.curriculum.stage_steps)]
        self.bounds = [n for _, n in self.stages]
        self.active = recipe.budget.fit and (recipe.budget.time_s or 0) > 0
        self.fitted: set[int] = set()
        self.speeds: dict[str, float] = {}  # measured s/step per stage (kept for resumes)
        if resume and os.path.isfile(self.path):
            with open(self.path) as fh:
                kept = json.load(fh)
            self.stages = [list(s) for s in kept["stage_steps"]]
            self.bounds = [n for _, n in self.stages]
            self.speeds = dict(kept.get("speeds", {}))

    def needs_fit(self, idx: int) -> bool:
        return self.active and idx not in self.fitted

    def estimate(self, idx: int) -> float | None:
        """Stage idx's s/step from an earlier measurement (its own, else another
        stage's scaled by sequence length); None before any."""
        name = self.stages[idx][0]
        if name in self.speeds:
            return self.speeds[name]
        for other, sec in self.speeds.items():
            if other in self.seq:
                return sec * self.seq[name] / self.seq[other]
        return None

    def speed(self, idx: int, since: int, timed: list[float], wall_s: Callable[[], float]) -> float | None:
        """Stage idx's s/step for a re-fit `since` steps into this run's share of it, or None
        when none is due: the mean of the timed steps (`timed`, the loop's step times from
        TIMED[0]) once, then every REFIT_EVERY steps the wall clock since TIMED[0] (`wall_s()`,
        read only then) over the steps taken since."""
        if not self.active:
            return None
        if since == self.TIMED[1] and idx not in self.fitted:
            return sum(timed) / len(timed)
        later = since - self.TIMED[1]
        if idx in self.fitted and later > 0 and later % self.REFIT_EVERY == 0:
            return wall_s() / (since - self.TIMED[0])
        return None

    def fit(self, idx: int, done: int, sec_per_step: float, remaining_s: float, measured: bool = True) -> int:
        """Rescale stage idx (`done` steps taken) and the later stages; returns stage
        idx's new total. `measured=False`: an estimate at the stage's start, which the
        stage's own timing replaces."""
        cur = self.seq[self.stages[idx][0]]
        cost = [sec_per_step * self.seq[name] / cur for name, _ in self.stages]
        left = max(0, self.bounds[idx] - done)
        need = left * cost[idx] + sum(self.bounds[k] * cost[k] for k in range(idx + 1, len(self.stages)))
        # each later stage also pays its start (model, loader workers) and its save: ~15 s
        remaining_s -= self.STAGE_OVERHEAD_S * (len(self.stages) - idx - 1)
        scale = min(1.0, max(0.0, 0.95 * remaining_s) / need) if need > 0 else 1.0
        self.stages[idx][1] = done + max(1, int(left * scale))
        for k in range(idx + 1, len(self.stages)):
            self.stages[k][1] = max(1, int(self.bounds[k] * scale))
        if measured:
            self.fitted.add(idx)
            self.speeds[self.stages[idx][0]] = sec_per_step
        if dist.get_rank() == 0:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            write_json(self.path, {"stage_steps": self.stages, "sec_per_step": sec_per_step, "scale": scale,
                                   "speeds": self.speeds})
            how = "" if measured else " (estimated)"
            print(f"time budget: {sec_per_step:.3f} s/step{how} -> stage steps scaled by {scale:.2f}: {self.stages}",
                  file=sys.stderr)
        return self.stages[idx][1]


def run_tokenizer(recipe: Recipe):
    """The tokenizer a run trains and exports with: `curriculum.init_model`'s where it starts from
    one (its embeddings were learned with it), else the shipped asset."""
    from omni.tokenizer import load_tokenizer

    init = recipe.curriculum.init_model
    return load_tokenizer(os.path.join(init, "tokenizer")) if init else load_tokenizer()


def init_state(recipe: Recipe) -> dict:
    """`curriculum.init_model`'s weights as the training model's state dict (float32), checked
    against the recipe's architecture: every parameter there, of the same shape."""
    from mdp.trainer import build_config
    from omni.model import OmniModel

    path = recipe.curriculum.init_model
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise FileNotFoundError(f"recipe curriculum.init_model: {path} is not a model directory (no config.json)")
    model = OmniModel.from_pretrained(path, dtype=torch.float32)
    want = OmniModel(build_config(recipe), init=False, tokenizer=model.tokenizer).state_dict()
    have = model.state_dict()
    wrong = [k for k, v in want.items() if k not in have or have[k].shape != v.shape]
    if wrong:
        raise ValueError(f"recipe curriculum.init_model: {path} is not a {recipe.flavor!r} model of this recipe "
                         f"(missing or other shapes: {wrong[:6]})")
    return {k: have[k] for k in want}


def _train_stage(r: Recipe, pack, codes, init: dict | None, resume: bool, stop_after: int | None,
                 deadline: float, plan: _Plan | None = None, idx: int = 0,
                 fit_deadline: float | None = None, shared: dict | None = None,
                 carry: tuple[str, int] | None = None) -> dict | None:
    """Train one stage; returns its final model state dict (None if stopped early:
    `stop_after` steps, or past `deadline` (time.monotonic), after a checkpoint).
    The plan is fitted to the time left until `fit_deadline` (default: `deadline`).
    `shared` keeps what later stages reuse (the device path's pack tables).
    `carry`: (checkpoint directory, steps) of the stages before this one, whose
    final optimizer and schedule state a stage started afresh continues."""
    fit_deadline = deadline if fit_deadline is None else fit_deadline
    from mdp.dims import device_for_rank

    rank0 = dist.get_rank() == 0
    if rank0 and not resume:  # afresh: neither an earlier run's steps nor its sample draw
        checkpoint.discard(r.checkpoint_dir)
        if os.path.isfile(r.data.manifest):
            os.remove(r.data.manifest)
    if rank0 and not os.path.isfile(r.data.manifest):
        stage = r.name.split(":")[-1]
        from mdp.curriculum.tables import load_bank

        bank = load_bank(r.curriculum.voice_bank) if r.curriculum.train_path == "device" else None
        counts = write_stage_manifest(pack, stage, r.data.manifest, r.curriculum.stage_samples, r.seed,
                                      r.curriculum.caption_weight, r.curriculum.transcribe_weight,
                                      sentences=bank.sentence_clips if bank is not None else 0,
                                      sentence_weight=r.curriculum.sentence_weight,
                                      tool_weight=r.curriculum.tool_weight, tools_declared=r.curriculum.tools_declared,
                                      typed_speech_weight=r.curriculum.typed_speech_weight,
                                      typed_video_weight=r.curriculum.typed_video_weight)
        print(f"stage {stage}: {r.curriculum.stage_samples} samples {counts}", file=sys.stderr)
    dist.barrier()
    last = checkpoint.latest_step(r.checkpoint_dir) if resume else None
    start = 0 if last is None else last + 1
    if plan is not None and plan.needs_fit(idx) and (est := plan.estimate(idx)) is not None:
        # size the stage now from an earlier timing (a resumed run must not find out
        # too late that its budget cannot hold the plan); its own timing refines it
        total = plan.fit(idx, start, agree(est, device_for_rank()),
                         agree(fit_deadline - time.monotonic() - plan.STAGE_OVERHEAD_S, device_for_rank()),
                         measured=False)
        r = dataclasses.replace(r, steps=total)
    if r.curriculum.train_path not in ("loader", "device"):
        raise ValueError(f"recipe curriculum.train_path must be loader or device, got {r.curriculum.train_path!r}")
    if r.curriculum.voice_bank and r.curriculum.train_path != "device":
        raise ValueError("recipe curriculum.voice_bank needs train_path=device "
                         "(the loader path hears the pack's clips only)")
    if not 0.0 <= r.curriculum.speech_swap < 1.0:
        raise ValueError(f"recipe curriculum.speech_swap is a share in [0, 1), got {r.curriculum.speech_swap}")
    if r.curriculum.text_audio_delay is not None and r.curriculum.text_audio_delay < 0:
        raise ValueError(f"recipe curriculum.text_audio_delay must be >= 0, got {r.curriculum.text_audio_delay}")
    if r.curriculum.speech_swap and r.curriculum.train_path != "device":
        raise ValueError("recipe curriculum.speech_swap needs train_path=device (the loader path swaps no replies)")
    materialize = None  # the device path's step records hold device values, read one step late
    if r.curriculum.train_path == "device":
        from mdp.curriculum.device import DeviceMiniTrainer, materialize

        trainer = DeviceMiniTrainer(r, device_for_rank())
    else:
        trainer = MiniTrainer(r, device_for_rank())
    _attach_speaker_augment(r, trainer)
    if init is not None:
        # the training model holds the serving model's parameters (`export` checks the same)
        missing, unexpected = trainer.model.load_state_dict(init, strict=False)
        lost = [k for k in missing if k in dict(trainer.model.named_parameters())]
        if unexpected or lost:
            raise RuntimeError(f"initial weights do not fit the training model: {(unexpected + lost)[:8]}")
    elif last is None:  # a model from scratch
        _prepare_encoders(r, trainer, pack, rank0)
    continuous = not r.curriculum.optimizer_per_stage
    offset = carry[1] if carry is not None else 0
    if continuous:  # the cosine spans every stage (the scheduler counts steps over all of them)
        trainer.lr_total = _lr_total(plan, offset + r.steps)
    extra = {"step": -1}
    if last is not None:
        checkpoint.load(r.checkpoint_dir, last, trainer.model, trainer.optimizer, trainer.scheduler, extra)
        start = last + 1
    elif continuous and carry is not None:
        _continue_optimizer(trainer, carry[0], offset, rank0)
    # a stage that will re-fit itself may grow up to the recipe's bound: the loader covers that range
    cap = plan.bounds[idx] if plan is not None and plan.needs_fit(idx) else r.steps
    device_path = r.curriculum.train_path == "device"
    if device_path:
        shared = {} if shared is None else shared
        trainer.attach_device_data(r.data.manifest, pack, codes, tables=shared.get("tables"))
        shared["tables"] = trainer.tables
    else:
        last_step = max(cap, r.steps) if stop_after is None else min(max(cap, r.steps), stop_after)
        trainer.attach_pack(r.data.manifest, pack, codes, r.data.workers, start, max(start, last_step))
    stage = r.name.split(":")[-1]
    probe = _probe(r, shared, trainer.device) if rank0 else None

    clock = {}  # time.monotonic() at this run's step TIMED[0] of the stage (the later re-fits' origin)

    def refit(loop: TrainLoop, step: int) -> None:
        """After the timed steps, then every REFIT_EVERY steps: this stage and the later ones
        re-fitted to the time left."""
        if plan is None:
            return
        since = step - loop.start
        if since == _Plan.TIMED[0] and plan.active:
            clock["t0"] = time.monotonic()
        sec = plan.speed(idx, since, loop.seconds[_Plan.TIMED[0] :], lambda: time.monotonic() - clock["t0"])
        if sec is None:
            return
        total = plan.fit(idx, step, agree(sec, trainer.device), agree(fit_deadline - time.monotonic(), trainer.device))
        trainer.r = dataclasses.replace(r, steps=total)  # the cosine schedule follows the new length
        if continuous:
            trainer.lr_total = _lr_total(plan, offset + total)
        loop.resize(total)

    def probe_step(loop: TrainLoop, step: int) -> None:
        if r.heldout.every > 0 and (step + 1) % r.heldout.every == 0 and step + 1 < loop.end:
            probe(trainer.model, stage, step, (offset + step + 1) * r.global_batch)

    out = r.output
    loop = TrainLoop(trainer, name=r.name, out_dir=out.out_dir, ckpt_dir=r.checkpoint_dir, start=start, steps=r.steps,
                     save_every=out.save_every, keep_checkpoints=out.keep_checkpoints, extra=extra,
                     log_every=out.log_every if device_path else 1, plot=out.plot, stop_after=stop_after,
                     deadline=deadline, lagged=materialize, save_at_end=continuous,
                     before_step=refit, after_step=probe_step if probe is not None else None)
    finished = loop.run()
    trainer.close_loader()
    too_long = (trainer.planner if device_path else trainer.dataset).too_long
    if rank0 and too_long:
        print(f"{r.name}: {too_long} samples over seq_len {r.seq_len} were replaced", file=sys.stderr)
    if not finished:
        return None
    end = loop.end
    if probe is not None and end > start:
        probe(trainer.model, stage, end - 1, (offset + end) * r.global_batch)
    return {k: v.detach().cpu() for k, v in trainer.model.state_dict().items()}


def _attach_speaker_augment(r: Recipe, trainer) -> None:
    """With `speaker_augment` > 0 the audio front end hears each training row as another
    speaker (the encoders' pre-training included); draws from the trainer's generator
    (reseeded every step on the device path: resumable)."""
    audio = trainer.model.encoders["audio"] if "audio" in trainer.model.encoders else None
    if audio is None or r.curriculum.speaker_augment <= 0:
        return
    from encoders.speaker_augment import SpeakerAugment

    gen = getattr(trainer, "gen", None)
    if gen is None:
        gen = torch.Generator(device=trainer.device)
        gen.manual_seed(r.seed * 7919 + 17)
    audio.frontend.augment = SpeakerAugment(warp=r.curriculum.speaker_augment, generator=gen)


def _probe(r: Recipe, shared: dict | None, device):
    """The run's held-out probe (built once, kept in `shared`), or None without `heldout.pack`."""
    if not r.heldout.pack:
        return None
    if shared is not None and "probe" in shared:
        return shared["probe"]
    from mdp.curriculum.heldout import HeldoutProbe

    probe = HeldoutProbe(r, os.path.dirname(r.output.out_dir), device)
    if shared is not None:
        shared["probe"] = probe
    return probe


def _lr_total(plan: _Plan | None, fallback: int) -> int:
    """Steps of the whole schedule: every stage of the plan (it may be re-fitted)."""
    return sum(n for _, n in plan.stages) if plan is not None else fallback


def _continue_optimizer(trainer, ckpt_dir: str, offset: int, rank0: bool) -> None:
    """Load the previous stage's final state (weights, AdamW moments, schedule position,
    RNG) into a stage that starts afresh. A previous stage without a checkpoint (run
    with `curriculum.optimizer_per_stage`, or its checkpoints removed) leaves the moments fresh
    but puts the schedule at step `offset` all the same."""
    step = checkpoint.latest_step(ckpt_dir)
    if step is not None:
        checkpoint.load(ckpt_dir, step, trainer.model, trainer.optimizer, trainer.scheduler, {})
        return
    if rank0:
        print(f"no checkpoint in {ckpt_dir}: a fresh optimizer at schedule step {offset}", file=sys.stderr)
    sched = trainer.scheduler
    sched.last_epoch = offset
    for g, base in zip(trainer.optimizer.param_groups, sched.base_lrs):
        g["lr"] = base * trainer._lr_factor(offset)


def _prepare_encoders(r: Recipe, trainer: "MiniTrainer", pack, rank0: bool) -> None:
    """Audio features normalized by the pack's statistics, then the encoders'
    pre-training (`pretrain.steps`), logged to out_dir/encoders.json."""
    from mdp.curriculum.pretrain import encoder_augment, encoder_steps, pretrain_audio, pretrain_vision

    encs = trainer.model.encoders
    if "audio" in encs:
        cmvn = encs["audio"].frontend.cmvn
        mean, istd = pack_cmvn(pack, encs["audio"].frontend, seed=r.seed)
        cmvn.mean.copy_(mean)
        cmvn.istd.copy_(istd)
    plan = encoder_steps(r.pretrain.steps)
    augment = encoder_augment(r.pretrain.augment)
    report = {}
    for name, steps in plan.items():
        if name not in encs or steps <= 0:
            continue
        t0 = time.perf_counter()  # a duration; the run's deadline clock is time.monotonic
        if name == "vision":
            losses, _ = pretrain_vision(encs["vision"], pack, steps, r.pretrain.batch, r.pretrain.lr, r.seed,
                                        trainer._autocast, augment="vision" in augment)
        else:
            from mdp.curriculum.tables import load_bank

            losses = pretrain_audio(encs["audio"], pack, run_tokenizer(r), steps, r.pretrain.batch, r.pretrain.lr,
                                    r.seed, trainer._autocast, augment="audio" in augment,
                                    bank=load_bank(r.curriculum.voice_bank))
        report[name] = {"steps": steps, "seconds": round(time.perf_counter() - t0, 1), "loss_first": losses[0],
                        "loss_last10": float(np.mean(losses[-10:])), "losses": losses}
        if rank0:
            print(f"encoder pre-training {name}: {steps} steps in {report[name]['seconds']} s, loss "
                  f"{losses[0]:.3f} -> {report[name]['loss_last10']:.3f}", file=sys.stderr)
    if rank0 and report:
        with open(os.path.join(os.path.dirname(r.output.out_dir), "encoders.json"), "w") as fh:
            json.dump(report, fh)


def run_curriculum(recipe: Recipe, resume: bool = True, stop_after: int | None = None) -> str | None:
    """Collective on every rank. Returns the exported model directory (None if
    `stop_after` ended a stage early)."""
    from omni.synth.pack import Pack

    if not recipe.curriculum.pack:
        raise ValueError("recipe field curriculum.pack is unset: pass --set curriculum.pack=PATH "
                         "(written by `omni data pack`)")
    pack = Pack(recipe.curriculum.pack)
    # the answers are tokenized with the codec the model is exported with (the pack's
    # tokens may come from an older codec) unless the recipe asks for the pack's
    codes = answer_code_table(pack, use_pack=recipe.curriculum.answer_codes == "pack",
                              phases=load_answer_phases(recipe.curriculum.answer_phases))
    plan = _Plan(recipe, resume)
    stages = plan.stages
    rank0 = dist.get_rank() == 0
    # a fine-tune starts its first stage from a trained model (a later stage from the one before it)
    state: dict | None = init_state(recipe) if recipe.curriculum.init_model else None
    deadline = deadline_after(recipe.budget.time_s)
    # the plan may be fitted to a longer budget than this run's, spent over resumed runs
    fit_deadline = deadline if (recipe.budget.plan_s or 0) <= 0 else time.monotonic() + recipe.budget.plan_s
    shared: dict = {}  # across stages: the device path's pack tables
    carry: tuple[str, int] | None = None  # the previous stage's checkpoints and the steps so far
    for n in range(len(stages)):
        name, steps = stages[n]
        r = _stage_recipe(recipe, name, steps)
        final = os.path.join(r.output.out_dir, "model.pt")
        if resume and os.path.isfile(os.path.join(r.output.out_dir, "done.json")):
            state = torch.load(final, map_location="cpu", weights_only=True)
            carry = (r.checkpoint_dir, sum(k for _, k in stages[: n + 1]))
            continue
        state = _train_stage(r, pack, codes, state, resume, stop_after, deadline, plan, n, fit_deadline, shared, carry)
        steps = stages[n][1]
        carry = (r.checkpoint_dir, sum(k for _, k in stages[: n + 1]))
        if state is None:
            if rank0:
                print(f"stopped in stage {name} (time budget or step limit); rerun the same command to resume",
                      file=sys.stderr)
            return None
        if rank0:
            torch.save(state, final + ".tmp")
            os.replace(final + ".tmp", final)
            write_json(os.path.join(r.output.out_dir, "done.json"), {"stage": name, "steps": steps})
        dist.barrier()
    out = recipe.output.export_dir or os.path.join(recipe.output.out_dir, "model")
    if rank0:
        export(recipe, state, out)
        if recipe.output.plot:
            plot_stages(recipe.output.out_dir, [n for n, _ in stages])
    dist.barrier()
    return out


def export(recipe: Recipe, state: dict, out_dir: str) -> None:
    """Write the trained weights as an OmniModel checkpoint directory."""
    from mdp.trainer import build_config
    from omni.model import OmniModel

    cfg = build_config(recipe)
    cfg.audio.dropout = 0.0
    silence = _pack_silence(recipe)
    if silence:  # the speech rows of a reply that says nothing were trained as this frame
        cfg.codec_silence_frame = tuple(silence)
    model = OmniModel(cfg, init=False, tokenizer=run_tokenizer(recipe))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected:
        raise RuntimeError(f"trained weights the serving model does not have: {unexpected[:8]}")
    params = {k for k, _ in model.named_parameters()}
    lost = [k for k in missing if k in params]
    if lost:
        raise RuntimeError(f"serving-model parameters the training did not produce: {lost[:8]}")
    # bf16 on disk (half the size; loading casts to the requested dtype)
    model.save_pretrained(out_dir, dtype=torch.bfloat16)
    print(f"exported {out_dir}", file=sys.stderr)


def _pack_silence(recipe: Recipe) -> list[int] | None:
    """The silent frame of the training pack's codec (`omni data codes`), if it has one."""
    from omni.synth.pack import Pack

    path = recipe.curriculum.pack
    return Pack(path).meta.get("silence_frame") if path and os.path.isfile(path) else None


def plot_stages(out_dir: str, stages: list[str]) -> None:
    """out_dir/loss.png: every stage's loss on one step axis, stages shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    logs = []
    for name in stages:
        path = os.path.join(out_dir, name, "loss.json")
        if os.path.isfile(path):
            with open(path) as fh:
                rows = json.load(fh)
            if rows:
                logs.append((name, rows))
    with_acc = any("text_acc" in r for _, rows in logs for r in rows)
    fig, axes = plt.subplots(2 if with_acc else 1, 1, figsize=(8, 6 if with_acc else 3.5), sharex=True, squeeze=False)
    ax = axes[0][0]
    offset = 0
    for name, rows in logs:
        steps = [offset + r["step"] for r in rows]
        line, = ax.plot(steps, [r["loss"] for r in rows], label=name)
        if with_acc:  # the reply's words right under teacher forcing: is the answer learned?
            acc = [(s, r["text_acc"]) for s, r in zip(steps, rows) if "text_acc" in r]
            axes[1][0].plot([s for s, _ in acc], [a for _, a in acc], color=line.get_color(), label=name)
        offset += rows[-1]["step"] + 1
        for a in axes[:, 0]:
            a.axvline(offset, color="grey", alpha=0.3)
    ax.set_ylabel("stage-1 loss (reply only)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    if with_acc:
        axes[1][0].set_ylabel("reply word accuracy")
        axes[1][0].set_ylim(0, 1)
        axes[1][0].grid(alpha=0.3)
    axes[-1][0].set_xlabel("step (stages in order)")
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "loss.png"), dpi=100)
    plt.close(fig)

"""The MDP trainer: builds the parallel model and runs one iteration in four phases.

1. Data: inner-DP rank 0 of every LLM DP group builds its rows (global batch
   split over DP, longest first) and broadcasts the token tensors to its inner
   ranks; label counts are summed over DP for a globally normalized loss.
2. Encoders: BalanceData spreads the modality items over the inner-DP ranks; each
   rank runs every encoder once (a dummy item where it has none, so the HSDP
   collectives line up); ModalityBridge gathers the outputs to inner rank 0.
3. LLM: stage 0 embeds (text + codec + encoder outputs) and the decoder runs,
   with FSDP2, expert parallelism and/or a 1F1B pipeline; loss on the last stage.
4. Encoders backward: the embedding gradient flows back through the embedding
   tables and, scattered by the ModalityBridge, into the encoders.

Then: expert-gradient sync, gradient clipping over all shards, AdamW, cosine LR,
and the aux-loss-free expert-bias update from DP-summed expert loads.
"""

from __future__ import annotations

import math
import os
from contextlib import nullcontext

import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor

from mdp.bridge import BalanceData, ModalityBridge
from mdp.data import Dataset, default_layout, shard_batch, stack
from mdp.dims import Meshes, ParallelDims
from mdp.ep import apply_expert_parallel, expert_parameters, sync_expert_grads
from mdp.loss import label_counts, pack_labels, stat_record
from mdp.model import OmniTrainModel
from mdp.parallelize import parallelize_encoders, parallelize_llm
from mdp.pipeline import build_schedule, split_stage
from mdp.recipes import Recipe
from omni.config import get_omni_config
from omni.llm.experts import grouped_mm_available


class _ScaleGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, s):  # type: ignore[override]
        ctx.s = s
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        return g * ctx.s, None


def build_config(recipe: Recipe):
    cfg = get_omni_config(recipe.flavor)
    cfg.audio.dropout = recipe.numerics.audio_dropout
    if recipe.curriculum.text_audio_delay is not None:  # the model trained (and exported) speaks that far behind
        cfg.text_audio_delay = recipe.curriculum.text_audio_delay
    return cfg


class Trainer:
    def __init__(self, recipe: Recipe, device: torch.device) -> None:
        self.r = r = recipe
        self.device = device
        self.world = dist.get_world_size()
        par = r.parallel
        self.dims = ParallelDims(self.world, par.dp, par.pp, par.cp, par.ep, par.enc_shard, par.microbatches).resolved()
        self.meshes = Meshes(self.dims, device.type)
        d = self.dims
        if r.global_batch % d.dp:
            raise ValueError(f"recipe global_batch={r.global_batch} is not divisible by dp={d.dp}")
        self.local_batch = r.global_batch // d.dp
        if d.pp > 1 and self.local_batch % d.pp_microbatches:
            raise ValueError(
                f"{self.local_batch} rows per DP rank cannot be split into {d.pp_microbatches} micro-batches"
            )
        if r.numerics.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=True)
            if device.type == "cuda":
                torch.backends.cudnn.benchmark = False
        self.bf16 = r.numerics.bf16 == "on" or (r.numerics.bf16 == "auto" and device.type == "cuda")

        self.cfg = build_config(r)
        mods = r.data.modalities
        torch.manual_seed(r.seed)  # identical initial weights on every rank and layout
        if device.type == "cuda":
            torch.cuda.manual_seed(r.seed)
        with torch.device(device):  # initialize where it will run (GPU init takes seconds, not minutes)
            model = OmniTrainModel(self.cfg, mods)
        backend = r.numerics.expert_backend
        if backend == "auto":
            # serving's policy (omni.llm.experts.choose_backend) for a call with gradients
            # on this device: grouped_mm where it runs in the dtype the experts compute in,
            # else bmm (the Triton decode kernels have no backward). The grouped_mm trash
            # row of zero-expert pairs is masked out of every gradient:
            # tests/mdp/test_expert_backend_grads.py holds both backends' parameter
            # gradients equal, with garbage planted in that row.
            dtype = torch.bfloat16 if self.bf16 else torch.float32
            backend = "grouped_mm" if grouped_mm_available(device, dtype) else "bmm"
        if backend not in ("grouped_mm", "bmm"):
            raise ValueError(f"recipe expert_backend must be auto, grouped_mm or bmm, got {backend!r}")
        model.llm.set_expert_backend(backend)
        self.expert_backend = backend
        self.pp_rank = self.meshes.pp_rank
        self.is_first, self.is_last = self.pp_rank == 0, self.pp_rank == d.pp - 1
        if d.pp > 1:
            split_stage(model, self.pp_rank, d.pp)
        model.to(device)
        for moe in model.moe_layers():
            moe.track_load = r.optim.bias_update_rate > 0
        layers = [model.llm.model.layers[i] for i in model.layer_ids()]
        if d.ep > 1:
            for layer in layers:
                apply_expert_parallel(layer, self.meshes.llm["ep"], overlap=r.parallel.ep_overlap)
        self.expert_params = expert_parameters(model)
        if r.numerics.compile:
            if backend == "grouped_mm" and not self.bf16:
                raise ValueError("recipe numerics.compile with grouped_mm experts needs numerics.bf16 (on, or auto on CUDA)")
            for layer in layers:  # before FSDP, as torchtitan orders them: the hooks stay outside the graph
                layer.compile(dynamic=True)  # rows change length from step to step
        if self.world > 1 and len(model.encoders):
            parallelize_encoders(model.encoders, self.meshes.encoders, recompute=r.parallel.encoder_recompute)
        if d.dp > 1:
            # leaf modules whose forward is called directly (FSDP2 unshards in forward hooks)
            heads = [model.llm.model.embed_tokens, model.llm.model.norm, model.llm.lm_head,
                     model.audio_embedding, model.audio_head]
            units = layers + [m for m in heads if any(True for _ in m.parameters())]
            parallelize_llm(units, self.meshes.dp, set(self.expert_params),
                            reshard_after_forward=r.parallel.fsdp_reshard_after_forward)
        self.model = model

        enc_params = {p for e in model.encoders.values() for p in e.parameters()}
        expert_set = set(self.expert_params)
        groups = {"encoders": [], "llm": [], "experts": []}
        for p in model.parameters():
            key = "experts" if p in expert_set else "encoders" if p in enc_params else "llm"
            groups[key].append(p)
        self.param_groups = groups
        self.optimizer = torch.optim.AdamW(
            [{"params": v, "name": k} for k, v in groups.items() if v],
            lr=r.optim.lr, betas=r.optim.betas, weight_decay=r.optim.weight_decay, **self._adamw_impl(),
        )
        self.lr_total: int | None = None  # steps the cosine spans (None: the recipe's steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)

        self.inner_group = self.meshes.group("inner_dp") if d.inner_dp > 1 else None
        self.bridge = ModalityBridge(self.inner_group, r.parallel.bridge_chunks)
        self.balance = BalanceData(self.inner_group)
        self._counts = torch.zeros(4, dtype=torch.float64)
        self.schedule = None
        if d.pp > 1:
            self.schedule = build_schedule(
                model, self.pp_rank, d.pp, d.pp_microbatches, device, self.meshes.group("pp"), self._pp_loss
            )
        self.dataset: Dataset | None = None

    def _adamw_impl(self) -> dict:
        """AdamW implementation flags: one fused kernel per parameter group on CUDA;
        torch's default on CPU."""
        return {"fused": True} if self.device.type == "cuda" else {}

    # --- schedule / loss -------------------------------------------------------

    def _lr_factor(self, step: int) -> float:
        o = self.r.optim
        if step < o.warmup_steps:
            return (step + 1) / o.warmup_steps
        # a schedule spanning several stages (mdp.curriculum.run) sets lr_total
        span = max(1, (self.lr_total or self.r.steps) - o.warmup_steps)
        t = min(1.0, (step - o.warmup_steps) / span)
        return (o.min_lr + 0.5 * (o.lr - o.min_lr) * (1 + math.cos(math.pi * t))) / o.lr

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16) if self.bf16 else nullcontext()

    def _pp_loss(self, h: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.model.loss_from_hidden(h, labels, self._counts, word_weight=self.r.loss.word_weight,
                                          answer_weight=self.r.loss.answer_weight) * self.dims.dp

    def attach_data(self, path: str) -> None:
        self.layout = default_layout(self.cfg.llm.pad_token_id, self.cfg.audio_pad_id)
        self.dataset = Dataset(path, self.layout, self.r.seq_len, self.model.num_tokens, self.model.cost)

    # --- one iteration -----------------------------------------------------------

    def _load(self, step: int) -> tuple[dict, list, list[int], list[float]]:
        """Phase 1: this DP rank's rows, its modality items (inner rank 0 only)."""
        ds, d = self.dataset, self.dims
        assert ds is not None, "attach_data first"
        idx = ds.step_indices(self.r.seed, step, self.r.global_batch)
        mine = shard_batch(ds, idx, d.dp)[self.meshes.dp_rank]
        inner0 = self.inner_group is None or dist.get_rank(self.inner_group) == 0
        payload = [None]
        items: list = []
        if inner0:
            samples = [ds.sample(i) for i in mine]
            batch = stack(samples)
            items = [it for s in samples for it in s.items]
            payload = [(batch, [it.kind for it in items], [it.num_tokens for it in items])]
        if self.inner_group is not None:
            dist.broadcast_object_list(payload, src=dist.get_global_rank(self.inner_group, 0), group=self.inner_group)
        batch, kinds, ntok = payload[0]
        return batch, items, kinds, ntok

    def _encode(self, plan, mine: list, kinds: list[str], ntok: list[int]) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Phase 2: run every encoder once on this rank; gather outputs to inner rank 0."""
        h = self.cfg.llm.hidden_size
        rank = 0 if self.inner_group is None else dist.get_rank(self.inner_group)
        ids = list(plan.assignment[rank])
        by_enc: dict[str, list[int]] = {}
        for j, i in enumerate(ids):
            by_enc.setdefault(self.model.encoder_for(kinds[i]), []).append(j)
        outs: dict[int, torch.Tensor] = {}
        anchor = torch.zeros((), device=self.device)
        with self._autocast():
            for name in self.model.encoders:  # fixed order: the same collectives on every rank
                js = by_enc.get(name, [])
                if js:
                    res = self.model.encode(name, [mine[j].data for j in js])
                    for j, y in zip(js, res):
                        outs[j] = y
                else:
                    y = self.model.encode(name, [self.model.dummy_item(name)])[0]
                    anchor = anchor + 0.0 * y.float().sum()
        local = torch.cat([outs[j].float() for j in range(len(ids))]) if ids else torch.zeros(0, h, device=self.device)
        local = local + anchor  # keeps dummy encoder passes in the graph
        if not any(ntok):  # nothing to bridge: keep every encoder pass reachable for backward
            return None, anchor + 0.0 * local.sum()
        if not local.requires_grad:
            local.requires_grad_()
        gathered = self.bridge.gather(local, plan, ntok)
        if self.dims.inner_dp > 1 and rank == 0:
            # encoders are HSDP-averaged over all ranks, the LLM over dp only
            gathered = _ScaleGrad.apply(gathered, self.dims.inner_dp)
        return gathered, anchor

    def step(self, step: int, grad_hook=None) -> dict:
        """One iteration; `grad_hook(model)` sees the synchronized, unclipped gradients."""
        d, model = self.dims, self.model
        batch, items, kinds, ntok = self._load(step)
        counts = label_counts(batch).to(self.device)
        if d.dp > 1:
            dist.all_reduce(counts, group=self.meshes.group("dp"))
        self._counts = counts
        root = self._inner_rank() == 0
        plan, mine = self.balance.distribute(items if root else None, [it.cost for it in items] if root else None)
        # encoders run only if some rank has media: a text-only step costs no encoder work
        has_media = torch.tensor([float(len(ntok))], device=self.device)
        if self.world > 1:
            dist.all_reduce(has_media, op=dist.ReduceOp.MAX)
        if has_media.item() > 0:
            gathered, anchor = self._encode(plan, mine, kinds, ntok)
        else:
            gathered, anchor = None, torch.zeros((), device=self.device)

        labels = pack_labels(batch).to(self.device)
        roots: list[torch.Tensor] = [anchor]
        grads: list[torch.Tensor] = [torch.ones_like(anchor)]
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        stats: list[torch.Tensor] = []  # per-term losses + text accuracy (without pipeline stages)
        x = x_leaf = None
        if self.is_first:
            ids, codec = batch["ids"].to(self.device), batch["codec"].to(self.device)
            placeholder = (ids == self.layout.image_pad_id) | (ids == self.layout.audio_pad_id)
            with self._autocast():
                x = model.embed_placeholders(ids, codec, gathered, placeholder)
            x_leaf = x.detach().requires_grad_()
        if self.schedule is None:
            with self._autocast():
                h = model.run_layers(x_leaf, final_norm=True)
                w = self.r.loss
                loss = model.loss_from_hidden(h, labels, counts, stats, w.word_weight, w.answer_weight) * d.dp
            loss.backward()
            loss_sum += loss.detach().double()
        else:
            losses: list[torch.Tensor] = []
            with self._autocast():
                if self.is_first:
                    self.schedule.step(x_leaf)
                elif self.is_last:
                    self.schedule.step(target=labels, losses=losses)
                else:
                    self.schedule.step()
            for l in losses:
                loss_sum += l.detach().double()
        # phase 4: embedding + encoder backward (bridge scatter on the way)
        if self.is_first:
            roots.append(x)
            grads.append(x_leaf.grad)
        elif gathered is not None:
            roots.append(gathered)
            grads.append(torch.zeros_like(gathered))
        pairs = [(t, g) for t, g in zip(roots, grads) if t.requires_grad]
        if pairs:
            torch.autograd.backward([t for t, _ in pairs], [g for _, g in pairs])

        sync_expert_grads(self.expert_params, self._dp_rest_group(), d.dp)
        if grad_hook is not None:
            grad_hook(model)
        gnorm = self.clip_grads(self.r.optim.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.update_expert_bias()

        loss_sum = loss_sum / d.dp
        if d.pp > 1:
            dist.all_reduce(loss_sum, group=self.meshes.group("pp"))
        if d.dp > 1:
            dist.all_reduce(loss_sum, group=self.meshes.group("dp"))
        rec = {"step": step, "loss": float(loss_sum), "grad_norm": gnorm,
               "lr": self.optimizer.param_groups[0]["lr"], "llm_tokens": int(batch["ids"].numel()) * d.dp}
        if stats:  # shares of the global means and local counts: both sum over DP
            part = stats[0]
            if d.dp > 1:
                dist.all_reduce(part, group=self.meshes.group("dp"))
            rec.update(stat_record(part))
        return rec

    def _inner_rank(self) -> int:
        return 0 if self.inner_group is None else dist.get_rank(self.inner_group)

    def _dp_rest_group(self):
        return self.meshes.llm.get_group("dp_rest") if self.dims.dp_rest > 1 else None

    # --- clipping / balancing -------------------------------------------------------

    @torch.no_grad()
    def clip_grads(self, max_norm: float) -> float:
        """Global L2 norm over every shard of every parameter, then clip."""
        d = self.dims
        sq = {}
        for key, params in self.param_groups.items():
            local = [p.grad.to_local() if isinstance(p.grad, DTensor) else p.grad for p in params if p.grad is not None]
            # one fused kernel per group instead of ~4 launches per parameter
            norms = torch._foreach_norm(local) if local else []
            sq[key] = (torch.stack(norms).double().pow(2).sum() if norms
                       else torch.zeros((), dtype=torch.float64, device=self.device))
        if self.world > 1 and len(self.param_groups["encoders"]) and self.meshes.dims.enc_shard > 1:
            dist.all_reduce(sq["encoders"], group=self.meshes.encoders.get_group("shard"))
        if d.dp > 1:
            dist.all_reduce(sq["llm"], group=self.meshes.group("dp"))
        if d.ep > 1:
            dist.all_reduce(sq["experts"], group=self.meshes.group("ep"))
        llm = sq["llm"] + sq["experts"]
        if d.pp > 1:
            dist.all_reduce(llm, group=self.meshes.group("pp"))
        total = float((llm + sq["encoders"]).sqrt())
        if max_norm > 0 and total > max_norm:
            coef = max_norm / (total + 1e-6)
            grads = [p.grad.to_local() if isinstance(p.grad, DTensor) else p.grad
                     for p in self.model.parameters() if p.grad is not None]
            torch._foreach_mul_(grads, coef)
        return total

    @torch.no_grad()
    def clip_grads_async(self, max_norm: float) -> torch.Tensor:
        """`clip_grads` for one process without reading the norm back: the scale
        min(1, max_norm / norm) is applied as a device scalar. Returns the norm (a
        device tensor, float64)."""
        if self.world > 1:
            raise ValueError("clip_grads_async is for a single process; use clip_grads")
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        if not grads:
            return torch.zeros((), dtype=torch.float64, device=self.device)
        total = torch.stack(torch._foreach_norm(grads)).double().pow(2).sum().sqrt()
        if max_norm > 0:
            torch._foreach_mul_(grads, (max_norm / (total + 1e-6)).clamp(max=1.0).float())
        return total

    @torch.no_grad()
    def update_expert_bias(self) -> None:
        if self.r.optim.bias_update_rate <= 0:
            return
        for moe in self.model.moe_layers():
            load = moe.load_acc.clone()
            if self.dims.dp > 1:
                dist.all_reduce(load, group=self.meshes.group("dp"))
            moe.router.update_correction_bias(load, self.r.optim.bias_update_rate)
            moe.reset_stats()

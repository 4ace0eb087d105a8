"""The default model's training step with batches built on the device (recipe
`curriculum.train_path=device`), next to the loader path of `mdp.curriculum.run.MiniTrainer`.

Why: in the loader path a step waits on worker processes that build every sample
in Python and hand ~150 MB of float32 patches per dialogue step to the main process,
rows are padded to the stage length (23-32 % filled), and the step reads device
values back about nine times (expert capacity, placeholder count and positions,
"has media", the gradient norm, the loss), each a stall of the launch queue.

Here a step is:

    host     `StepPlanner.plan`: vectorized numpy over the rows (draws, segment
             lengths, distinct vision units, audio rows); rows of `bucket_window`
             steps are length-bucketed and trimmed to their batch
    copy     the plan's integer / float tables, two non-blocking copies
    device   `mdp.curriculum.build`: token rows, labels and feature indices by
             gathers; microphone augmentation; patches from the pack's uint8 frames
    model    encoders on the distinct units (one [U, P] ViT batch: every unit of a
             pack has one grid) / audio rows, input embedding as one gather from
             the encoder outputs, LLM, loss, one backward
    update   gradient clipping by a device scalar, fused AdamW (foreach on CPU),
             the expert-bias update

and nothing in it reads a device value on the host: the step's record holds device
tensors, read (`materialize`) when it is logged, after the next step is launched.
The experts run the sort-based grouped GEMM (no capacity read back) in the autocast
dtype when a probe finds it sync-free and equal to the bmm path on this device, and
the MoE load statistics are counted without the host scalar copy of `MoE.route`.
Shapes change from step to step (rows trimmed to their batch, distinct units, audio
rows), so nothing per shape may be costly: the ViT takes the loader path's flash
kernel, SDPA is kept off cuDNN attention (`ATTENTION`), and the trimmed lengths fall
in a few buckets (`mdp.curriculum.plan.bucket_length`).

Single process only (world size 1): the recipe trains on one GPU.
"""

from __future__ import annotations

import functools
import sys
from contextlib import nullcontext

import torch
import torch.nn.functional as F

from mdp.data import CAT_AUDIO_TEXT, CAT_TEXT, IGNORE
from mdp.loss import pack_labels, stat_record
from mdp.curriculum.run import MiniTrainer, run_tokenizer
from mdp.curriculum.build import DevicePlan, build_audio, build_patches, expand_segments, to_device
from mdp.curriculum.plan import LENGTHS_PER_OCTAVE, StepPlan, StepPlanner
from mdp.curriculum.tables import PackTables, load_bank
from omni.embedding import embed_rows


def label_counts_device(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """`mdp.loss.label_counts` as a device tensor (float64 [4], TERMS order)."""
    audio_valid = batch["audio_labels"] != IGNORE
    first = batch["first_audio"] & audio_valid[..., 0]
    cat = batch["text_cat"]
    return torch.stack([(cat == CAT_TEXT).sum(), audio_valid.sum(), (cat == CAT_AUDIO_TEXT).sum(),
                        first.sum()]).double()


@torch.no_grad()
def _count_load(moe, router, args, routing) -> None:
    """MoE load statistics of one routing (what `MoE.route` accumulates), with the
    token count made on the device instead of copied from the host. A layer run again in
    the backward (`recompute_positions`) routes the same tokens again: not counted twice."""
    if getattr(moe, "load_paused", False):
        return
    moe.load_acc += routing.expert_load().to(moe.load_acc.dtype)
    n_real = routing.real_experts_per_token().float()
    total = n_real.sum()
    moe.real_per_token_acc += torch.stack([total, torch.full_like(total, n_real.numel())])


def grouped_mm_ok(model, device: torch.device, autocast) -> bool:
    """Whether the sort-based grouped GEMM expert path runs here, under the training
    autocast, without a device sync (on CUDA a sync raises here) and with the bmm
    path's outputs and input gradients (a small probe)."""
    experts = model.llm.model.layers[model.layer_ids()[0]].mlp.experts
    if experts is None:
        return False
    gen = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(64, experts.hidden, generator=gen).to(device)
    idx = torch.randint(0, experts.num_experts + 2, (64, 2), generator=gen).to(device)
    w = torch.rand(64, 2, generator=gen).to(device)
    outs = []
    try:
        for impl in ("bmm", "grouped_mm"):
            experts.impl = impl
            xi = x.clone().requires_grad_()
            if device.type == "cuda" and impl == "grouped_mm":
                torch.cuda.synchronize(device)
                torch.cuda.set_sync_debug_mode("error")
            try:
                with autocast():
                    y = experts(xi, idx, w)
                y.float().square().sum().backward()
            finally:
                if device.type == "cuda":
                    torch.cuda.set_sync_debug_mode(0)
            outs.append((y.detach().float(), xi.grad.float()))
            experts.zero_grad(set_to_none=True)
    except Exception:  # not built for this device / dtype, or it syncs
        return False
    finally:
        experts.impl = "auto"
    (y0, g0), (y1, g1) = outs
    tol = 5e-2 if device.type == "cuda" else 1e-4
    return bool(torch.allclose(y0, y1, rtol=tol, atol=tol) and torch.allclose(g0, g1, rtol=tol, atol=tol))


class DeviceMiniTrainer(MiniTrainer):
    """`MiniTrainer` whose steps build their batches on the device (see the module doc)."""

    def __init__(self, recipe, device: torch.device) -> None:
        super().__init__(recipe, device)
        if self.world > 1:
            raise ValueError("train_path=device trains in one process (world size 1); use train_path=loader")
        # the expert dispatch without a host read of the largest expert group
        self.expert_backend = "grouped_mm" if grouped_mm_ok(self.model, device, self._autocast) else "bmm"
        self.model.llm.set_expert_backend(self.expert_backend)
        for moe in self.model.moe_layers():
            if moe.track_load:
                moe.track_load = False
                moe.router.register_forward_hook(functools.partial(_count_load, moe))
        self.gen = torch.Generator(device=device)
        self.tables: PackTables | None = None
        self.planner: StepPlanner | None = None
        self.augment = True
        self.attention = self.ATTENTION
        self.per_octave = LENGTHS_PER_OCTAVE  # the planner's length buckets (set before attach_device_data)
        self.spoken_audio_heads = True  # the audio heads on the positions with audio labels only (`audio_rows`)
        self._graph_steps = False  # compiled regions replay CUDA graphs (`compile_regions`)

    # SDPA backends a step may use (in torch's order of preference). Not cuDNN: where
    # torch prefers it (sm90 / sm100 with a recent cuDNN) it builds an execution plan,
    # milliseconds of host time, for each new (batch, length) of a call and its
    # backward, and the trimmed rows bring new lengths for many steps (the loader
    # path's fixed rows build once). Empty: torch's own choice.
    ATTENTION = ("flash", "efficient", "math")

    def _attention(self):
        if not self.attention:
            return nullcontext()
        from torch.nn.attention import SDPBackend, sdpa_kernel

        kinds = {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
                 "math": SDPBackend.MATH, "cudnn": SDPBackend.CUDNN_ATTENTION}
        return sdpa_kernel([kinds[k] for k in self.attention])

    COMPILE_REGIONS = ("layers", "heads", "audio", "vision")

    def compile_regions(self, regions: str, mode: str | None = None) -> None:
        """torch.compile (dynamic shapes, in place: the state dict keeps its keys) of
        "layers" (each decoder layer), "heads" (the audio heads), "audio" (the DFSMN
        layers), "vision" (the ViT layers, as `forward_dense` calls them),
        comma-separated; `mode`: torch.compile's ("reduce-overhead": CUDA graphs, one
        per shape). A hook to measure on the GPU: the eager step launches
        thousands of small kernels; on a 2-core CPU compiling the decoder layers took
        ~100 s, made one graph and no graph break, and changed nothing in speed. The
        layers of a region share one cache of compiled code: "audio" recompiles for
        each DFSMN layer (its context sizes are static ints) past dynamo's limit."""
        names = [r for r in regions.split(",") if r]
        unknown = set(names) - set(self.COMPILE_REGIONS)
        if unknown:
            raise ValueError(f"unknown compile regions {sorted(unknown)}; known: {self.COMPILE_REGIONS}")
        mods = []
        if "layers" in names:
            mods += [self.model.llm.model.layers[i] for i in self.model.layer_ids()]
        if "heads" in names:
            mods.append(self.model.audio_head)
        if "audio" in names and "audio" in self.model.encoders:
            mods += list(self.model.encoders["audio"].encoder.fsmn_layers)
        if "vision" in names and "vision" in self.model.encoders:
            mods += list(self.model.encoders["vision"].vit.encoder.layers)
        for m in mods:
            m.compile(dynamic=True, mode=mode)
        # CUDA graph trees: a step's outputs may be overwritten once the next step begins
        self._graph_steps = bool(mods) and mode in ("reduce-overhead", "max-autotune")

    def _adamw_impl(self) -> dict:
        # one fused kernel per parameter group on CUDA; CPU keeps the multi-tensor path
        return {"fused": True} if self.device.type == "cuda" else {"foreach": True}

    def attach_device_data(self, manifest: str, pack, codes, tables: PackTables | None = None, window: int | None = None,
                           augment: bool = True, jitter: bool = True) -> None:
        """The stage's records and the pack tables (built once per run; pass them in to reuse)."""
        from mdp.curriculum.data import read_stage_manifest

        if tables is None:
            tables = PackTables(pack, self.cfg, run_tokenizer(self.r), codes, self.device,
                                bank=load_bank(self.r.curriculum.voice_bank))
        self.tables, self.augment = tables, augment
        records = read_stage_manifest(manifest, len(pack), pack.num_scenes, len(pack.answer_offset) - 1)
        window = self.r.curriculum.bucket_window if window is None else window
        self.planner = StepPlanner(tables, records, self.r.seed, self.r.global_batch, self.r.seq_len, window,
                                   augment, jitter, self.per_octave, self.r.curriculum.speech_swap)

    def close_loader(self) -> None:
        pass

    # --- the step, in phases (a benchmark times them one by one) -----------------------

    def data(self, plan: StepPlan) -> tuple[DevicePlan, dict[str, torch.Tensor]]:
        """The plan's tables on the device and the token rows expanded there, with the flat
        positions that have audio labels (`audio_rows`: the audio head runs on those only)."""
        p = to_device(self.tables, plan, self.device)
        batch = expand_segments(self.tables, p["seg"], plan.T)
        if self.spoken_audio_heads:
            batch["audio_rows"] = audio_rows(batch, plan.audio_labels)
        return p, batch

    def encoders(self, plan: StepPlan, p: DevicePlan) -> torch.Tensor:
        """The feature table [1 + U * tokens + Ba * F, H] (row 0 zero) the placeholders read."""
        h = self.cfg.llm.hidden_size
        parts = [torch.zeros(1, h, device=self.device)]
        encs = self.model.encoders
        with self._autocast():
            if len(plan.unit_frames):  # every unit of a pack has one grid: a dense [U, P] batch
                vis, grid = encs["vision"], self.tables.grid
                x = vis.vit.forward_dense(build_patches(self.tables, p["units"]), grid)
                parts.append(vis.projector(x, [grid]).float())
            if len(plan.audio_rows):
                self.gen.manual_seed(self.r.seed * 1_000_003 + plan.step)  # resumable noise
                pcm = build_audio(self.tables, p, self.augment, self.gen if self.augment else None)
                y, _ = encs["audio"](pcm, p["ns"], pad_to_buffer=True)
                assert y.shape[1] == plan.F, (y.shape, plan.F)  # the planner's feature rows assume this stride
                parts.append(y.float().reshape(-1, h))
        return torch.cat(parts)

    def embed_inputs(self, batch: dict[str, torch.Tensor], feats: torch.Tensor) -> torch.Tensor:
        """The LLM's input rows: text + codec embeddings, placeholders replaced by their
        encoder row (one gather; index 0 is a zero row that gets no gradient)."""
        model = self.model
        with self._autocast():
            e = embed_rows(model.llm.model.embed_tokens, model.audio_embedding, batch["ids"], batch["codec"],
                           self.cfg.llm.pad_token_id)
            fill = F.embedding(batch["feat"], feats, padding_idx=0).to(e.dtype)
            return torch.where((batch["feat"] > 0)[..., None], fill, e)

    def recomputes(self, rows: int, length: int) -> bool:
        """Whether a step of `rows` x `length` LLM positions runs its decoder layers again in
        the backward (recipe `parallel.recompute_positions`; a host decision from the plan)."""
        limit = self.r.parallel.recompute_positions
        return 0 < limit < rows * length

    def forward_loss(self, batch: dict[str, torch.Tensor], feats: torch.Tensor,
                     stats: list | None = None) -> torch.Tensor:
        x = self.embed_inputs(batch, feats)
        with self._autocast():
            h = self.model.run_layers(x, final_norm=True, recompute=self.recomputes(*x.shape[:2]))
            return self.model.loss_from_hidden(h, pack_labels(batch), label_counts_device(batch), stats,
                                               self.r.loss.word_weight, self.r.loss.answer_weight,
                                               batch.get("audio_rows"))

    def llm(self, batch: dict[str, torch.Tensor], feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Embedding, decoder, loss and the one backward (LLM and encoders). Returns
        the loss and the loss statistics (device tensors)."""
        stats: list[torch.Tensor] = []
        loss = self.forward_loss(batch, feats, stats)
        moes = self.model.moe_layers()
        for moe in moes:  # a recomputed layer's routing was counted in the forward
            moe.load_paused = True
        try:
            loss.backward()
        finally:
            for moe in moes:
                moe.load_paused = False
        return loss.detach(), stats[0]

    def update(self) -> torch.Tensor:
        gnorm = self.clip_grads_async(self.r.optim.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.update_expert_bias()
        return gnorm

    def step(self, step: int, grad_hook=None) -> dict:
        """One iteration; the record's values stay on the device (see `materialize`)."""
        return self.run(self.planner.plan(step), grad_hook)

    def run(self, plan: StepPlan, grad_hook=None) -> dict:
        """The step of a plan (`StepPlanner.plan`, host work only): this part issues
        device work and reads nothing back."""
        if self._graph_steps:
            torch.compiler.cudagraph_mark_step_begin()
        with self._attention():
            p, batch = self.data(plan)
            feats = self.encoders(plan, p)
            loss, stats = self.llm(batch, feats)
        if grad_hook is not None:
            grad_hook(self.model)
        lr = self.optimizer.param_groups[0]["lr"]
        gnorm = self.update()
        return {"step": plan.step, "loss": loss, "grad_norm": gnorm, "lr": lr, "llm_tokens": int(batch["ids"].numel()),
                "samples": len(plan.rows.index), "tokens": plan.tokens, "stats": stats}


AUDIO_ROWS_MULTIPLE = 256  # the audio heads' row count is rounded up to this (few shapes to compile)


def audio_rows(batch: dict[str, torch.Tensor], n: int, multiple: int = AUDIO_ROWS_MULTIPLE) -> torch.Tensor:
    """int64: the flat positions (b * T + t) whose audio labels are set, in order, then
    position 0 up to a multiple of `multiple` (a row's first position never has audio labels:
    the padding adds nothing to the loss). `n` comes from the host's plan
    (`StepPlan.audio_labels`): a fixed-size gather reads no count back. Most positions of a
    step are the user's turn, whose audio head logits (4 x 1,056 a position, the largest
    per-position tensor of the mini model) no label reads."""
    spoken = batch["audio_labels"][..., 0] != IGNORE
    size = min(spoken.numel(), -(-n // multiple) * multiple)
    return torch.nonzero_static(spoken.flatten(), size=size, fill_value=0).squeeze(1)


def materialize(rec: dict) -> dict:
    """A step record with its device values read (one wait for that step's end)."""
    out = {k: v for k, v in rec.items() if k != "stats"}
    out["loss"], out["grad_norm"] = float(rec["loss"]), float(rec["grad_norm"])
    if "stats" in rec:
        out.update(stat_record(rec["stats"]))
    return out


class HostReads:
    """Counts (or, with `strict`, forbids) reads of tensor values on the host made by
    project code inside the context: `Tensor.item`, `tolist`, `numpy`, `cpu`,
    `nonzero`, `torch.nonzero` and the conversions `bool`, `int`, `float`, `index`.
    On a GPU each is a device sync. Calls from torch's optimizers are let through:
    their step counters are host tensors unless fused. On CUDA,
    `torch.cuda.set_sync_debug_mode` sees the syncs these patches cannot (blocking
    host-to-device copies); `bench/train_throughput.py` counts both."""

    NAMES = ("item", "tolist", "numpy", "cpu", "nonzero", "__bool__", "__int__", "__float__", "__index__")

    def __init__(self, strict: bool = False) -> None:
        self.strict = strict
        self.calls: list[str] = []
        self.paused = 0

    def pause(self, fn):
        """`fn` whose calls are not watched (host-only work on CPU tensors, e.g. a
        step's plan: on a GPU machine those tensors never leave the host)."""
        def run(*a, **k):
            self.paused += 1
            try:
                return fn(*a, **k)
            finally:
                self.paused -= 1

        return run

    def _seen(self, what: str, frame) -> None:
        if self.paused:
            return
        where = f"{what} at {frame.f_code.co_filename}:{frame.f_lineno}"
        if self.strict:
            raise HostReadError(where)
        self.calls.append(where)

    def __enter__(self) -> "HostReads":
        import os

        optim = os.path.join(os.path.dirname(torch.__file__), "optim")
        self.saved = {n: getattr(torch.Tensor, n) for n in self.NAMES}
        for name, orig in self.saved.items():
            def guard(t, *a, _orig=orig, _name=name, **k):
                frame = sys._getframe(1)
                if not frame.f_code.co_filename.startswith(optim):
                    self._seen(f"Tensor.{_name}", frame)
                return _orig(t, *a, **k)

            setattr(torch.Tensor, name, guard)
        self.nonzero = torch.nonzero

        def nonzero(*a, **k):
            self._seen("torch.nonzero", sys._getframe(1))
            return self.nonzero(*a, **k)

        torch.nonzero = nonzero
        return self

    def __exit__(self, *exc) -> bool:
        for name, orig in self.saved.items():
            setattr(torch.Tensor, name, orig)
        torch.nonzero = self.nonzero
        return False


class HostReadError(AssertionError):
    pass

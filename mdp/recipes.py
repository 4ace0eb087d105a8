"""Training recipes: every knob of a run in one typed dataclass, plus named presets.

`debug` trains the debug flavor on CPU with gloo (seconds per step; what the tests
use); `a1b` trains the 1B-active flavor on GPUs with bf16 autocast; `omni-mini`
trains the default model (`mini` flavor) on a synthetic-world pack in stages
(`mdp.curriculum.run`); `omni-mini-smoke` is its few-step CPU version. Any field can
be overridden from the command line with `--set field=value`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

ANSWER_WEIGHT = 4.0  # the default `answer_weight` (README: the answer's share of the loss weight)


@dataclass
class Recipe:
    name: str = "debug"
    flavor: str = "debug"  # omni flavor (omni.config)
    manifest: str = ""  # JSON-lines manifest; empty: synthesize one into out_dir/data
    synthetic_samples: int = 16
    modalities: str = "image,video,audio"  # kinds to synthesize; the encoders they need are built
    steps: int = 4
    global_batch: int = 4  # rows (samples) per step over all DP ranks
    seq_len: int = 64
    lr: float = 3e-4
    min_lr: float = 3e-5
    warmup_steps: int = 1
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    word_weight: float = 1.0  # loss weight of the reply's words (and end) over its text pads (mdp.loss.stage1_loss)
    # loss weight of the words (and end) of a question's answer, on top of word_weight: in
    # the omni-mini mixes they would otherwise carry ~2-10 % of the loss weight (README)
    answer_weight: float = ANSWER_WEIGHT
    seed: int = 0
    # parallelism (see mdp.dims.ParallelDims)
    dp: int = -1
    pp: int = 1
    cp: int = 1
    ep: int = 1
    enc_shard: int = -1
    microbatches: int = 0  # pipeline micro-batches per step (0: = pp)
    bridge_chunks: int = 1  # ModalityBridge chunks
    ep_overlap: bool = True
    encoder_recompute: bool = True
    fsdp_reshard_after_forward: bool = True  # False: ZeRO-2 style (params stay gathered)
    # numerics
    bf16: str = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU; "on" | "off"
    deterministic: bool = True
    expert_backend: str = "auto"  # single-device experts: auto (as serving: grouped_mm where it runs, else bmm) | bmm | grouped_mm
    bias_update_rate: float = 1e-3  # aux-loss-free expert-bias step (0 disables)
    audio_dropout: float = 0.0  # audio encoder dropout during training
    # outputs
    out_dir: str = "runs/debug"
    ckpt_dir: str = ""  # empty: out_dir/checkpoints
    save_every: int = 2
    keep_checkpoints: int = 2
    log_every: int = 1
    plot: bool = True
    # staged curricula (mdp.curriculum.run): empty curriculum = one plain run over `manifest`
    curriculum: str = ""  # "omni-mini"
    pack: str = ""  # `omni data pack` output the stages are drawn from
    stage_steps: str = ""  # "speech:300,vision:300,dialogue:600"
    stage_seq_len: str = ""  # "speech:176,dialogue:384" (stages not named: seq_len)
    stage_samples: int = 20000  # manifest lines written per stage
    encoder_steps: str = ""  # "vision:600,audio:600": encoder pre-training before the first stage (mdp.curriculum.pretrain)
    encoder_batch: int = 64
    encoder_lr: float = 2e-3
    encoder_augment: str = ""  # encoders pre-trained on augmented views: "vision", "audio" or "vision,audio" (README)
    caption_weight: float = -1.0  # relative weight of captions in the stage mixes (< 0: mdp.curriculum.stages.STAGES)
    transcribe_weight: float = -1.0  # the same for transcriptions of spoken questions
    data_workers: int = 0  # DataLoader processes building samples ahead of the GPU
    main_threads: int = 0  # torch CPU threads of the training process (0: 1 on CUDA with data_workers, else default)
    export_dir: str = ""  # OmniModel checkpoint written at the end (empty: out_dir/model)
    time_budget_s: float = 0.0  # > 0: checkpoint and stop after this long; rerun to resume
    plan_budget_s: float = 0.0  # > 0 (with fit_budget): fit the stages to this much time, spent over resumed runs
    answer_codes: str = "codec"  # "codec": tokenize the pack's answer audio with the shipped codec; "pack": its tokens
    fit_budget: bool = False  # with time_budget_s: shrink the stages' steps to fit it (after timing a few)
    train_path: str = "loader"  # omni-mini steps: "loader" (DataLoader workers) | "device" (mdp.curriculum.device)
    bucket_window: int = 8  # train_path=device: rows of this many steps are length-bucketed together (1: off)
    # omni-mini: False carries one AdamW state and one LR schedule (warm-up once, cosine
    # over all stages' steps) from stage to stage; True restarts both in every stage
    optimizer_per_stage: bool = False
    # audio features heard as other speakers while training (encoders.speaker_augment):
    # the largest frequency warp (0: off); tilt and masks come with it
    speaker_augment: float = 0.0
    # omni-mini, train_path=device: more renderings of the pack's questions (`omni data
    # voice-bank`); every draw of a spoken question hears one of them or the pack's own
    voice_bank: str = ""
    # omni-mini: held-out spoken questions answered during training (mdp.curriculum.heldout)
    eval_pack: str = ""  # a held-out pack (`omni data default` writes runs/data/heldout.pack.npz); empty: no probe
    eval_every: int = 0  # probe every this many steps of a stage and at each stage's end (0: stage ends only)
    eval_samples: int = 120  # held-out questions per probe (an even stride over the pack)

    def override(self, pairs: list[str]) -> "Recipe":
        """Apply `field=value` strings (types follow the field's default)."""
        fields = {f.name: f for f in dataclasses.fields(self)}
        out = dataclasses.replace(self)
        for pair in pairs:
            if "=" not in pair:
                raise ValueError(f"--set expects field=value, got {pair!r}")
            key, raw = pair.split("=", 1)
            if key not in fields:
                raise ValueError(f"unknown recipe field {key!r}; known: {sorted(fields)}")
            cur = getattr(out, key)
            if isinstance(cur, bool):
                if raw.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                    raise ValueError(f"recipe field {key} is a bool, got {raw!r}")
                val = raw.lower() in ("1", "true", "yes", "on")
            elif isinstance(cur, int):
                val = int(raw)
            elif isinstance(cur, float):
                val = float(raw)
            else:
                val = raw
            setattr(out, key, val)
        return out

    @property
    def checkpoint_dir(self) -> str:
        import os

        return self.ckpt_dir or os.path.join(self.out_dir, "checkpoints")


RECIPES = {
    "debug": Recipe(),
    "a1b": Recipe(
        name="a1b",
        flavor="a1b",
        synthetic_samples=256,
        steps=200,
        global_batch=16,
        seq_len=4096,
        lr=3e-4,
        min_lr=3e-5,
        warmup_steps=20,
        out_dir="runs/a1b",
        save_every=100,
        bridge_chunks=4,
        deterministic=False,
        log_every=10,
    ),
    "omni-mini": Recipe(
        name="omni-mini",
        flavor="mini",
        curriculum="omni-mini",
        pack="runs/data/train.pack.npz",
        stage_steps="speech:1500,vision:2000,dialogue:6000",  # upper bounds: fit_budget shrinks them
        encoder_steps="vision:600,audio:600",
        stage_samples=100000,
        modalities="image,video,audio",
        # the mini model is launch-bound (thousands of small kernels a step): on the
        # device path a dialogue step at 768 rows costs ~1.5x one at 192 (236 vs 154 ms)
        # and carries 4x the samples (bench/results/train_throughput_h200_run2.json)
        train_path="device",
        global_batch=768,
        seq_len=384,
        stage_seq_len="speech:176,vision:176,dialogue:384",
        lr=1.5e-3,
        min_lr=1.5e-4,
        warmup_steps=100,
        weight_decay=0.05,
        bias_update_rate=1e-3,
        out_dir="runs/omni-mini",
        save_every=250,
        keep_checkpoints=1,
        log_every=10,
        data_workers=12,
        deterministic=False,
        fit_budget=True,
    ),
    "omni-mini-smoke": Recipe(
        name="omni-mini-smoke",
        flavor="mini",
        curriculum="omni-mini",
        pack="runs/data/train.pack.npz",
        stage_steps="speech:4,vision:4,dialogue:6",
        encoder_steps="vision:2,audio:2",
        encoder_batch=4,
        stage_samples=64,
        global_batch=4,
        seq_len=384,
        stage_seq_len="speech:176,vision:176,dialogue:384",
        lr=3e-3,
        min_lr=1e-3,
        warmup_steps=1,
        out_dir="runs/omni-mini-smoke",
        save_every=3,
        keep_checkpoints=1,
    ),
}


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise KeyError(f"unknown recipe {name!r}; known: {sorted(RECIPES)}")
    return dataclasses.replace(RECIPES[name])

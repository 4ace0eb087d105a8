"""Training recipes: every knob of a run in one typed dataclass of sections, plus named presets.

`debug` trains the debug flavor on CPU with gloo (seconds per step; what the tests
use); `a1b` trains the 1B-active flavor on GPUs with bf16 autocast; `omni-mini`
trains the default model (`mini` flavor) on a synthetic-world pack in stages
(`mdp.curriculum.run`); `omni-mini-smoke` is its few-step CPU version.

A recipe is a few top-level fields (name, flavor, steps, batch, sequence length, seed)
and sections: `data`, `optim`, `loss`, `parallel`, `numerics`, `output`, `budget`,
`curriculum`, `pretrain`, `heldout`. "Unset" is None. The command line overrides any
leaf with `--set section.field=value` (`mdp.overrides`); the flat names of earlier
recipes (`--set steps=10`, `--set dp=2`, `--set stage_steps=speech:300`) still work.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

ANSWER_WEIGHT = 4.0  # the default `loss.answer_weight` (README: the answer's share of the loss weight)


@dataclass(frozen=True)
class Data:
    manifest: str | None = None  # JSON-lines manifest; None: synthesize one into out_dir/data
    synthetic_samples: int = 16
    modalities: tuple[str, ...] = ("image", "video", "audio")  # kinds to synthesize; the encoders they need are built
    workers: int = 0  # omni-mini: DataLoader processes building samples ahead of the GPU
    main_threads: int = 0  # torch CPU threads of the training process (0: 1 on CUDA with workers, else default)


@dataclass(frozen=True)
class Optim:
    lr: float = 3e-4
    min_lr: float = 3e-5
    warmup_steps: int = 1
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    bias_update_rate: float = 1e-3  # aux-loss-free expert-bias step (0 disables)


@dataclass(frozen=True)
class Loss:
    word_weight: float = 1.0  # loss weight of the reply's words (and end) over its text pads (mdp.loss.stage1_loss)
    # loss weight of the words (and end) of a question's answer, on top of word_weight: in
    # the omni-mini mixes they would otherwise carry ~2-10 % of the loss weight (README)
    answer_weight: float = ANSWER_WEIGHT


@dataclass(frozen=True)
class Parallel:
    """See mdp.dims.ParallelDims; None: derived from the world size."""

    dp: int | None = None
    pp: int = 1
    cp: int = 1
    ep: int = 1
    enc_shard: int | None = None
    microbatches: int = 0  # pipeline micro-batches per step (0: = pp)
    bridge_chunks: int = 1  # ModalityBridge chunks
    ep_overlap: bool = True
    encoder_recompute: bool = True
    # train_path=device: a step of more LLM positions (rows x trimmed length) than this runs each
    # decoder layer again in the backward instead of keeping its activations (0: never). Only the
    # long steps of a window pay: the tool conversations' 704-position rows at batch 768 ran out of
    # an 80 GB card at 76.7 GiB without it (README "Recomputing the long steps")
    recompute_positions: int = 0
    fsdp_reshard_after_forward: bool = True  # False: ZeRO-2 style (params stay gathered)


@dataclass(frozen=True)
class Numerics:
    bf16: str = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU; "on" | "off"
    deterministic: bool = True
    # single-device experts: auto (as serving: grouped_mm where it runs, else bmm) | bmm | grouped_mm
    expert_backend: str = "auto"
    audio_dropout: float = 0.0  # audio encoder dropout during training
    # each decoder layer compiled on its own (torch.compile, regional: one graph that every
    # layer reuses), before FSDP wraps it. With grouped_mm experts it needs bf16 (the
    # compiler's shape rule for torch._grouped_mm takes bf16 only)
    compile: bool = False


@dataclass(frozen=True)
class Output:
    out_dir: str = "runs/debug"
    ckpt_dir: str | None = None  # None: out_dir/checkpoints
    export_dir: str | None = None  # omni-mini: the OmniModel directory written at the end (None: out_dir/model)
    save_every: int = 2
    keep_checkpoints: int = 2
    log_every: int = 1  # device path: the loss log is written every this many steps
    plot: bool = True


@dataclass(frozen=True)
class Budget:
    time_s: float | None = None  # checkpoint and stop after this long; rerun to resume
    plan_s: float | None = None  # with fit: fit the stages to this much time, spent over resumed runs
    fit: bool = False  # with time_s: shrink the stages' steps to fit it (after timing a few)


@dataclass(frozen=True)
class Curriculum:
    """Staged runs (mdp.curriculum.run); kind None: one plain run over `data.manifest`."""

    kind: str | None = None  # "omni-mini"
    pack: str | None = None  # `omni data pack` output the stages are drawn from
    stage_steps: dict[str, int] = field(default_factory=dict)  # {stage: steps}, in curriculum order
    stage_seq_len: dict[str, int] = field(default_factory=dict)  # {stage: positions}; stages not named: seq_len
    # {stage: positions} a stage's step is costed as when budget.fit sizes the stages before that
    # stage is timed (stages not named: their stage_seq_len). Rows are trimmed to their batch, so a
    # stage whose length only admits rare long rows (tool conversations) costs about what its usual
    # rows do: name that, or the other stages are sized as if every row were long
    stage_cost_len: dict[str, int] = field(default_factory=dict)
    stage_samples: int = 20000  # manifest lines written per stage
    # relative weight of captions in the stage mixes (None: as in mdp.curriculum.stages.STAGES)
    caption_weight: float | None = None
    transcribe_weight: float | None = None  # the same for transcriptions of spoken questions
    sentence_weight: float | None = None  # the same for transcriptions of the voice bank's random sentences
    tool_weight: float | None = None  # the same for the world's tool conversations (packs with tool requests)
    # greetings and repeats typed, alone and beside a picture, in the vision and dialogue stages
    # (mdp.curriculum.stages.TYPED_SPEECH_LINES, this weight each; None / 0: none, the default; the
    # shipped model was trained with 0.015)
    typed_speech_weight: float | None = None
    # questions typed beside a video's frame pairs in the dialogue stage (TYPED_VIDEO_LINES; None / 0: none)
    typed_video_weight: float | None = None
    # share of a tool-teaching stage's questions (stream / audio / image / text lines) asked with the
    # world's tool declared in a system turn, as a served session that declares it asks them: the
    # model learns when not to call (without them every declared conversation was a call)
    tools_declared: float = 0.2
    # an OmniModel directory (e.g. omni/pretrained/default) whose weights start the first stage, with
    # no encoder pre-training: a fine-tune (README "Teaching the shipped model a tool"). The run
    # trains and exports with that model's tokenizer, as its embeddings were learned with it
    init_model: str | None = None
    answer_codes: str = "codec"  # "codec": tokenize the pack's answer audio with the shipped codec; "pack": its tokens
    # a table of `bench/answer_phases.py` (e.g. omni/synth/answer_phases.json): each answer's audio is
    # delayed by its share of a codec frame before it is tokenized, the phase whose decoded speech the
    # judge understands (None: none, the default; the shipped model was trained with that table)
    answer_phases: str | None = None
    train_path: str = "loader"  # "loader" (DataLoader workers) | "device" (mdp.curriculum.device)
    bucket_window: int = 8  # train_path=device: rows of this many steps are length-bucketed together (1: off)
    # False carries one AdamW state and one LR schedule (warm-up once, cosine over all
    # stages' steps) from stage to stage; True restarts both in every stage
    optimizer_per_stage: bool = False
    # audio features heard as other speakers while training (encoders.speaker_augment):
    # the largest frequency warp (0: off); tilt and masks come with it
    speaker_augment: float = 0.0
    # train_path=device: more renderings of the pack's questions (`omni data voice-bank`);
    # every draw of a spoken question hears one of them or the pack's own
    voice_bank: str | None = None
    # train_path=device: the share of spoken replies (answers, "say") written and spoken as another
    # answer, with their speech trained and their text not (mdp.curriculum.plan): what the voice
    # says then follows only from the reply's text, which teaches it to say what the text says
    speech_swap: float = 0.0
    # the trained model's OmniConfig.text_audio_delay (its speech this many steps behind its text,
    # in training and in the exported model's generation); None: the flavor's (0 for every flavor)
    text_audio_delay: int | None = None


@dataclass(frozen=True)
class Pretrain:
    """Encoder pre-training before the first stage (mdp.curriculum.pretrain)."""

    steps: dict[str, int] = field(default_factory=dict)  # {"vision": 600, "audio": 600}
    batch: int = 64
    lr: float = 2e-3
    augment: tuple[str, ...] = ()  # encoders pre-trained on augmented views: "vision", "audio" (README)


@dataclass(frozen=True)
class Heldout:
    """Held-out spoken questions answered during training (mdp.curriculum.heldout)."""

    pack: str | None = None  # a held-out pack (`omni data default` writes runs/data/heldout.pack.npz); None: no probe
    every: int = 0  # probe every this many steps of a stage and at each stage's end (0: stage ends only)
    samples: int = 120  # held-out questions per probe (an even stride over the pack)


@dataclass(frozen=True)
class Recipe:
    name: str = "debug"
    flavor: str = "debug"  # omni flavor (omni.config)
    steps: int = 4
    global_batch: int = 4  # rows (samples) per step over all DP ranks
    seq_len: int = 64
    seed: int = 0
    data: Data = field(default_factory=Data)
    optim: Optim = field(default_factory=Optim)
    loss: Loss = field(default_factory=Loss)
    parallel: Parallel = field(default_factory=Parallel)
    numerics: Numerics = field(default_factory=Numerics)
    output: Output = field(default_factory=Output)
    budget: Budget = field(default_factory=Budget)
    curriculum: Curriculum = field(default_factory=Curriculum)
    pretrain: Pretrain = field(default_factory=Pretrain)
    heldout: Heldout = field(default_factory=Heldout)

    def replace(self, **changes) -> "Recipe":
        """A copy with fields replaced; a section given as a dict replaces only the fields
        it names: `r.replace(steps=3, output={"out_dir": "o"})`."""
        for key, value in changes.items():
            if key in SECTIONS and isinstance(value, dict):
                changes[key] = dataclasses.replace(getattr(self, key), **value)
        return dataclasses.replace(self, **changes)

    def override(self, pairs: list[str]) -> "Recipe":
        """Apply `--set` strings: `section.field=value`, `section.dict_field.key=value`,
        or a flat name of earlier recipes (see `mdp.overrides`)."""
        from mdp.overrides import apply_overrides

        return apply_overrides(self, pairs)

    @property
    def checkpoint_dir(self) -> str:
        return self.output.ckpt_dir or os.path.join(self.output.out_dir, "checkpoints")


# the fields that hold a section (the rest are top-level values)
SECTIONS = tuple(f.name for f in dataclasses.fields(Recipe) if f.default_factory is not dataclasses.MISSING)

RECIPES = {
    "debug": Recipe(),
    "a1b": Recipe(
        name="a1b",
        flavor="a1b",
        steps=200,
        global_batch=16,
        seq_len=4096,
        data=Data(synthetic_samples=256),
        optim=Optim(lr=3e-4, min_lr=3e-5, warmup_steps=20),
        parallel=Parallel(bridge_chunks=4),
        numerics=Numerics(deterministic=False),
        output=Output(out_dir="runs/a1b", save_every=100, log_every=10),
    ),
    "omni-mini": Recipe(
        name="omni-mini",
        flavor="mini",
        # the mini model is launch-bound (thousands of small kernels a step): on the
        # device path a dialogue step at 768 rows costs ~1.5x one at 192 (236 vs 154 ms)
        # and carries 4x the samples (bench/results/train_throughput_h200_run2.json)
        global_batch=768,
        seq_len=384,
        data=Data(modalities=("image", "video", "audio"), workers=12),
        optim=Optim(lr=1.5e-3, min_lr=1.5e-4, warmup_steps=100, weight_decay=0.05, bias_update_rate=1e-3),
        numerics=Numerics(deterministic=False),
        output=Output(out_dir="runs/omni-mini", save_every=250, keep_checkpoints=1, log_every=10),
        budget=Budget(fit=True),
        curriculum=Curriculum(
            kind="omni-mini",
            pack="runs/data/train.pack.npz",
            stage_steps={"speech": 1500, "vision": 2000, "dialogue": 6000},  # upper bounds: budget.fit shrinks them
            stage_seq_len={"speech": 176, "vision": 176, "dialogue": 384},
            stage_samples=100000,
            train_path="device",
        ),
        # 1,200 audio steps: with the voice bank the CTC pool holds ~18 k clips, not ~1 k
        pretrain=Pretrain(steps={"vision": 600, "audio": 1200}),
    ),
    "omni-mini-smoke": Recipe(
        name="omni-mini-smoke",
        flavor="mini",
        global_batch=4,
        seq_len=384,
        optim=Optim(lr=3e-3, min_lr=1e-3, warmup_steps=1),
        output=Output(out_dir="runs/omni-mini-smoke", save_every=3, keep_checkpoints=1),
        curriculum=Curriculum(
            kind="omni-mini",
            pack="runs/data/train.pack.npz",
            stage_steps={"speech": 4, "vision": 4, "dialogue": 6},
            stage_seq_len={"speech": 176, "vision": 176, "dialogue": 384},
            stage_samples=64,
        ),
        pretrain=Pretrain(steps={"vision": 2, "audio": 2}, batch=4),
    ),
}


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise KeyError(f"unknown recipe {name!r}; known: {sorted(RECIPES)}")
    return dataclasses.replace(RECIPES[name])

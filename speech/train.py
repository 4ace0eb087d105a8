"""Codec training loop: reconstruction + adversarial, CPU or one GPU.

Generator loss = 15 * multi-scale mel L1 + 2 * multi-resolution STFT
(spectral convergence + log magnitude) + 0.25 * commitment + 1 * codebook,
plus, once the adversarial phase starts (`adv_start` of the run), 1 * LSGAN
loss of a multi-period + multi-scale-STFT discriminator and 2 * feature
matching. Weights follow DAC; the late adversarial start lets the quickly
learned spectral envelope settle first (runs here are a few thousand steps).

The run stops at `steps` or at `time_budget` seconds, whichever comes first;
the learning rate follows a cosine over that same fraction of the run, so a
time-limited run still anneals. bf16 autocast on CUDA; spectral losses stay
float32. A checkpoint (models, optimizers, step, elapsed time, RNG, loss
history) is written every `ckpt_seconds` and at the end; `resume` continues
from it exactly where it stopped. Outputs in `out_dir`: ckpt.pt, codec/
(config.json + model.safetensors), log.csv, log.json, loss.png.

Decoder fine-tuning: `init_from` a codec directory (e.g. the shipped one) and
`freeze=("encoder", "quantizer")` keep the encoder, the latent BatchNorm (its
running statistics too) and every codebook exactly as they were, so the codec's
tokens do not change; only the decoder's GLSTM and upsampling stack train, on
the latents of the frozen tokenizer computed in float32 (the same tokens as
`Codec.encode`). `mel_band_weights` weights the mel L1 per frequency band,
`mel_onset_weight` the frames just after a speech onset (`losses.onset_weights`),
`aligned_share` starts a share of the crops where a clip starts (as an answer
decoded on its own), and `eval_data` (a packed .npz, optionally with labels)
is scored as whole-clip decodes (mel L1) before and after the run: eval.json.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import time

import torch

from omni.config import CodecConfig, from_dict, get_flavor, to_dict
from speech.codec import Codec
from speech.data import AudioCorpus, load_clips, load_labels
from speech.discriminators import CodecDiscriminator
from speech.losses import (
    MelLoss,
    MultiResolutionSTFTLoss,
    discriminator_loss,
    feature_matching_loss,
    generator_adv_loss,
    parse_band_weights,
)
from speech.model import CodecModel
from speech.quantizer import revive_dead_codes

# parts of CodecModel that `TrainOptions.freeze` can keep fixed (module paths)
FREEZABLE: dict[str, tuple[str, ...]] = {
    "encoder": ("encoder", "latent_norm"),
    "quantizer": ("semantic_quantizer", "decoder.semantic_dequantizer", "decoder.acoustic_quantizer"),
}


def parse_freeze(spec: str | tuple | list) -> tuple[str, ...]:
    """"encoder,quantizer" -> ("encoder", "quantizer") (sorted, checked)."""
    parts = [p.strip() for p in (spec.split(",") if isinstance(spec, str) else spec)]
    parts = sorted({p for p in parts if p})
    bad = [p for p in parts if p not in FREEZABLE]
    if bad:
        raise ValueError(f"cannot freeze {bad}: the parts are {sorted(FREEZABLE)}")
    return tuple(parts)


@dataclasses.dataclass
class TrainOptions:
    out_dir: str
    flavor: str = "default"
    steps: int = 1000
    time_budget: float = 0.0  # seconds; 0 = no limit
    batch_size: int = 16
    segment_seconds: float = 1.92
    lr: float = 1e-4  # DAC's value; 6e-4 and 1e-3 taught the decoder to ignore its input here
    lr_disc: float = 2e-4
    warmup_steps: int = 100
    adv_start: float = 0.5  # fraction of the run after which the discriminator trains (>= 1: never)
    dead_code_patience: int = 20  # steps a codebook row may go unused before it is restarted
    w_mel: float = 15.0
    w_stft: float = 2.0
    w_commit: float = 0.25
    w_codebook: float = 1.0
    w_adv: float = 1.0
    w_fm: float = 2.0
    device: str = "cpu"
    bf16: bool = True  # only used on CUDA
    seed: int = 0
    log_every: int = 10
    ckpt_seconds: float = 300.0
    resume: bool = False
    init_from: str = ""  # checkpoint (model + discriminator) or codec directory whose weights start a fresh run
    progress: bool = True
    freeze: tuple[str, ...] = ()  # FREEZABLE parts kept fixed; ("encoder", "quantizer") keeps the tokens
    mel_band_weights: str = ""  # "LO-HI:W,..." in Hz: weights of the mel L1 per band (mean 1)
    mel_onset_weight: float = 0.0  # > 0: frames after a speech onset weigh up to 1 + this (mean 1)
    aligned_share: float = 0.0  # share of the crops that start at a clip start
    eval_data: str = ""  # packed .npz of held-out clips, scored before and after the run


def _run_fraction(o: TrainOptions, step: int, elapsed: float) -> float:
    fracs = [step / o.steps] if o.steps > 0 else []
    if o.time_budget > 0:
        fracs.append(elapsed / o.time_budget)
    return min(1.0, max(fracs)) if fracs else 0.0


def _lr_scale(o: TrainOptions, step: int, frac: float) -> float:
    warm = min(1.0, (step + 1) / max(1, o.warmup_steps))
    return warm * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))


class Trainer:
    def __init__(self, opts: TrainOptions, clips, cfg: CodecConfig | None = None) -> None:
        self.o = o = opts
        os.makedirs(o.out_dir, exist_ok=True)
        self.device = torch.device(o.device)
        self.ckpt_path = os.path.join(o.out_dir, "ckpt.pt")
        ckpt = None
        o.freeze = parse_freeze(o.freeze)
        if o.resume:
            if not os.path.isfile(self.ckpt_path):
                raise FileNotFoundError(f"{self.ckpt_path}: no checkpoint to resume from")
            ckpt = torch.load(self.ckpt_path, map_location="cpu", weights_only=False)
            cfg = from_dict(CodecConfig, ckpt["codec_config"])
            saved = parse_freeze(ckpt.get("options", {}).get("freeze") or ())
            if saved != o.freeze:
                raise ValueError(f"{self.ckpt_path}: trained with freeze={list(saved)}, resumed with {list(o.freeze)}: "
                                 "resume with the same parts frozen")
        init = None
        if o.init_from and ckpt is None:
            init = _load_init(o.init_from)
            if os.path.isdir(o.init_from):
                cfg = from_dict(CodecConfig, init["codec_config"])  # a codec directory brings its config
        torch.manual_seed(o.seed)
        self.cfg = cfg or get_flavor("codec", o.flavor)
        self.model = CodecModel(self.cfg).to(self.device).train()
        self.disc = CodecDiscriminator().to(self.device).train()
        if init is not None:
            if init["codec_config"] != to_dict(self.cfg):
                raise ValueError(f"{o.init_from}: codec config differs from flavor {o.flavor!r}")
            self.model.load_state_dict(init["model"])
            if init.get("disc") is not None:
                self.disc.load_state_dict(init["disc"])
        self.frozen = [self.model.get_submodule(name) for part in o.freeze for name in FREEZABLE[part]]
        for m in self.frozen:
            m.requires_grad_(False)
        # with the whole tokenizer fixed, its forward runs without autograd, in float32
        self.tokens_frozen = {"encoder", "quantizer"} <= set(o.freeze)
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        self._set_modes()
        betas = (0.8, 0.99)
        self.opt_g = torch.optim.AdamW(self.trainable, o.lr, betas=betas, weight_decay=0.0)
        self.opt_d = torch.optim.AdamW(self.disc.parameters(), o.lr_disc, betas=betas, weight_decay=0.0)
        self.mel = MelLoss(self.cfg.sample_rate, band_weights=parse_band_weights(o.mel_band_weights),
                           onset_weight=o.mel_onset_weight).to(self.device)
        self.stft = MultiResolutionSTFTLoss().to(self.device)
        self.gen = torch.Generator().manual_seed(o.seed)
        self.corpus = AudioCorpus(clips, self.device)
        self.step, self.elapsed, self.history, self.revived, self.evals = 0, 0.0, [], 0, []
        if ckpt is not None:
            self.model.load_state_dict(ckpt["model"])
            self.disc.load_state_dict(ckpt["disc"])
            self.opt_g.load_state_dict(ckpt["opt_g"])
            self.opt_d.load_state_dict(ckpt["opt_d"])
            self.gen.set_state(ckpt["data_rng"])
            torch.set_rng_state(ckpt["torch_rng"])
            self.step, self.elapsed, self.history = ckpt["step"], ckpt["elapsed"], ckpt["history"]
            self.evals = ckpt.get("evals", [])
        self.eval_clips: list = []
        self.eval_labels: list[str] = []
        if o.eval_data:
            self.eval_clips = load_clips(o.eval_data, self.cfg.sample_rate)
            self.eval_labels = load_labels(o.eval_data) or ["all"] * len(self.eval_clips)
        self.autocast = self.device.type == "cuda" and o.bf16
        self.num_samples = max(1, round(o.segment_seconds * self.cfg.frame_rate)) * self.cfg.hop_length

    def _amp(self):
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.autocast)

    def _set_modes(self) -> None:
        """Training mode, except the frozen parts (their BatchNorm statistics and codebooks stay put)."""
        self.model.train()
        for m in self.frozen:
            m.eval()

    def forward(self, x: torch.Tensor):
        """Training forward: (reconstruction [B, N], codes, commitment, codebook loss)."""
        if self.tokens_frozen:
            # full float32 (no TF32 convolutions on CUDA): the tokens Codec.encode gives
            cudnn = torch.backends.cudnn
            with torch.no_grad(), cudnn.flags(enabled=cudnn.enabled, benchmark=cudnn.benchmark,
                                              deterministic=cudnn.deterministic, allow_tf32=False):
                latents, codes, commit, cbl = self.model.quantize(x)
            with self._amp():
                y = self.model.decoder.decode_latents(latents)
            return y, codes, commit, cbl
        with self._amp():
            return self.model(x)

    @torch.no_grad()
    def evaluate(self) -> dict:
        """Mean mel L1 (unweighted, float32) of the eval clips, each decoded whole as at inference."""
        if not self.eval_clips:
            return {}
        self.model.eval()
        sums: dict[str, list[float]] = {}
        for clip, label in zip(self.eval_clips, self.eval_labels):
            x = torch.from_numpy(clip).to(self.device)[None]
            y = self.model(x)[0][..., : x.shape[-1]].float()
            sums.setdefault(label, []).append(float(self.mel.losses(y, x)[1]))
        self._set_modes()
        row = {"step": self.step, "clips": len(self.eval_clips),
               "mel": round(sum(sum(v) for v in sums.values()) / len(self.eval_clips), 5)}
        if len(sums) > 1:
            row.update({f"mel_{k}": round(sum(v) / len(v), 5) for k, v in sorted(sums.items())})
        return row

    def train_step(self, frac: float) -> dict[str, torch.Tensor]:
        o = self.o
        x = self.corpus.batch(o.batch_size, self.num_samples, self.gen, aligned_share=o.aligned_share)
        y, codes, commit, cbl = self.forward(x)
        y = y[..., : x.shape[-1]].float()
        adv = frac >= o.adv_start
        logs: dict[str, torch.Tensor] = {}
        if adv:
            with self._amp():
                real_out, real_feats = self.disc(x)
                fake_out, _ = self.disc(y.detach())
            d_loss = discriminator_loss(real_out, fake_out)
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            torch.nn.utils.clip_grad_norm_(self.disc.parameters(), 10.0)
            self.opt_d.step()
            logs["disc"] = d_loss.detach()
        mel_w, mel = self.mel.losses(y, x)
        stft = self.stft(y, x)
        g = o.w_mel * mel_w + o.w_stft * stft + o.w_commit * commit + o.w_codebook * cbl
        if self.mel.weighted:
            logs["mel_weighted"] = mel_w.detach()
        if adv:
            with self._amp():
                fake_out, fake_feats = self.disc(y)
            g_adv = generator_adv_loss(fake_out)
            fm = feature_matching_loss([[f.detach() for f in fs] for fs in real_feats], fake_feats)
            g = g + o.w_adv * g_adv + o.w_fm * fm
            logs["gen_adv"], logs["feat_match"] = g_adv.detach(), fm.detach()
        self.opt_g.zero_grad(set_to_none=True)
        g.backward()
        logs["grad_norm"] = torch.nn.utils.clip_grad_norm_(self.trainable, 1.0).detach()
        self.opt_g.step()
        if self.step % 5 == 0 and "quantizer" not in o.freeze:  # each check syncs the GPU: not every step
            self.revived += revive_dead_codes(self.model, self.step, self.o.dead_code_patience)
        logs["revived"] = torch.tensor(float(self.revived))
        logs.update(mel=mel.detach(), stft=stft.detach(), commit=commit.detach(), codebook=cbl.detach(), total=g.detach())
        self.last_codes = codes.detach()
        return logs

    def save_checkpoint(self) -> None:
        ckpt = {
            "model": self.model.state_dict(),
            "disc": self.disc.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "data_rng": self.gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "step": self.step,
            "elapsed": self.elapsed,
            "history": self.history,
            "evals": self.evals,
            "codec_config": to_dict(self.cfg),
            "options": dataclasses.asdict(self.o),
        }
        tmp = self.ckpt_path + ".tmp"
        torch.save(ckpt, tmp)
        os.replace(tmp, self.ckpt_path)  # never leave a half-written checkpoint

    def export(self) -> Codec:
        codec = Codec(self.model)
        codec.save_pretrained(
            os.path.join(self.o.out_dir, "codec"),
            extra={"training": self._training_meta()},
        )
        self._set_modes()
        return codec

    def _training_meta(self) -> dict:
        meta = {"steps": self.step, "seconds": round(self.elapsed, 1), "device": _device_name(self.device)}
        if self.o.freeze:
            meta["frozen"] = list(self.o.freeze)
        if self.o.init_from:
            meta["init_from"] = self.o.init_from
        return meta

    def _record_eval(self, when: str) -> None:
        row = self.evaluate()
        if not row:
            return
        row["when"] = when
        self.evals.append(row)
        with open(os.path.join(self.o.out_dir, "eval.json"), "w") as fh:
            json.dump(self.evals, fh, indent=2)
        _print_eval(row)

    def run(self) -> list[dict]:
        from tqdm import tqdm

        o = self.o
        if self.eval_clips and not self.evals:
            self._record_eval("before")
        else:
            for row in self.evals:  # a resumed run: the scores so far
                _print_eval(row)
        t0 = time.time() - self.elapsed
        last_ckpt = time.time()
        bar = tqdm(total=o.steps if o.steps > 0 else None, initial=self.step, desc="train-codec", disable=not o.progress)
        while True:
            self.elapsed = time.time() - t0
            frac = _run_fraction(o, self.step, self.elapsed)
            if frac >= 1.0:
                break
            scale = _lr_scale(o, self.step, frac)
            for group in self.opt_g.param_groups:
                group["lr"] = o.lr * scale
            for group in self.opt_d.param_groups:
                group["lr"] = o.lr_disc * scale
            logs = self.train_step(frac)
            self.step += 1
            bar.update(1)
            if self.step % o.log_every == 0 or self.step == 1:
                logs["semantic_usage"] = torch.tensor(self.last_codes[:, 0].unique().numel() / self.cfg.semantic_codebook_size)
                logs["acoustic_usage"] = torch.tensor(self.last_codes[:, 1].unique().numel() / self.cfg.acoustic_codebook_size)
                row = {"step": self.step, "seconds": round(time.time() - t0, 2), "lr": o.lr * scale}
                row.update({k: round(float(v), 5) for k, v in logs.items()})
                self.history.append(row)
                bar.set_postfix(mel=row["mel"], stft=row["stft"], usage=row["semantic_usage"])
            if time.time() - last_ckpt > o.ckpt_seconds:
                self.save_checkpoint()
                write_logs(self.history, o.out_dir)
                last_ckpt = time.time()
        bar.close()
        self.elapsed = time.time() - t0
        if self.eval_clips:
            self._record_eval("after")
        self.save_checkpoint()
        self.export()
        write_logs(self.history, o.out_dir)
        return self.history


def _print_eval(row: dict) -> None:
    print(f"held-out mel ({row['clips']} whole clips, {row['when']}, step {row['step']}): "
          + ", ".join(f"{k} {v:.4f}" for k, v in row.items() if k.startswith("mel")), flush=True)


def _load_init(path: str) -> dict:
    """Starting weights: a training checkpoint (model + discriminator) or a codec directory (model only)."""
    if os.path.isdir(path):
        codec = Codec.from_pretrained(path)
        return {"codec_config": to_dict(codec.cfg), "model": codec.model.state_dict(), "disc": None}
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such checkpoint or codec directory")
    init = torch.load(path, map_location="cpu", weights_only=False)
    return {"codec_config": init["codec_config"], "model": init["model"], "disc": init.get("disc")}


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({os.cpu_count()} cores)"


def write_logs(history: list[dict], out_dir: str) -> None:
    """log.json, log.csv and (if matplotlib is installed) loss.png."""
    with open(os.path.join(out_dir, "log.json"), "w") as fh:
        json.dump(history, fh)
    keys = sorted({k for row in history for k in row}, key=lambda k: (k != "step", k != "seconds", k))
    with open(os.path.join(out_dir, "log.csv"), "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(history)
    try:
        plot_history(history, os.path.join(out_dir, "loss.png"))
    except ImportError:
        pass  # the GPU image has no matplotlib: plot later from log.json


def plot_history(history: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    steps = [r["step"] for r in history]
    for ax, keys, title in (
        (axes[0], ("mel", "stft"), "reconstruction"),
        (axes[1], ("commit", "codebook", "semantic_usage", "acoustic_usage"), "quantizers"),
        (axes[2], ("disc", "gen_adv", "feat_match"), "adversarial"),
    ):
        for k in keys:
            pts = [(s, r[k]) for s, r in zip(steps, history) if k in r]
            if pts:
                ax.plot(*zip(*pts), label=k)
        ax.set_title(title)
        ax.set_xlabel("step")
        if ax.lines:
            ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def export_checkpoint(ckpt_path: str, out_dir: str, dtype: torch.dtype = torch.float32) -> Codec:
    """Write the codec of a training checkpoint (config.json + model.safetensors) to `out_dir`."""
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    cfg = from_dict(CodecConfig, ckpt["codec_config"])
    model = CodecModel(cfg)
    missing, unexpected = model.load_state_dict(ckpt["model"], strict=False)
    # checkpoints from before the latent BatchNorm: its default (identity) state reproduces them
    if unexpected or any(not k.startswith("latent_norm.") for k in missing):
        raise ValueError(f"{ckpt_path}: state dict does not match the codec (missing {missing}, unexpected {unexpected})")
    codec = Codec(model)
    meta = {"steps": ckpt["step"], "seconds": round(ckpt["elapsed"], 1)}
    opts = ckpt.get("options", {})
    if opts.get("freeze"):
        meta["frozen"] = list(opts["freeze"])
    if opts.get("init_from"):
        meta["init_from"] = opts["init_from"]
    codec.save_pretrained(out_dir, dtype, extra={"training": meta})
    return codec

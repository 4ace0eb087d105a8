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
from speech.data import AudioCorpus
from speech.discriminators import CodecDiscriminator
from speech.losses import (
    MelLoss,
    MultiResolutionSTFTLoss,
    discriminator_loss,
    feature_matching_loss,
    generator_adv_loss,
)
from speech.model import CodecModel
from speech.quantizer import revive_dead_codes


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
    adv_start: float = 0.5  # fraction of the run after which the discriminator trains
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
    init_from: str = ""  # checkpoint whose model + discriminator weights start a fresh run
    progress: bool = True


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
        if o.resume:
            if not os.path.isfile(self.ckpt_path):
                raise FileNotFoundError(f"{self.ckpt_path}: no checkpoint to resume from")
            ckpt = torch.load(self.ckpt_path, map_location="cpu", weights_only=False)
            cfg = from_dict(CodecConfig, ckpt["codec_config"])
        torch.manual_seed(o.seed)
        self.cfg = cfg or get_flavor("codec", o.flavor)
        self.model = CodecModel(self.cfg).to(self.device).train()
        self.disc = CodecDiscriminator().to(self.device).train()
        betas = (0.8, 0.99)
        self.opt_g = torch.optim.AdamW(self.model.parameters(), o.lr, betas=betas, weight_decay=0.0)
        self.opt_d = torch.optim.AdamW(self.disc.parameters(), o.lr_disc, betas=betas, weight_decay=0.0)
        self.mel = MelLoss(self.cfg.sample_rate).to(self.device)
        self.stft = MultiResolutionSTFTLoss().to(self.device)
        self.gen = torch.Generator().manual_seed(o.seed)
        self.corpus = AudioCorpus(clips, self.device)
        self.step, self.elapsed, self.history, self.revived = 0, 0.0, [], 0
        if o.init_from and ckpt is None:
            init = torch.load(o.init_from, map_location="cpu", weights_only=False)
            if init["codec_config"] != to_dict(self.cfg):
                raise ValueError(f"{o.init_from}: codec config differs from flavor {o.flavor!r}")
            self.model.load_state_dict(init["model"])
            self.disc.load_state_dict(init["disc"])
        if ckpt is not None:
            self.model.load_state_dict(ckpt["model"])
            self.disc.load_state_dict(ckpt["disc"])
            self.opt_g.load_state_dict(ckpt["opt_g"])
            self.opt_d.load_state_dict(ckpt["opt_d"])
            self.gen.set_state(ckpt["data_rng"])
            torch.set_rng_state(ckpt["torch_rng"])
            self.step, self.elapsed, self.history = ckpt["step"], ckpt["elapsed"], ckpt["history"]
        self.autocast = self.device.type == "cuda" and o.bf16
        self.num_samples = max(1, round(o.segment_seconds * self.cfg.frame_rate)) * self.cfg.hop_length

    def _amp(self):
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.autocast)

    def train_step(self, frac: float) -> dict[str, torch.Tensor]:
        o = self.o
        x = self.corpus.batch(o.batch_size, self.num_samples, self.gen)
        with self._amp():
            y, codes, commit, cbl = self.model(x)
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
        mel = self.mel(y, x)
        stft = self.stft(y, x)
        g = o.w_mel * mel + o.w_stft * stft + o.w_commit * commit + o.w_codebook * cbl
        if adv:
            with self._amp():
                fake_out, fake_feats = self.disc(y)
            g_adv = generator_adv_loss(fake_out)
            fm = feature_matching_loss([[f.detach() for f in fs] for fs in real_feats], fake_feats)
            g = g + o.w_adv * g_adv + o.w_fm * fm
            logs["gen_adv"], logs["feat_match"] = g_adv.detach(), fm.detach()
        self.opt_g.zero_grad(set_to_none=True)
        g.backward()
        logs["grad_norm"] = torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0).detach()
        self.opt_g.step()
        if self.step % 5 == 0:  # each check syncs the GPU: not every step
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
            extra={"training": {"steps": self.step, "seconds": round(self.elapsed, 1), "device": _device_name(self.device)}},
        )
        self.model.train()
        return codec

    def run(self) -> list[dict]:
        from tqdm import tqdm

        o = self.o
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
        self.save_checkpoint()
        self.export()
        write_logs(self.history, o.out_dir)
        return self.history


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
    codec.save_pretrained(out_dir, dtype, extra={"training": {"steps": ckpt["step"], "seconds": round(ckpt["elapsed"], 1)}})
    return codec

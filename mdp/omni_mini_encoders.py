"""Encoder pre-training of the default model, before its LLM stages.

Trained only through the LLM's answers, the encoders of a model from scratch learn
slowly: an answer checks one fact of a picture or one word of a question. Like
LongCat's encoders, which are pre-trained on their own (the ViT on image data, the
audio encoder with a CTC objective), ours first learn with dense targets taken from
the pack, in a few hundred cheap steps:

    vision  each still's five slots classified (empty, or one of 6 colors x 4 shapes)
            by a throw-away linear head over the ViT + projector tokens
    audio   CTC of each spoken question's words (the LLM tokenizer's ids, one per
            word of this world) on the streaming encoder's CTC head

Every rank runs the same steps on the same data: with sharded encoders the averaged
gradients equal one rank's, so the weights stay identical without any extra code.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from omni.synth.world import COLOR_NAMES, POSITIONS, SHAPES

SLOT_CLASSES = 1 + len(COLOR_NAMES) * len(SHAPES)


def slot_targets(scene) -> list[int]:
    """Class of each slot in POSITIONS order at t = 0: 0 empty, else 1 + color * 4 + shape."""
    y = [0] * len(POSITIONS)
    for o in scene.objects:
        y[POSITIONS.index(o.slot)] = 1 + COLOR_NAMES.index(o.color) * len(SHAPES) + SHAPES.index(o.shape)
    return y


def parse_encoder_steps(spec: str) -> dict[str, int]:
    """"vision:600,audio:600" -> {"vision": 600, "audio": 600} (empty: no pre-training)."""
    out: dict[str, int] = {}
    for part in [p for p in spec.split(",") if p.strip()]:
        name, _, n = part.partition(":")
        if name.strip() not in ("vision", "audio") or not n.strip().isdigit():
            raise ValueError(f"recipe encoder_steps: {part!r} must be vision:STEPS or audio:STEPS")
        out[name.strip()] = int(n)
    return out


def _lr_at(step: int, steps: int, lr: float, warmup: int = 30) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    return lr * 0.5 * (1 + np.cos(np.pi * (step - warmup) / max(1, steps - warmup)))


def still_patches(pack, cfg) -> tuple[torch.Tensor, tuple[int, int], int]:
    """Patches [scenes, P, patch_dim] of every scene's first frame, their grid and tokens per still."""
    from encoders.image_processing import preprocess_image

    units = [preprocess_image(pack.scene_frames(k)[0], cfg) for k in range(pack.num_scenes)]
    grid = tuple(units[0].grid)
    if any(tuple(u.grid) != grid for u in units):
        raise ValueError("vision pre-training needs stills of one size (the pack renders them so)")
    return torch.stack([u.patches for u in units]), grid, units[0].num_tokens


def slot_logits(vision, head, patches: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """[B, 5, SLOT_CLASSES] slot logits of B stills' patches [B, P, patch_dim]."""
    b = patches.shape[0]
    out = vision(patches.reshape(-1, patches.shape[-1]).to(vision.device, vision.dtype), [grid] * b).reshape(b, -1)
    return head(out).float().reshape(b, len(POSITIONS), SLOT_CLASSES)


def pretrain_vision(vision, pack, steps: int, batch: int, lr: float, seed: int, autocast):
    """Slot classification of the pack's stills (first frame of every scene).
    Returns the losses and the throw-away head (for held-out checks)."""
    cfg = vision.cfg
    patches, grid, ntok = still_patches(pack, cfg)
    targets = torch.tensor([slot_targets(pack.scene(k)) for k in range(pack.num_scenes)])
    dev = vision.device
    head = torch.nn.Linear(ntok * cfg.out_dim, len(POSITIONS) * SLOT_CLASSES, device=dev)
    params = list(vision.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.05)
    gen = torch.Generator().manual_seed(seed)
    losses = []
    vision.train()
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = _lr_at(step, steps, lr)
        idx = torch.randint(0, len(patches), (batch,), generator=gen)
        with autocast():
            logits = slot_logits(vision, head, patches[idx], grid)
        loss = F.cross_entropy(logits.reshape(-1, SLOT_CLASSES), targets[idx].reshape(-1).to(dev))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(float(loss.detach()))
    return losses, head


def pretrain_audio(audio, pack, tokenizer, steps: int, batch: int, lr: float, seed: int, autocast,
                   pool: int = 2048) -> list[float]:
    """CTC of the questions' words on a pool of the pack's questions (their stored
    microphones: noise, gain, silences differ per sample). Returns the losses."""
    from encoders.audio import ctc_loss

    vocab = audio.cfg.ctc_vocab_size
    rng = np.random.default_rng([seed, 11])
    picks = rng.choice(len(pack), size=min(pool, len(pack)), replace=False)
    wavs = [torch.from_numpy(pack.question_audio(int(i))) for i in picks]
    ids = [tokenizer.encode(pack.question_text(int(i))) for i in picks]
    if max(max(t) for t in ids) >= vocab:
        raise ValueError(f"audio ctc_vocab_size {vocab} is smaller than the tokenizer's ids (up to {max(max(t) for t in ids)})")
    dev = audio.frontend.cmvn.mean.device
    params = [p for p in audio.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    losses = []
    audio.train()
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = _lr_at(step, steps, lr)
        sel = rng.choice(len(wavs), size=batch)
        n = max(len(wavs[k]) for k in sel)
        pcm = torch.stack([F.pad(wavs[k], (0, n - len(wavs[k]))) for k in sel]).to(dev)
        lens = torch.tensor([len(wavs[k]) for k in sel])
        tl = torch.tensor([len(ids[k]) for k in sel])
        tgt = torch.zeros(batch, int(tl.max()), dtype=torch.long)
        for r, k in enumerate(sel):
            tgt[r, : len(ids[k])] = torch.tensor(ids[k])
        with torch.no_grad():
            feats, flens = audio.features(pcm, lens)
        with autocast():
            loss = ctc_loss(audio, feats, flens.to(dev), tgt.to(dev), tl.to(dev))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(float(loss.detach()))
    return losses

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


def encoder_augment(names: tuple[str, ...]) -> set[str]:
    """The recipe's `pretrain.augment`, checked: the encoders pre-trained on augmented views."""
    if set(names) - {"vision", "audio"}:
        raise ValueError(f"recipe pretrain.augment {names!r}: name 'vision' and/or 'audio'")
    return set(names)


def encoder_steps(steps: dict[str, int]) -> dict[str, int]:
    """The recipe's `pretrain.steps`, checked: {"vision": N, "audio": N} (empty: no pre-training)."""
    for name, n in steps.items():
        if name not in ("vision", "audio") or not isinstance(n, int) or n < 0:
            raise ValueError(f"recipe pretrain.steps: {name}:{n} must be vision:STEPS or audio:STEPS")
    return dict(steps)


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


def unpatch_stills(patches: torch.Tensor, grid: tuple[int, int], cfg) -> torch.Tensor:
    """Still patches [B, P, c*t*p*p] (each frame tiled along time) -> images [B, c, H, W]."""
    (gh, gw), p, t = grid, cfg.patch_size, cfg.temporal_patch_size
    x = patches.reshape(len(patches), gh, gw, -1, t, p, p)[:, :, :, :, 0]  # [B, gh, gw, c, p, p]
    return x.permute(0, 3, 1, 4, 2, 5).reshape(len(patches), -1, gh * p, gw * p)


def patch_stills(images: torch.Tensor, cfg) -> torch.Tensor:
    """Images [B, c, H, W] -> still patches [B, P, c*t*p*p], as `preprocess_image` makes them."""
    b, c, hh, ww = images.shape
    p, t = cfg.patch_size, cfg.temporal_patch_size
    x = images.reshape(b, c, hh // p, p, ww // p, p).permute(0, 2, 4, 1, 3, 5)  # [B, gh, gw, c, p, p]
    x = x[:, :, :, :, None].expand(-1, -1, -1, -1, t, -1, -1)
    return x.reshape(b, (hh // p) * (ww // p), c * t * p * p)


def jitter_stills(images: torch.Tensor, gen: torch.Generator, shift: int = 3, gain=(0.9, 1.1), offset: float = 0.1,
                  noise: float = 0.1) -> torch.Tensor:
    """New views of normalized stills that keep every label: a shift of up to `shift`
    pixels (an object stays in its slot; the pack draws objects >= 4 px from the
    border, so none wraps around), contrast and brightness that leave the hues apart,
    and pixel noise."""
    b = len(images)
    d = torch.randint(-shift, shift + 1, (b, 2), generator=gen).tolist()
    out = torch.stack([torch.roll(images[i], (d[i][0], d[i][1]), dims=(1, 2)) for i in range(b)])
    a = (gain[0] + torch.rand(b, 1, 1, 1, generator=gen) * (gain[1] - gain[0])).to(out)
    o = ((torch.rand(b, 1, 1, 1, generator=gen) * 2 - 1) * offset).to(out)
    return out * a + o + noise * torch.randn(out.shape, generator=gen).to(out)


def pretrain_vision(vision, pack, steps: int, batch: int, lr: float, seed: int, autocast, augment: bool = False):
    """Slot classification of the pack's stills (first frame of every scene), each
    drawn again through `jitter_stills` when `augment`. Returns the losses and the
    throw-away head (for held-out checks)."""
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
        x = patches[idx]
        if augment:
            x = patch_stills(jitter_stills(unpatch_stills(x, grid, cfg), gen), cfg)
        with autocast():
            logits = slot_logits(vision, head, x, grid)
        loss = F.cross_entropy(logits.reshape(-1, SLOT_CLASSES), targets[idx].reshape(-1).to(dev))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(float(loss.detach()))
    return losses, head


def perturb(wavs: list[torch.Tensor], gen: torch.Generator, speed=(0.85, 1.15), gain_db=(-6.0, 6.0),
            snr_db=(10.0, 35.0)) -> list[torch.Tensor]:
    """A new microphone and speaker for each question, on the tensors' device: speed
    (by resampling, so the pitch moves with it: another voice), gain, and white noise
    at a random SNR. Cheap next to the pack's own microphone (~9 ms a question in numpy)."""
    out = []
    for w in wavs:
        u = torch.rand(3, generator=gen).tolist()
        n = max(160, round(len(w) / (speed[0] + u[0] * (speed[1] - speed[0]))))
        w = F.interpolate(w[None, None], size=n, mode="linear", align_corners=False)[0, 0]
        w = w * 10 ** ((gain_db[0] + u[1] * (gain_db[1] - gain_db[0])) / 20)
        snr = snr_db[0] + u[2] * (snr_db[1] - snr_db[0])
        noise = torch.randn(n, generator=gen).to(w.device)
        out.append(w + noise * (w.pow(2).mean().sqrt() * 10 ** (-snr / 20)))
    return out


def mask_frames(feats: torch.Tensor, lens: torch.Tensor, gen: torch.Generator, masks: int = 2,
                width: int = 2) -> torch.Tensor:
    """Time masking (SpecAugment): up to `masks` spans of up to `width` spliced 80 ms
    frames per row set to the features' mean (0 after CMVN)."""
    feats = feats.clone()
    for r, n in enumerate(lens.tolist()):
        for _ in range(masks):
            w = int(torch.randint(0, width + 1, (1,), generator=gen))
            if w and n > w:
                t = int(torch.randint(0, n - w, (1,), generator=gen))
                feats[r, t : t + w] = 0
    return feats


def pretrain_audio(audio, pack, tokenizer, steps: int, batch: int, lr: float, seed: int, autocast,
                   pool: int = 2048, augment: bool = False, bank=None, bank_pool: int = 16384) -> list[float]:
    """CTC of the questions' words on a pool of the pack's questions (their stored
    microphones: noise, gain, silences differ per sample). With `augment` each is drawn
    again through `perturb` and `mask_frames`, against learning the pool's recordings
    rather than the words; in 300 CPU steps it fit slower and scored worse on held-out
    voices (bench/results/encoder_pretrain_audio_cpu.json), so it is off by default.
    With a voice bank (`omni.synth.voice_bank`) up to `bank_pool` of its clean question
    clips join the pool, the same words in many more voices, and all of its random
    sentences (`omni.synth.sentences`), the same words in any order. Returns the losses."""
    from encoders.audio import ctc_loss

    vocab = audio.cfg.ctc_vocab_size
    rng = np.random.default_rng([seed, 11])
    gen = torch.Generator().manual_seed(seed * 1000 + 11)
    picks = rng.choice(len(pack), size=min(pool, len(pack)), replace=False)
    wavs = [torch.from_numpy(pack.question_audio(int(i))) for i in picks]
    ids = [tokenizer.encode(pack.question_text(int(i))) for i in picks]
    if bank is not None and len(bank):
        from omni.synth.audio import mulaw_decode

        questions = len(bank) - bank.sentence_clips
        chosen = rng.choice(questions, size=min(bank_pool, questions), replace=False)
        for b in np.concatenate([chosen, np.arange(questions, len(bank))]).astype(np.int64):
            lo, hi = bank.clip_offset[b], bank.clip_offset[b + 1]
            wavs.append(torch.from_numpy(mulaw_decode(bank.clip_mulaw[lo:hi])))
            ids.append(tokenizer.encode(bank.clip_texts[b]))
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
        clips = [wavs[k].to(dev) for k in sel]
        if augment:
            clips = perturb(clips, gen)
        n = max(len(c) for c in clips)
        pcm = torch.stack([F.pad(c, (0, n - len(c))) for c in clips])
        lens = torch.tensor([len(c) for c in clips])
        tl = torch.tensor([len(ids[k]) for k in sel])
        tgt = torch.zeros(batch, int(tl.max()), dtype=torch.long)
        for r, k in enumerate(sel):
            tgt[r, : len(ids[k])] = torch.tensor(ids[k])
        with torch.no_grad():
            feats, flens = audio.features(pcm, lens)
            if augment:
                feats = mask_frames(feats, flens, gen)
        with autocast():
            loss = ctc_loss(audio, feats, flens.to(dev), tgt.to(dev), tl.to(dev))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(float(loss.detach()))
    return losses

"""Single-process reference training loop for the parity tests.

Plain PyTorch on one device, no torch.distributed: the whole global batch in
one forward/backward, torch's own clip_grad_norm_, AdamW and the cosine
schedule written out again here, so the distributed trainer is checked against
an independent implementation of the same recipe.
"""

from __future__ import annotations

import math

import torch

from mdp.data import Dataset, default_layout, stack
from mdp.loss import label_counts, pack_labels
from mdp.model import OmniTrainModel
from mdp.recipes import Recipe
from mdp.trainer import build_config


def _lr(r: Recipe, step: int) -> float:
    if step < r.optim.warmup_steps:
        return r.optim.lr * (step + 1) / r.optim.warmup_steps
    t = min(1.0, (step - r.optim.warmup_steps) / max(1, r.steps - r.optim.warmup_steps))
    return r.optim.min_lr + 0.5 * (r.optim.lr - r.optim.min_lr) * (1 + math.cos(math.pi * t))


def reference_run(r: Recipe, manifest: str) -> tuple[list[float], dict[str, torch.Tensor]]:
    """Losses of every step and the gradients of step 0 (by parameter name)."""
    torch.manual_seed(r.seed)
    cfg = build_config(r)
    model = OmniTrainModel(cfg, r.data.modalities)
    model.llm.set_expert_backend("bmm")
    for moe in model.moe_layers():
        moe.track_load = True
    lay = default_layout(cfg.llm.pad_token_id, cfg.audio_pad_id)
    ds = Dataset(manifest, lay, r.seq_len, model.num_tokens, model.cost)
    params = list(model.parameters())
    opt = torch.optim.AdamW(params, lr=r.optim.lr, betas=r.optim.betas, weight_decay=r.optim.weight_decay)
    losses, grads0 = [], {}
    for step in range(r.steps):
        for g in opt.param_groups:
            g["lr"] = _lr(r, step)
        samples = [ds.sample(i) for i in ds.step_indices(r.seed, step, r.global_batch)]
        batch = stack(samples)
        items = [it for s in samples for it in s.items]
        outs: list = [None] * len(items)
        for name in model.encoders:
            js = [j for j, it in enumerate(items) if model.encoder_for(it.kind) == name]
            if js:
                for j, y in zip(js, model.encode(name, [items[j].data for j in js])):
                    outs[j] = y
        modality = torch.cat(outs) if items else None
        ph = (batch["ids"] == lay.image_pad_id) | (batch["ids"] == lay.audio_pad_id)
        x = model.embed_placeholders(batch["ids"], batch["codec"], modality, ph)
        h = model.run_layers(x, final_norm=True)
        loss = model.loss_from_hidden(h, pack_labels(batch), label_counts(batch))
        loss.backward()
        losses.append(float(loss.detach()))
        if step == 0:
            grads0 = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
        torch.nn.utils.clip_grad_norm_(params, r.optim.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            for moe in model.moe_layers():
                moe.router.update_correction_bias(moe.load_acc.clone(), r.optim.bias_update_rate)
                moe.reset_stats()
    return losses, grads0

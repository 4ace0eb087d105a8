"""Expert parallelism of one ScMoE layer vs the single-device layer; shortcut overlap on vs
off must be bitwise identical. Run inside the world-2 group of test_mdp_world2."""

from __future__ import annotations

import copy

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh

from mdp.ep import apply_expert_parallel, expert_parameters, sync_expert_grads
from omni.config import get_llm_config
from omni.llm.context import build_context
from omni.llm.layer import DecoderLayer

TOL = dict(rtol=1e-5, atol=1e-6)  # fp32; the expert GEMMs see different row blocks than the reference


def _layer(cfg):
    torch.manual_seed(0)
    layer = DecoderLayer(cfg, 0)
    # bmm is the reference; grouped_mm gives the same gradients
    # (tests/mdp/test_expert_backend_grads.py)
    layer.mlp.experts.impl = "bmm"
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_(0, 0.05) if p.dim() > 1 else p.fill_(1.0)
        # a bias pushes some tokens onto zero experts and unbalances the real ones
        layer.mlp.router.e_score_correction_bias.copy_(torch.linspace(-0.05, 0.05, cfg.num_experts_total))
    return layer


def ep_layer_check(rank: int, world: int) -> dict:
    """Run on every rank: EP layer vs the single-device layer, overlap on/off bitwise."""
    cfg = get_llm_config("debug")
    mesh = init_device_mesh("cpu", (world,), mesh_dim_names=("ep",))
    g = torch.Generator().manual_seed(1)
    x_all = torch.randn(world, 2, 16, cfg.hidden_size, generator=g)  # each rank: 2 x 16 tokens
    up_all = torch.randn(x_all.shape, generator=g)
    ctx = build_context(2, 16, cfg.qk_rope_head_dim, cfg.rope_theta, torch.device("cpu"))

    ref = _layer(cfg)
    out_ref = torch.cat([ref(x_all[r], ctx) for r in range(world)])
    (out_ref * torch.cat(list(up_all))).sum().backward()

    res = {}
    for overlap in (False, True):
        layer = _layer(cfg)
        apply_expert_parallel(layer, mesh, overlap=overlap)
        x = x_all[rank].clone().requires_grad_()
        out = layer(x, ctx)
        (out * up_all[rank]).sum().backward()
        sync_expert_grads(expert_parameters(layer), None, 1)
        grads = {n: (p.grad.full_tensor() if hasattr(p.grad, "full_tensor") else p.grad.clone()) for n, p in layer.named_parameters()}
        # dense grads: each rank has its own tokens' part; sum them like data parallelism would
        for n, p in layer.named_parameters():
            if all(p is not q for q in expert_parameters(layer)):
                dist.all_reduce(grads[n])
        outs = [torch.empty_like(out) for _ in range(world)]
        dist.all_gather(outs, out.detach().contiguous())
        res[overlap] = (torch.cat(outs), grads, x.grad.clone())
    ref_grads = dict(ref.named_parameters())
    for overlap, (out, grads, _) in res.items():
        torch.testing.assert_close(out, out_ref.detach(), **TOL)
        for n, gr in grads.items():
            torch.testing.assert_close(gr, ref_grads[n].grad, **TOL, msg=lambda m: f"{n}: {m}")
    off, on = res[False], res[True]
    assert torch.equal(off[0], on[0]), "overlap changed the output"
    assert torch.equal(off[2], on[2]), "overlap changed the input gradient"
    assert all(torch.equal(off[1][n], on[1][n]) for n in off[1]), "overlap changed a parameter gradient"
    return {"ok": True}

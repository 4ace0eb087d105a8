"""Expert parallelism for the ScMoE layer, with the shortcut overlap.

`apply_expert_parallel(layer, ep_mesh, overlap)` shards the layer's FFN experts
over the `ep` mesh (DTensor Shard(0): rank r holds experts [r*E/ep, (r+1)*E/ep))
and replaces the layer's forward with one that exchanges tokens by all-to-all:

    route (fp32, local) -> sort (token, slot) pairs by expert; pairs that chose a
    zero-computation expert are resolved locally (identity x weight), never sent
    -> dispatch all-to-all -> local experts -> combine all-to-all -> weighted sum

With `overlap=True` the exchanges hide behind the layer's other branch, as the
shortcut allows (LongCat's ScMoE / SGLang's single-batch overlap):

    x += MLA0(x);  y = norm(x)
    start dispatch(y)          || x += MLP0(y)
    experts; start combine     || x += MLA1(x); x += MLP1(x)
    x += wait combine

Backward overlaps the same way (see `mdp.ep_comm`). With `overlap=False` every
exchange is waited right away: the same operations in the same order on the
same data, so outputs and gradients are bitwise identical on and off.

Gradients: expert parameters are not FSDP-managed; `sync_expert_grads` sums
their gradients over the `dp_rest` ranks that hold the same experts.
"""

from __future__ import annotations

import types
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import DTensor, Shard, distribute_tensor

from mdp.ep_comm import all_to_all_start, all_to_all_wait, exchange_counts


@dataclass
class EPConfig:
    group: dist.ProcessGroup
    size: int
    rank: int
    overlap: bool


@dataclass
class _Pending:
    shape: torch.Size
    x2: torch.Tensor
    routing: object
    pairs: torch.Tensor  # [n_real] flat (token*K + slot) ids, sorted by expert
    in_splits: list[int]
    out_splits: list[int]
    recv_counts: list[int]  # [ep * E_local] source-major
    token: torch.Tensor | None = None
    handle: object = None


def apply_expert_parallel(layer: nn.Module, ep_mesh: DeviceMesh, overlap: bool = True) -> None:
    """Shard `layer.mlp.experts` over ep_mesh and switch the layer to all-to-all dispatch."""
    moe = layer.mlp
    ex = moe.experts
    ep = ep_mesh.size()
    if ex is None:
        raise ValueError("expert parallelism needs FFN experts (n_routed_experts > 0)")
    if ex.num_experts % ep:
        raise ValueError(f"n_routed_experts={ex.num_experts} is not divisible by ep={ep}")
    for name in ("gate_up_proj", "down_proj"):
        p = getattr(ex, name)
        if not isinstance(p, DTensor):
            setattr(ex, name, nn.Parameter(distribute_tensor(p.detach(), ep_mesh, [Shard(0)])))
    layer._ep = EPConfig(ep_mesh.get_group(), ep, ep_mesh.get_local_rank(), overlap)
    layer.forward = types.MethodType(_ep_layer_forward, layer)


def expert_parameters(module: nn.Module) -> list[nn.Parameter]:
    """The expert-parallel parameters under `module`, in module order (the same on every rank)."""
    out: list[nn.Parameter] = []
    for m in module.modules():
        if hasattr(m, "_ep"):
            out.extend(m.mlp.experts.parameters())
    return out


def sync_expert_grads(params: list[nn.Parameter], dp_rest_group: dist.ProcessGroup | None, divide: int) -> None:
    """Sum expert gradients over the ranks holding the same experts, then divide
    (the trainer scales the loss by dp so that FSDP's mean becomes a sum)."""
    for p in params:  # same order on every rank: the all-reduces must pair up
        if p.grad is None:
            continue
        g = p.grad.to_local() if isinstance(p.grad, DTensor) else p.grad
        if dp_rest_group is not None and dist.get_world_size(dp_rest_group) > 1:
            dist.all_reduce(g, group=dp_rest_group)
        if divide != 1:
            g.div_(divide)


def _ep_layer_forward(self, x: torch.Tensor, ctx) -> torch.Tensor:
    cfg: EPConfig = self._ep
    x = x + self.self_attn[0](self.input_layernorm[0](x), ctx)
    y = self.post_attention_layernorm[0](x)
    pend = _start(self.mlp, y, cfg)
    if not cfg.overlap:
        _experts(self.mlp, pend, cfg)
        s = _finish(self.mlp, pend)
    x = x + self.mlps[0](y)
    if cfg.overlap:
        _experts(self.mlp, pend, cfg)
    x = x + self.self_attn[1](self.input_layernorm[1](x), ctx)
    x = x + self.mlps[1](self.post_attention_layernorm[1](x))
    if cfg.overlap:
        s = _finish(self.mlp, pend)
    return x + s


def _start(moe, y: torch.Tensor, cfg: EPConfig) -> _Pending:
    shape = y.shape
    x2 = y.reshape(-1, shape[-1])
    routing = moe.route(x2)
    n_real_experts = moe.num_real
    k = routing.indices.shape[1]
    flat = routing.indices.reshape(-1)
    key = torch.where(flat < n_real_experts, flat, torch.full_like(flat, n_real_experts))
    order = torch.argsort(key, stable=True)
    counts = torch.bincount(key, minlength=n_real_experts + 1)[:n_real_experts]
    recv = exchange_counts(counts, cfg.group)
    per = n_real_experts // cfg.size
    cnt, rc = counts.tolist(), recv.tolist()  # host sync: split sizes of the exchange
    in_splits = [sum(cnt[r * per : (r + 1) * per]) for r in range(cfg.size)]
    out_splits = [sum(rc[s * per : (s + 1) * per]) for s in range(cfg.size)]
    pairs = order[: sum(cnt)]
    send = x2.index_select(0, pairs // k)  # zero-expert pairs never leave the rank
    token, handle = all_to_all_start(send, cfg.group, in_splits, out_splits)
    return _Pending(shape, x2, routing, pairs, in_splits, out_splits, rc, token, handle)


def _experts(moe, p: _Pending, cfg: EPConfig) -> None:
    recv = all_to_all_wait(p.token, p.handle)  # [R, H], source-major, expert-minor
    ex = moe.experts
    gate_up = ex.gate_up_proj.to_local()  # [E_local, 2I, H]
    down = ex.down_proj.to_local()  # [E_local, H, I]
    per = gate_up.shape[0]
    # source-major -> expert-major, so each local expert sees one contiguous block
    starts, pos = [], 0
    for c in p.recv_counts:
        starts.append(pos)
        pos += c
    perm, sizes = [], []
    for e in range(per):
        n = 0
        for s in range(cfg.size):
            j = s * per + e
            perm.extend(range(starts[j], starts[j] + p.recv_counts[j]))
            n += p.recv_counts[j]
        sizes.append(n)
    perm_t = torch.tensor(perm, dtype=torch.long, device=recv.device)
    xe = recv.index_select(0, perm_t)
    outs = []
    for e, block in enumerate(xe.split(sizes)):
        if block.shape[0] == 0:
            outs.append(block)
            continue
        h = block @ gate_up[e].transpose(0, 1).to(block.dtype)
        gate, up = h.split(ex.inner, dim=-1)
        outs.append((F.silu(gate) * up) @ down[e].transpose(0, 1).to(block.dtype))
    ye = torch.cat(outs) if outs else xe
    back = _unpermute(ye, perm_t)
    p.token, p.handle = all_to_all_start(back, cfg.group, p.out_splits, p.in_splits)


def _unpermute(ye: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.numel(), device=perm.device)
    return ye.index_select(0, inv)


def _finish(moe, p: _Pending) -> torch.Tensor:
    got = all_to_all_wait(p.token, p.handle)  # [n_real, H] in `pairs` order
    m, k = p.routing.indices.shape
    h = p.x2.shape[-1]
    pair_out = torch.zeros(m * k, h, dtype=torch.float32, device=got.device).index_copy(0, p.pairs, got.float())
    real = p.routing.indices.reshape(-1) < moe.num_real
    w = torch.where(real, p.routing.weights.reshape(-1).float(), 0.0)
    y_real = (pair_out * w[:, None]).view(m, k, h).sum(1)
    return moe.combine(p.x2, p.routing, y_real).view(p.shape)

"""BalanceData (unit) and the ModalityBridge round trip (run by test_mdp_world2 in a real gloo group)."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from mdp.bridge import BalanceData, ModalityBridge, balance


def test_balance_is_deterministic_and_balanced() -> None:
    costs = [9.0, 1.0, 7.0, 3.0, 3.0, 5.0, 0.0]
    plan = balance(costs, 3)
    assert plan == balance(costs, 3)
    assert sorted(i for b in plan.assignment for i in b) == list(range(len(costs)))
    # LPT bound: max load <= mean + max item
    assert plan.max_load <= sum(costs) / 3 + max(costs)
    assert plan.max_load == 10.0  # {9,1,0}, {7,3}, {5,3}
    with pytest.raises(ValueError, match="num_ranks"):
        balance(costs, 0)


def round_trip(rank: int, world: int) -> dict:
    """Run on every rank of a group: gather + scatter with several chunk counts, checked
    against the known item order and the analytic gradient; returns all ranks' grads."""
    group = dist.group.WORLD
    hidden = 10
    g = torch.Generator().manual_seed(0)
    item_tokens = [3, 0, 5, 2, 7, 1, 4]  # incl. an empty item
    items = [torch.randn(n, hidden, generator=g, dtype=torch.float64) for n in item_tokens]
    upstream = torch.randn(sum(item_tokens), hidden, generator=g, dtype=torch.float64)
    plan, mine = BalanceData(group).distribute(
        list(range(len(items))) if rank == 0 else None, [float(n) for n in item_tokens] if rank == 0 else None
    )
    assert list(mine) == list(plan.assignment[rank])
    results = {}
    for chunks in (1, 3, 16):
        weight = torch.full((1,), 2.0, dtype=torch.float64, requires_grad=True)  # a stand-in encoder parameter
        local = torch.cat([items[i] for i in mine]) * weight if mine else torch.zeros(0, hidden, dtype=torch.float64) * weight
        out = ModalityBridge(group, num_chunks=chunks).gather(local, plan, item_tokens)
        if rank == 0:
            assert torch.equal(out, torch.cat(items) * 2.0), "gathered embeddings not in item order"
            out.backward(upstream)
        else:
            assert out.shape == (0, hidden)
            out.backward(torch.zeros_like(out))
        # d/dweight = sum over my tokens of upstream * item value: the scatter hands back exactly my rows
        starts = [sum(item_tokens[:i]) for i in range(len(item_tokens))]
        mine_up = torch.cat([upstream[starts[i] : starts[i] + item_tokens[i]] for i in mine]) if mine else upstream[:0]
        mine_x = torch.cat([items[i] for i in mine]) if mine else upstream[:0]
        expected = (mine_up * mine_x).sum()
        assert torch.allclose(weight.grad[0], expected, rtol=0, atol=1e-12)
        grads = [torch.zeros(1, dtype=torch.float64) for _ in range(world)]
        dist.all_gather(grads, weight.grad.detach())
        results[chunks] = torch.cat(grads)
    return results

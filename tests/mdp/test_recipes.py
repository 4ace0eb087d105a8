"""Recipes: typed sections, and `--set` parsing (sections, flat names, dict entries, None, errors)."""

from __future__ import annotations

import dataclasses

import pytest

from mdp.overrides import FORMER, leaf_paths, resolve
from mdp.recipes import RECIPES, SECTIONS, Recipe, get_recipe


def test_sections_and_unset_values() -> None:
    r = get_recipe("omni-mini")
    assert r.curriculum.stage_steps == {"speech": 1500, "vision": 2000, "dialogue": 6000}
    assert list(r.curriculum.stage_steps) == ["speech", "vision", "dialogue"]  # curriculum order
    assert r.pretrain.steps == {"vision": 600, "audio": 1200} and r.pretrain.augment == ()
    assert r.data.modalities == ("image", "video", "audio")
    d = get_recipe("debug")
    assert (d.parallel.dp, d.parallel.enc_shard, d.curriculum.caption_weight, d.budget.time_s) == (None,) * 4
    assert d.optim.betas == (0.9, 0.95) and d.checkpoint_dir == "runs/debug/checkpoints"
    assert set(SECTIONS) == {"data", "optim", "loss", "parallel", "numerics", "output", "budget", "curriculum",
                             "pretrain", "heldout"}


def test_section_paths_and_flat_names() -> None:
    r = get_recipe("debug").override(["optim.lr=1e-3", "parallel.dp=2", "steps=7", "ep=2", "save_every=5",
                                      "ep_overlap=off", "output.out_dir=o"])
    assert (r.optim.lr, r.parallel.dp, r.steps, r.parallel.ep, r.output.save_every) == (1e-3, 2, 7, 2, 5)
    assert r.parallel.ep_overlap is False and r.checkpoint_dir == "o/checkpoints"
    # flat names whose leaf moved or is not unique
    r = get_recipe("debug").override(["lr=2e-3", "pack=p.npz", "encoder_steps=vision:3", "time_budget_s=60",
                                      "eval_pack=h.npz", "data_workers=3", "curriculum=omni-mini", "fit_budget=1"])
    assert (r.optim.lr, r.curriculum.pack, r.pretrain.steps, r.budget.time_s) == (2e-3, "p.npz", {"vision": 3}, 60.0)
    assert (r.heldout.pack, r.data.workers, r.curriculum.kind, r.budget.fit) == ("h.npz", 3, "omni-mini", True)
    # every flat alias names a real leaf
    assert set(FORMER.values()) <= set(leaf_paths(Recipe))


def test_dicts_tuples_and_entries() -> None:
    base = get_recipe("omni-mini")
    r = base.override(["stage_steps=speech:300,vision:2"])
    assert r.curriculum.stage_steps == {"speech": 300, "vision": 2}
    r = base.override(["curriculum.stage_steps.speech=7", "stage_steps.dialogue=none", "stage_seq_len.vision=99"])
    assert r.curriculum.stage_steps == {"speech": 7, "vision": 2000}
    assert r.curriculum.stage_seq_len["vision"] == 99
    assert base.curriculum.stage_steps["speech"] == 1500  # the preset is untouched
    assert base.override(["encoder_steps="]).pretrain.steps == {}
    r = base.override(["modalities=image,audio", "encoder_augment=vision,audio", "optim.betas=0.8,0.9"])
    assert (r.data.modalities, r.pretrain.augment, r.optim.betas) == (("image", "audio"), ("vision", "audio"),
                                                                       (0.8, 0.9))


def test_none_and_optionals() -> None:
    r = get_recipe("debug").override(["dp=2", "caption_weight=0", "manifest=m.jsonl"])
    assert (r.parallel.dp, r.curriculum.caption_weight, r.data.manifest) == (2, 0.0, "m.jsonl")
    r = r.override(["dp=none", "curriculum.caption_weight=None", "manifest="])
    assert (r.parallel.dp, r.curriculum.caption_weight, r.data.manifest) == (None, None, None)


@pytest.mark.parametrize("pair, msg", [
    ("stepz=1", "unknown recipe field 'stepz'; known: .*optim.lr"),
    ("optim.lrr=1", r"unknown recipe field 'optim.lrr'; known in optim: .*'lr'"),
    ("steps", "field=value"),
    ("steps=x", "steps is an int, got 'x'"),
    ("ep_overlap=maybe", "is a bool"),
    ("dp=none2", "parallel.dp is an int"),
    ("pp=none", "parallel.pp is an int"),  # not Optional
    ("samples=3", None),  # a unique leaf (heldout.samples)
    ("batch=3", None),  # pretrain.batch
    ("stage_steps=speech", "KEY:VALUE"),
    ("stage_steps.speech=x", "stage_steps.speech is an int"),
    ("optim.betas=0.9", "takes 2 comma-separated values"),
    ("optim.lr.x=1", "not a dict"),
])
def test_override_errors(pair, msg) -> None:
    if msg is None:
        get_recipe("debug").override([pair])
        return
    with pytest.raises(ValueError, match=msg):
        get_recipe("debug").override([pair])


@dataclasses.dataclass(frozen=True)
class _A:
    x: int = 0


@dataclasses.dataclass(frozen=True)
class _B:
    x: int = 0


@dataclasses.dataclass(frozen=True)
class _TwoSections:
    a: _A = dataclasses.field(default_factory=_A)
    b: _B = dataclasses.field(default_factory=_B)


def test_ambiguous_leaf_names_the_candidates() -> None:
    with pytest.raises(ValueError, match=r"'x' is ambiguous: name one of \['a.x', 'b.x'\]"):
        resolve(_TwoSections, "x")
    assert resolve(_TwoSections, "b.x") == ("b.x", None)


def test_presets_are_frozen_and_copied() -> None:
    r = get_recipe("omni-mini")
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.optim.lr = 1.0  # type: ignore[misc]
    r2 = r.replace(steps=3, output={"out_dir": "x"})
    assert (r2.steps, r2.output.out_dir, r2.output.save_every) == (3, "x", 250)
    assert RECIPES["omni-mini"].output.out_dir == "runs/omni-mini"

"""Config flavors, their round trip, and the sizes of the backbone flavors."""

from __future__ import annotations

import json

import pytest

from omni.config import (
    LLMConfig,
    OmniConfig,
    flavor_names,
    from_dict,
    get_llm_config,
    get_omni_config,
    to_dict,
)
from omni.llm.params import count_params


def test_llm_flavors_exist():
    assert {"debug", "a1b", "longcat-flash"} <= set(flavor_names("llm"))


@pytest.mark.parametrize("name", ["debug", "a1b", "longcat-flash"])
def test_llm_round_trip(name):
    cfg = get_llm_config(name)
    assert from_dict(LLMConfig, json.loads(json.dumps(to_dict(cfg)))) == cfg


def test_omni_round_trip():
    cfg = get_omni_config("debug")
    assert from_dict(OmniConfig, json.loads(json.dumps(to_dict(cfg)))) == cfg


def test_unknown_field_and_flavor_errors():
    with pytest.raises(ValueError, match="hidden_sise"):
        from_dict(LLMConfig, {"hidden_sise": 3})
    with pytest.raises(KeyError, match="unknown llm flavor"):
        get_llm_config("nope")


def test_longcat_flash_size_on_meta():
    """The real configuration: ~560B total, 18.6B-31.3B active (tech report)."""
    pc = count_params(get_llm_config("longcat-flash"))
    assert 559e9 < pc.total < 562e9
    assert 18.4e9 < pc.active_min < 18.8e9
    assert 31.1e9 < pc.active_max < 31.5e9


def test_a1b_size():
    """The one-GPU benchmark flavor: 6.0B parameters, 1.13B-1.74B active.

    transformers' module reports 7.6B for the same config because it also
    allocates gate/up weights for the 32 zero-computation experts of every
    layer (1.6B never used); we do not."""
    cfg = get_llm_config("a1b")
    pc = count_params(cfg)
    assert 5.9e9 < pc.total < 6.1e9
    assert 1.7e9 < pc.active_max < 1.8e9
    assert 1.5e9 < pc.expected_active(cfg) < 1.6e9
    wasted = 2 * cfg.zero_expert_num * cfg.expert_ffn_hidden_size * cfg.hidden_size * cfg.num_layers
    assert 7.5e9 < pc.total + wasted < 7.7e9

"""How commands pick a model when no --model is given."""

from __future__ import annotations

import argparse

from omni.config import get_omni_config
from omni.defaults import FALLBACK_FLAVOR, default_model_dir, resolve_model


def test_resolution_order(tmp_path):
    empty = tmp_path / "none"
    assert default_model_dir(str(empty)) is None
    assert resolve_model(None, None, str(empty)) == (None, FALLBACK_FLAVOR)
    shipped = tmp_path / "default"
    shipped.mkdir()
    (shipped / "config.json").write_text("{}")
    assert resolve_model(None, None, str(shipped)) == (str(shipped), None)
    assert resolve_model("ckpt", None, str(shipped)) == ("ckpt", None)  # --model wins
    assert resolve_model(None, "a1b", str(shipped)) == (None, "a1b")  # explicit flavor: random weights


def test_chat_loads_the_shipped_default_when_present(tmp_path, monkeypatch):
    import omni.defaults as defaults
    from omni.commands.chat import load_model
    from omni.model import OmniModel

    saved = OmniModel(get_omni_config("debug")).eval()
    saved.save_pretrained(str(tmp_path / "default"))
    monkeypatch.setattr(defaults, "DEFAULT_MODEL_DIR", str(tmp_path / "default"))
    args = argparse.Namespace(model=None, flavor=None, device="cpu", dtype="float32", seed=123)
    loaded = load_model(args)
    a = saved.state_dict()
    b = loaded.state_dict()
    assert a.keys() == b.keys()
    assert all((a[k] == b[k]).all() for k in a)  # the trained weights, not a fresh random init

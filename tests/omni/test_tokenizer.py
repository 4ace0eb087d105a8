"""The shipped tokenizer, special-string substitution and streaming detokenization."""

from __future__ import annotations

import json

import pytest

from omni.config import get_omni_config
from omni.tokenizer import SPECIAL_STRINGS, build_default_tokenizer, load_tokenizer, mask_token


def test_default_tokenizer_fits_debug_vocab(tok):
    assert tok.vocab_size <= get_omni_config("debug").llm.vocab_size
    sp = tok.special
    assert (sp.bos, sp.eos, sp.pad) == (1, 2, 3)
    ids = {sp.audio_start, sp.audio_end, sp.audio_pad, sp.image_pad, sp.pause}
    assert len(ids) == 5


def test_special_strings_become_reserved_tokens(tok):
    ids = tok.encode("a<|audio|><|audio_pad|><|audio_pad|><|/audio|><|image_pad|></pause>b")
    sp = tok.special
    assert ids[1:7] == [sp.audio_start, sp.audio_pad, sp.audio_pad, sp.audio_end, sp.image_pad, sp.pause]
    vocab = tok.hf.get_vocab()
    assert vocab[mask_token("<|audio_pad|>")] == sp.audio_pad
    assert mask_token(SPECIAL_STRINGS[0]) == "<mask_110>"


def test_decode_and_incremental_detok(tok):
    text = "The red star is moving up.</pause>It is fast. Héllo"
    ids = tok.encode(text)
    assert tok.decode(ids) == "The red star is moving up. It is fast. Héllo"
    d = tok.incremental()
    pieces = [d.push(i) for i in ids]
    assert "".join(pieces) == tok.decode(ids)
    # format tokens and negative ids never show
    assert tok.decode([tok.special.bos, -1, *tok.encode("ok"), tok.special.eos]) == "ok"


def test_build_is_deterministic_and_loads_any_hf_dir(tmp_path):
    a = build_default_tokenizer(["hello world", "USER:", "red square"], tmp_path / "a", vocab_size=300)
    b = build_default_tokenizer(["hello world", "USER:", "red square"], tmp_path / "b", vocab_size=300)
    assert a.encode("hello red square") == b.encode("hello red square")
    assert 256 + 14 < load_tokenizer(tmp_path / "a").vocab_size <= 300


def test_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_tokenizer(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no tokenizer"):
        load_tokenizer(tmp_path / "empty")
    # a tokenizer without the reserved tokens is refused with the token named
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    t = Tokenizer(models.WordLevel({"<unk>": 0, "a": 1}, unk_token="<unk>"))
    t.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=t, unk_token="<unk>").save_pretrained(str(tmp_path / "bad"))
    with pytest.raises(ValueError, match="mask_110"):
        load_tokenizer(tmp_path / "bad")
    assert json.loads((tmp_path / "bad" / "tokenizer_config.json").read_text())

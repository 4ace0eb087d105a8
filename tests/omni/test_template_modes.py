"""Chat-template modes of checkpoints that have them: numbered rounds, the
/think_on / /think_off switch (refused without the mode), tool results, and a
reply opened with given text; the original layout is unchanged without them."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from omni.cli import main as cli_main
from omni.config import TemplateConfig, from_dict, get_omni_config, to_dict
from omni.generation import OmniRequest
from omni.realtime import RealtimeOmni
from omni.sequence import ChatFormat
from omni.sequence_stream import IncrementalBuilder

TALK = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"}, {"role": "user", "content": "lamp on"}]


def text_of(tok, run) -> str:
    return tok.hf.decode(run.ids.tolist())


def test_rounds_and_thinking_switch(tok):
    plain = ChatFormat(tok)
    assert text_of(tok, plain.render_text(TALK)) == (
        "SYSTEM:Be brief.</longcat_s>\nUSER:hi\nASSISTANT:hello</longcat_s>\nUSER:lamp on\nVOICE ASSISTANT:")
    with pytest.raises(ValueError, match="no thinking mode"):
        plain.render_text(TALK, think=True)
    flash = ChatFormat(tok, template=TemplateConfig(rounds=True, thinking=True))
    assert text_of(tok, flash.render_text(TALK, voice=False, think=True)) == (
        "SYSTEM:Be brief.</longcat_s>\n[Round 0] USER:hi\nASSISTANT:hello</longcat_s>\n"
        "[Round 1] USER:lamp on /think_on\nASSISTANT:")
    assert text_of(tok, flash.render_text(TALK[:2], think=False)).endswith("[Round 0] USER:hi /think_off\nVOICE ASSISTANT:")
    assert text_of(tok, flash.tool_turn('{"on": true}')) == (
        'USER:<longcat_tool_response>{"on": true}</longcat_tool_response>\n')


def test_the_template_is_saved_with_the_config():
    cfg = dataclasses.replace(get_omni_config("debug"), template=TemplateConfig(rounds=True, thinking=True))
    back = from_dict(type(cfg), to_dict(cfg))
    assert back.template == TemplateConfig(rounds=True, thinking=True)
    old = to_dict(get_omni_config("debug"))
    del old["template"]  # a checkpoint written before the modes existed
    assert from_dict(type(cfg), old).template == TemplateConfig()


def test_streaming_builder_numbers_rounds_across_spoken_and_text_turns_and_rollback(tok):
    b = IncrementalBuilder(ChatFormat(tok, template=TemplateConfig(rounds=True)))
    first = b.open_user_turn()
    snap = b.snapshot()
    assert text_of(tok, first) == "[Round 0] USER:"
    assert text_of(tok, b.add_text_turn("user", "hi")).endswith("[Round 1] USER:hi\n")
    assert "Round" not in text_of(tok, b.add_text_turn("tool", "ok"))
    b.restore(snap)  # a rollback takes the round number back too
    assert text_of(tok, b.add_text_turn("user", "again")).endswith("[Round 1] USER:again\n")


def test_prepare_puts_the_switch_at_the_end_of_the_user_turn(debug_model, tok):
    req = OmniRequest(text="what color is the star", think=True)
    with pytest.raises(ValueError, match="no thinking mode"):
        debug_model.prepare(req)
    saved = debug_model.fmt
    try:
        debug_model.fmt = ChatFormat(tok, saved.codec_pad, TemplateConfig(rounds=True, thinking=True))
        text = text_of(tok, debug_model.prepare(req))
        assert text.endswith("[Round 0] USER:what color is the star /think_on\nVOICE ASSISTANT:")
        audio = OmniRequest(audio=np.zeros(16000, np.float32), think=False)
        assert text_of(tok, debug_model.prepare(audio)).endswith(" /think_off\nVOICE ASSISTANT:")
    finally:
        debug_model.fmt = saved


def test_a_reply_can_be_opened_with_given_text(debug_model, tok):
    rt = RealtimeOmni(debug_model, max_slots=1, capacity=256)
    slot = rt.open_slot()
    rt.prefill_text(slot, "user", "lamp on")
    rt.begin_response(slot, "<longcat_tool_call>")
    assert tok.hf.decode(rt.slot_token_ids(slot)).endswith("VOICE ASSISTANT:<longcat_tool_call>")
    rt.decode_step([slot])  # and it decodes on from there


def test_chat_think_needs_the_mode(capsys):
    assert cli_main(["chat", "--flavor", "debug", "--text", "hi", "--think"]) == 2
    assert "no thinking mode" in capsys.readouterr().err


def test_speech_gate_never_speaks_thinking_or_a_tool_call():
    """`omni chat`'s rule (the server's too): a step whose text starts, continues or ends
    a block speaks nothing; a possible tag start is held until a later step decides."""
    from omni.reply_stream import SpeechGate

    gate, spoken = SpeechGate(), []
    steps = ["<longcat_th", "ink>let me", " see</longcat", "_think>It is", " red.", " <", "b", "<longcat_tool_call>",
             '{"name": "x"}', "</longcat_tool_call>", " done"]
    for k, text in enumerate(steps):
        _, out = gate.step(text, [k], done=k == len(steps) - 1)
        spoken += out
    # 0-2: the thinking block; 3 ends it (its frame is dropped); 5 ("<") is held, then spoken with 6
    # ("b" shows it was no tag); 7-9: the tool call; 10: speech again
    assert spoken == [4, 5, 6, 10], spoken


def test_chat_writes_no_speech_for_a_thinking_section(tmp_path, monkeypatch, capsys):
    """A model that thinks aloud: the [thinking] goes to stderr, the answer to stdout, and
    the saved reply holds only the answer's steps' speech."""
    import types

    from omni.commands import chat

    cfg = get_omni_config("debug")
    cfg = dataclasses.replace(cfg, template=dataclasses.replace(cfg.template, thinking=True))
    model = types.SimpleNamespace(config=cfg, device="cpu", output_sample_rate=24000)
    texts = ["<longcat_think>", "hmm", "</longcat_think>", "It", " is", " red."]
    events = [types.SimpleNamespace(text=t, frame=np.zeros(4), audio=np.full(100, k + 1.0, np.float32),
                                    done=k == len(texts) - 1) for k, t in enumerate(texts)]
    import omni.generation

    monkeypatch.setattr(chat, "load_model", lambda args: model)
    monkeypatch.setattr(chat, "model_config", lambda args: cfg)
    monkeypatch.setattr(omni.generation, "stream", lambda *a, **k: iter(events))
    out = tmp_path / "reply.wav"
    rc = cli_main(["chat", "--flavor", "debug", "--text", "what color", "--think", "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "[thinking] hmm" in captured.err and captured.out.strip() == "It is red."
    import wave

    with wave.open(str(out)) as w:
        assert w.getnframes() == 300  # steps 3-5: nothing of the thinking steps 0-2

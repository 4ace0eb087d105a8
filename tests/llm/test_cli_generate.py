"""`omni generate` end to end on CPU (in-process, through the CLI dispatcher)."""

from __future__ import annotations

import pytest
import torch

from omni.cli import main
from omni.config import get_llm_config
from omni.llm import LongcatFlashForCausalLM, save_pretrained


def test_generate_flavor_debug(capsys):
    assert main(["generate", "--flavor", "debug", "--prompt", "Hello", "--max-new-tokens", "5", "--ids"]) == 0
    out = capsys.readouterr()
    ids = eval(out.out.strip().splitlines()[-1].removeprefix("ids:"))
    assert len(ids) == 5 and all(0 <= i < 512 for i in ids)
    assert "6 prompt + 5 new tokens" in out.err


def test_generate_checkpoint_matches_library(tmp_path, capsys):
    torch.manual_seed(3)
    m = LongcatFlashForCausalLM(get_llm_config("debug")).eval()
    m.init_weights(std=0.08)
    save_pretrained(m, str(tmp_path))
    argv = ["generate", "--checkpoint", str(tmp_path), "--prompt", "ab", "--max-new-tokens", "4", "--ids"]
    assert main(argv) == 0
    ids = eval(capsys.readouterr().out.strip().splitlines()[-1].removeprefix("ids:"))
    from omni.llm.generation import generate

    prompt = [1, ord("a") + 4, ord("b") + 4]
    ref = generate(m, [prompt], 4, eos_token_id=2)[0]
    assert ids == ref


def test_generate_errors(tmp_path, capsys):
    assert main(["generate", "--checkpoint", str(tmp_path / "none"), "--prompt", "x"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["generate", "--flavor", "debug", "--prompt", "x", "--tokenizer", str(tmp_path)]) == 2
    assert "cannot load a tokenizer" in capsys.readouterr().err
    assert main(["generate", "--flavor", "debug", "--prompt", "x", "--top-p", "0"]) == 2
    with pytest.raises(SystemExit):
        main(["generate", "--help"])


def test_generate_decode_modes(capsys):
    """auto is the eager step on a CPU; the compiled step (bf16 on a CPU) gives the eager step's
    greedy tokens; the modes a CPU cannot run are refused with the reason."""
    base = ["generate", "--flavor", "debug", "--prompt", "Hello", "--max-new-tokens", "4", "--ids", "--dtype", "bfloat16"]
    assert main(base) == 0
    out = capsys.readouterr()
    assert "decode eager" in out.err
    eager = eval(out.out.strip().splitlines()[-1].removeprefix("ids:"))
    assert main(base + ["--decode", "compiled"]) == 0
    out = capsys.readouterr()
    assert "decode compiled" in out.err
    assert eval(out.out.strip().splitlines()[-1].removeprefix("ids:")) == eager
    fp32 = ["generate", "--flavor", "debug", "--prompt", "x", "--max-new-tokens", "2"]
    assert main(fp32 + ["--decode", "compiled"]) == 2
    assert "needs --dtype bfloat16" in capsys.readouterr().err
    assert main(fp32 + ["--decode", "graph"]) == 2
    assert "needs --device cuda" in capsys.readouterr().err
    assert main(fp32 + ["--cuda-graph"]) == 2
    assert "needs --device cuda" in capsys.readouterr().err


def test_the_default_decode_falls_back_when_compiling_fails(monkeypatch, capsys):
    """On a machine where torch.compile fails, the default (compiled, as on a GPU) answers
    uncompiled with a warning naming the failure; asked for by name, the failure is the answer."""
    import torch._dynamo

    import omni.commands.generate as cmd
    import omni.llm.runner as runner

    def no_compiler(gm, example_inputs):
        raise RuntimeError("no compiler on this machine")

    def compile_layers(model, **kw):
        for layer in model.model.layers:
            layer.compile(backend=no_compiler, fullgraph=True)

    base = ["generate", "--flavor", "debug", "--prompt", "Hello", "--max-new-tokens", "4", "--ids", "--dtype", "bfloat16"]
    assert main(base + ["--decode", "eager"]) == 0
    eager = eval(capsys.readouterr().out.strip().splitlines()[-1].removeprefix("ids:"))
    monkeypatch.setattr(runner, "compile_layers", compile_layers)
    real = cmd.decode_mode
    monkeypatch.setattr(cmd, "decode_mode", lambda req, dev: "compiled" if req == "auto" else real(req, dev))  # a GPU's auto
    try:
        assert main(base) == 0
        out = capsys.readouterr()
        assert "compiling the decoder layers failed" in out.err and "no compiler on this machine" in out.err
        assert "decode eager" in out.err
        assert eval(out.out.strip().splitlines()[-1].removeprefix("ids:")) == eager
        with pytest.raises(torch._dynamo.exc.TorchDynamoException):
            main(base + ["--decode", "compiled"])
    finally:
        torch._dynamo.reset()

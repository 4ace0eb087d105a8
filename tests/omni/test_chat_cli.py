"""`omni chat` end to end on the default (random debug) model and on a saved model."""

from __future__ import annotations

import wave

import numpy as np
from PIL import Image

from omni.cli import main as cli_main


def test_chat_streams_text_and_writes_speech(debug_model, tmp_path, capsys):
    debug_model.save_pretrained(tmp_path / "model")
    Image.fromarray(np.full((56, 84, 3), 200, dtype=np.uint8)).save(tmp_path / "scene.png")
    out = tmp_path / "reply.wav"
    rc = cli_main(["chat", "--model", str(tmp_path / "model"), "--text", "what color is the star",
                   "--image", str(tmp_path / "scene.png"), "--out", str(out), "--max-new-tokens", "8"])
    assert rc == 0
    err = capsys.readouterr().err
    assert "speech frames" in err and "wrote" in err
    with wave.open(str(out)) as w:
        assert w.getframerate() == debug_model.output_sample_rate and w.getnframes() > 0


def test_chat_errors(tmp_path, capsys):
    assert cli_main(["chat", "--model", str(tmp_path / "missing"), "--text", "hi"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli_main(["chat"]) == 2
    assert "at least one of" in capsys.readouterr().err

"""Answer codec tokens: the project's codec (speech.Codec) over the assistant's answers."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from omni.synth.audio import read_wav, to_float
from omni.synth.build import read_jsonl
from omni.synth.codes import encode_answers, load_codec
from omni.synth.pack import Pack
from omni.synth.packing import write_pack
from omni.synth.validate import validate_split

torch = pytest.importorskip("torch")


def test_codes_are_written_validated_and_packed(built, tmp_path) -> None:
    from speech import Codec

    codec_dir = tmp_path / "codec"
    Codec.from_flavor("debug", seed=0).save_pretrained(codec_dir)
    codec = load_codec(codec_dir)
    data = tmp_path / "heldout"
    shutil.copytree(built["heldout"], data)
    info = encode_answers(data, codec, progress=False)
    rows = read_jsonl(data / "manifest.jsonl")
    assert info["answers"] == len({r["answer_audio"] for r in rows})
    assert validate_split(data, decode=False) == []
    sizes = codec.codebook_sizes
    for r in rows[:6]:
        codes = np.load(data / r["answer_codes"])
        wav = to_float(read_wav(data / r["answer_audio"])[0])
        assert codes.shape == (4, -(-len(wav) // codec.hop_length)) and codes.dtype == np.int16
        assert all(0 <= codes[k].min() and codes[k].max() < sizes[k] for k in range(4))
        # independent of the file: the codec run again on the same audio
        again = codec.encode(torch.from_numpy(wav))[0].numpy()
        assert np.array_equal(codes, again)
    write_pack(data, tmp_path / "h.npz", frame_size=56, max_mb=None, progress=False)
    pack = Pack(tmp_path / "h.npz")
    for i, r in enumerate(rows):
        assert np.array_equal(pack.answer_codes(i), np.load(data / r["answer_codes"]))


def test_missing_codec_dir_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_codec(tmp_path / "no-codec")


def test_the_shipped_codec_tokenizes_answers(built, tmp_path) -> None:
    import json

    codec = load_codec(None)  # speech/pretrained/default
    data = tmp_path / "few"
    shutil.copytree(built["heldout"], data)
    rows = read_jsonl(data / "manifest.jsonl")
    few = list({r["answer_audio"]: r for r in rows}.values())[:3]
    (data / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in few))
    encode_answers(data, codec, progress=False)
    for r in read_jsonl(data / "manifest.jsonl"):
        codes = np.load(data / r["answer_codes"])
        n = len(read_wav(data / r["answer_audio"])[0])
        assert codes.shape == (4, -(-n // codec.hop_length))
        assert all(0 <= codes[k].min() and codes[k].max() < codec.codebook_sizes[k] for k in range(4))

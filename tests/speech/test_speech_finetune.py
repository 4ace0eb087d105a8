"""Decoder fine-tuning: frozen parts stay bit-identical, tokens do not change, resume works;
mel band weights, clip-aligned crops, the world-speech generator, check-voice renderings,
and a training path that imports none of the CPU-side speech tools."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from speech import Codec
from speech.data import AudioCorpus, load_clips, load_labels, pack_npz
from speech.losses import MelLoss, mel_bin_weights, onset_weights, parse_band_weights
from speech.train import FREEZABLE, Trainer, TrainOptions, export_checkpoint, parse_freeze

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _clips(n: int = 4, seconds: float = 0.8, sr: int = 16000) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sr)) / sr
    out = []
    for _ in range(n):
        f0 = rng.uniform(100, 200)
        x = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 8))
        out.append((0.1 * x * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2)).astype(np.float32))
    return out


def _frozen_state(model) -> dict[str, torch.Tensor]:
    """Every tensor of the frozen parts, but the decoder's semantic table: that one is derived
    (out_proj of the semantic codebook, recomputed at every save), see `_check_semantic_table`."""
    names = [n for part in FREEZABLE.values() for n in part if n != "decoder.semantic_dequantizer"]
    return {k: v.clone() for k, v in model.state_dict().items() if any(k == n or k.startswith(n + ".") for n in names)}


def _check_semantic_table(model, start) -> None:
    table = model.decoder.semantic_dequantizer.dequant.weight.detach().cpu()
    assert torch.allclose(table, model.semantic_quantizer.embedding_table().detach().cpu(), atol=1e-6)
    # the start codec stored it in float16: the same table up to that rounding
    assert torch.allclose(table, start.model.decoder.semantic_dequantizer.dequant.weight, atol=2e-3, rtol=2e-3)


@pytest.fixture()
def start_codec(tmp_path) -> str:
    """A debug codec saved in float16, like the shipped one (so an fp16 export is exact)."""
    torch.manual_seed(0)
    codec = Codec.from_flavor("debug")
    # non-trivial BatchNorm statistics, as in a trained codec
    codec.model.latent_norm.running_mean.uniform_(-0.5, 0.5)
    codec.model.latent_norm.running_var.uniform_(0.5, 2.0)
    path = str(tmp_path / "start")
    codec.save_pretrained(path, torch.float16)
    return path


def _opts(tmp_path, start: str, steps: int, **kw) -> TrainOptions:
    base = dict(out_dir=str(tmp_path / "ft"), steps=steps, batch_size=2, segment_seconds=0.36, lr=2e-3,
                warmup_steps=2, adv_start=1.0, log_every=2, progress=False, init_from=start,
                freeze=("encoder", "quantizer"), aligned_share=0.5, mel_band_weights="0-1000:2",
                mel_onset_weight=2.0)
    base.update(kw)
    return TrainOptions(**base)


@pytest.mark.slow
def test_finetune_decoder_keeps_tokens_and_resumes(tmp_path, start_codec) -> None:
    clips = _clips()
    before = Codec.from_pretrained(start_codec)
    frozen_before = _frozen_state(before.model)
    dec_before = {k: v.clone() for k, v in before.model.decoder.decoder.state_dict().items()}
    wav = torch.from_numpy(np.concatenate(clips))

    trainer = Trainer(_opts(tmp_path, start_codec, 6), clips)
    assert trainer.tokens_frozen and trainer.cfg == before.cfg  # the codec directory brings its config
    assert all(not p.requires_grad for m in trainer.frozen for p in m.parameters())
    history = trainer.run()
    assert history[-1]["step"] == 6 and "mel_weighted" in history[-1]

    # frozen parts bit-identical (BatchNorm statistics included), the decoder changed
    after = _frozen_state(trainer.model)
    assert after.keys() == frozen_before.keys() and len(after) > 10
    for k in after:
        assert torch.equal(after[k].cpu(), frozen_before[k]), k
    _check_semantic_table(trainer.model, before)
    dec_after = trainer.model.decoder.decoder.state_dict()
    assert any(not torch.equal(dec_after[k].cpu(), v) for k, v in dec_before.items())

    # the same tokens for the same audio: trained codec, and its fp16 export
    ft = Codec.from_pretrained(tmp_path / "ft" / "codec")
    export_checkpoint(str(tmp_path / "ft" / "ckpt.pt"), str(tmp_path / "ft16"), torch.float16)
    ft16 = Codec.from_pretrained(tmp_path / "ft16")
    codes = before.encode(wav)
    assert torch.equal(ft.encode(wav), codes) and torch.equal(ft16.encode(wav), codes)
    assert not torch.allclose(ft.decode(codes), before.decode(codes))
    # the export says what was frozen
    import json

    meta = json.loads((tmp_path / "ft16" / "config.json").read_text())["training"]
    assert meta["frozen"] == ["encoder", "quantizer"] and meta["steps"] == 6

    # resume: continues at step 6, parts stay frozen
    resumed = Trainer(_opts(tmp_path, start_codec, 8, resume=True), clips)
    assert resumed.step == 6 and len(resumed.history) == len(history)
    rows = resumed.run()
    assert rows[-1]["step"] == 8
    for k, v in _frozen_state(resumed.model).items():
        assert torch.equal(v.cpu(), frozen_before[k]), k
    assert torch.equal(Codec.from_pretrained(tmp_path / "ft" / "codec").encode(wav), codes)
    # resuming with other parts frozen is refused
    with pytest.raises(ValueError, match="freeze"):
        Trainer(_opts(tmp_path, start_codec, 10, resume=True, freeze=()), clips)


def test_eval_data_scores_labelled_clips(tmp_path, start_codec) -> None:
    clips = _clips(3, 0.5)
    pack = str(tmp_path / "eval.npz")
    pack_npz(clips, pack, labels=["assistant", "users", "users"])
    assert load_labels(pack) == ["assistant", "users", "users"] and len(load_clips(pack)) == 3
    trainer = Trainer(_opts(tmp_path, start_codec, 1, eval_data=pack), clips)
    row = trainer.evaluate()
    assert row["clips"] == 3 and {"mel", "mel_assistant", "mel_users"} <= row.keys()
    # unlabelled pack: one group
    pack_npz(clips, pack)
    assert load_labels(pack) is None


def test_parse_freeze_and_band_weights() -> None:
    assert parse_freeze("quantizer, encoder") == ("encoder", "quantizer") and parse_freeze("") == ()
    with pytest.raises(ValueError, match="decoder"):
        parse_freeze("decoder")
    bands = parse_band_weights("2000-8000:3")
    assert bands == [(2000.0, 8000.0, 3.0)]
    for bad in ("2000:3", "8000-2000:1", "0-100:0", "a-b:c"):
        with pytest.raises(ValueError):
            parse_band_weights(bad)
    w = mel_bin_weights(80, 16000, bands)
    assert abs(float(w.mean()) - 1) < 1e-5 and float(w[-1]) == pytest.approx(3 * float(w[0]))
    x, y = torch.randn(2, 8000), torch.randn(2, 8000)
    plain = MelLoss()
    weighted = MelLoss(band_weights=bands)
    assert torch.allclose(weighted.losses(y, x)[1], plain(y, x)) and not torch.allclose(weighted(y, x), plain(y, x))


def test_onset_weights_favour_the_start_of_speech() -> None:
    sr, hop = 16000, 128
    t = np.arange(int(0.5 * sr)) / sr
    tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    x = torch.from_numpy(np.concatenate([np.zeros(sr // 2, np.float32), tone]))[None]  # 0.5 s silence, 0.5 s tone
    mel = MelLoss().mel(x, 4 * hop)
    w = onset_weights(mel, hop / sr, 3.0)[0, 0]
    onset = int(0.5 * sr / hop)
    assert abs(float(w.mean()) - 1) < 1e-5
    after = w[onset + 2 : onset + int(0.12 * sr / hop)]  # the 150 ms after the onset
    assert float(after.min()) > 2 * float(w[: onset - 10].max())  # silence before weighs far less
    assert float(after.mean()) > float(w[-10:].mean())  # the steady tone later weighs less
    # the weighted loss differs from the plain one, which stays the log's "mel"
    y = 0.5 * x
    weighted, plain = MelLoss(onset_weight=3.0).losses(y, x)
    assert torch.allclose(plain, MelLoss()(y, x)) and not torch.allclose(weighted, plain)


def test_aligned_crops_start_at_clip_starts() -> None:
    lengths = [700, 900, 1200, 800]
    total = sum(lengths)
    ramp = np.arange(total, dtype=np.float32) / total
    clips, pos = [], 0
    for n in lengths:
        clips.append(ramp[pos : pos + n])
        pos += n
    corpus = AudioCorpus(clips)
    starts = set(np.cumsum([0] + lengths[:-1]).tolist())
    g = torch.Generator().manual_seed(0)
    crops = corpus.batch(32, 500, g, gain=(1.0, 1.0), aligned_share=1.0)
    first = {round(float(c[0]) * total) for c in crops}
    assert first <= {s for s in starts if s <= total - 500} and len(first) > 1
    # share 0 draws exactly as before (same generator stream)
    a = corpus.batch(4, 500, torch.Generator().manual_seed(1))
    b = corpus.batch(4, 500, torch.Generator().manual_seed(1), aligned_share=0.0)
    assert torch.equal(a, b)


def test_training_path_imports_no_cpu_side_tools(tmp_path, start_codec) -> None:
    """The GPU machines have no av, websockets, gradio, silero-vad, pocketsphinx or espeak-ng."""
    pack = str(tmp_path / "data.npz")
    pack_npz(_clips(2, 0.5), pack)
    code = textwrap.dedent(f"""
        import sys
        for name in ("av", "websockets", "gradio", "silero_vad", "pocketsphinx", "sounddevice"):
            sys.modules[name] = None  # importing any of them now raises ImportError
        import shutil
        shutil.which = lambda *a, **k: None  # and no espeak-ng / sox on PATH
        import speech.train_cli as cli
        parser = __import__("argparse").ArgumentParser()
        cli.add_arguments(parser)
        args = parser.parse_args(["--data", {pack!r}, "--out", {str(tmp_path / "run")!r}, "--device", "cpu",
                                  "--init-from", {start_codec!r}, "--finetune-decoder", "--steps", "1",
                                  "--batch-size", "1", "--segment-seconds", "0.24", "--adv-start", "1",
                                  "--eval-data", {pack!r}, "--no-progress"])
        assert cli.main(args) == 0
        bad = sorted(m for m in sys.modules if m.split(".")[0] in ("omni",) and m.startswith("omni.synth"))
        assert not bad, bad
        print("OK")
    """)
    env = dict(os.environ, PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-2000:]


needs_speech_tools = pytest.mark.skipif(
    shutil.which("espeak-ng") is None or shutil.which("sox") is None, reason="needs espeak-ng and sox"
)


def test_focus_answers_come_that_many_times_a_round() -> None:
    from omni.synth.codec_voice import answer_round, parse_focus
    from omni.synth.questions import answer_space

    focus = parse_focus("one:8, good morning:3")
    assert focus == {"one": 8, "good morning": 3}
    round_ = answer_round(focus)
    assert round_.count("one") == 8 and round_.count("good morning") == 3 and round_.count("two") == 1
    assert sorted(set(round_)) == sorted(answer_space()) and len(round_) == len(answer_space()) + 9
    assert answer_round() == list(answer_space())
    for bad in ("one", "one:0", "one:x", "onee:3"):
        with pytest.raises(ValueError):
            parse_focus(bad)


@needs_speech_tools
def test_world_speech_avoids_the_judged_renderings() -> None:
    from omni.synth.questions import all_question_texts, answer_space
    from omni.synth.recognize import RENDERING_OFFSETS, voice_renderings
    from omni.synth.voices import ASSISTANT_VOICE
    from omni.synth.codec_voice import generate_world_utterances

    judged = {(v.speed, v.pitch) for v in voice_renderings(ASSISTANT_VOICE, len(RENDERING_OFFSETS))}
    texts = set(answer_space()) | set(all_question_texts("train"))
    rows = list(generate_world_utterances(6.0, seed=3, progress=False))
    assert sum(len(a) for *_, a in rows) >= 6 * 16000
    for text, speed, pitch, audio in rows:
        assert text in texts and (speed, pitch) not in judged
        assert audio.dtype == np.float32 and not audio[-2000:].any()  # trailing silence


@needs_speech_tools
def test_check_voice_renderings() -> None:
    pytest.importorskip("pocketsphinx")
    from omni.synth.recognize import check_voice, voice_renderings
    from omni.synth.voices import ASSISTANT_VOICE

    setups = voice_renderings(ASSISTANT_VOICE, 3)
    assert setups[0] == ASSISTANT_VOICE and len({(v.speed, v.pitch) for v in setups}) == 3
    with pytest.raises(ValueError):
        voice_renderings(ASSISTANT_VOICE, 0)

    class Erase:
        def encode(self, wav):
            return wav[None]

        def decode(self, codes):
            return codes * 0

    res = check_voice(answers=["two", "left"], progress=False, codec=Erase(), renderings=3, with_original=True)
    assert res["bar"] == {"min_share": 0.8, "min_times": 3, "of": 3}
    codec, orig = res["conditions"]["codec"], res["conditions"]["original"]
    assert codec["per_rendering_correct"] == [0, 0, 0] and codec["answers_below_bar"] == ["left", "two"]
    assert orig["heard_correct_times"]["two"] >= 2 and res["correct"] == 0

"""The voice bank (`omni.synth.voice_bank`) and its use by the device training path:
more renderings of the pack's question texts, written with espeak-ng (sox or not),
heard as a random rendering of the same text at every augmented draw."""

from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.fixture(scope="module")
def bank_world(mini_pack, tmp_path_factory):
    from mdp.curriculum.data import answer_code_table
    from mdp.curriculum.tables import PackTables
    from omni.config import get_omni_config
    from omni.synth.pack import Pack
    from omni.synth.voice_bank import VoiceBank, build_voice_bank, write_voice_bank
    from omni.tokenizer import load_tokenizer

    pack = Pack(mini_pack)
    texts = sorted(set(pack.meta["clip_texts"]))
    path = tmp_path_factory.mktemp("bank") / "voices.npz"
    # one text the pack never says: kept in the bank, left out of the tables
    write_voice_bank(path, build_voice_bank(texts[:4] + ["an unrelated sentence"], 3, seed=5, workers=2, progress=False))
    bank = VoiceBank.load(path)
    cfg, tok = get_omni_config("mini"), load_tokenizer()
    codes = answer_code_table(pack)
    plain = PackTables(pack, cfg, tok, codes, torch.device("cpu"))
    banked = PackTables(pack, cfg, tok, codes, torch.device("cpu"), bank=bank)
    return pack, bank, plain, banked, texts


def test_bank_renders_every_text_in_unseen_voices(bank_world):
    from omni.synth.audio import mulaw_decode
    from omni.synth.voices import ASSISTANT_VOICE, HELDOUT_VARIANTS

    _, bank, _, _, texts = bank_world
    assert len(bank) == 5 * 3 and sorted(set(bank.clip_texts)) == sorted(texts[:4] + ["an unrelated sentence"])
    assert bank.meta["espeak"].startswith("eSpeak NG") and "/" not in bank.meta["espeak"]  # no path of this machine
    voices = bank.meta["voices"]
    assert len(set(voices)) == len(voices)  # every rendering its own voice
    variants = {v.split("/")[0].split("+")[1] for v in voices}
    assert not variants & set(HELDOUT_VARIANTS) and ASSISTANT_VOICE.name not in {v.split("/")[0] for v in voices}
    for c in range(len(bank)):
        x = mulaw_decode(bank.clip_mulaw[bank.clip_offset[c]: bank.clip_offset[c + 1]])
        assert 0.3 * 16000 < len(x) < 6 * 16000 and np.abs(x).max() > 0.05  # speech, not silence


def test_bank_voices_are_seeded_per_text():
    from omni.synth.voice_bank import bank_voice

    assert bank_voice(3, "say hello", 2) == bank_voice(3, "say hello", 2)
    assert len({bank_voice(3, "say hello", k) for k in range(20)}) == 20
    assert bank_voice(3, "say hello", 0) != bank_voice(4, "say hello", 0)


def test_bad_bank_files_are_refused(tmp_path):
    from omni.synth.voice_bank import VoiceBank

    bad = tmp_path / "x.npz"
    np.savez(bad, clip_offset=np.zeros(2, np.int64))
    with pytest.raises(ValueError, match="not a voice bank"):
        VoiceBank.load(bad)
    (tmp_path / "y.npz").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a voice bank"):
        VoiceBank.load(tmp_path / "y.npz")


def test_synthesis_without_sox_resamples_with_torchaudio(monkeypatch):
    """The GPU machine has espeak-ng (scripts/espeak_portable.sh) but no sox."""
    import shutil

    from omni.synth import voices

    v = voices.Voice("en-us+m3", 160, 50)
    with_sox = voices.synthesize("how many squares are there", v).astype(np.float32)
    real_which = shutil.which
    monkeypatch.setattr(voices.shutil, "which", lambda name: None if name == "sox" else real_which(name))
    without = voices.synthesize("how many squares are there", v).astype(np.float32)
    assert without.dtype == np.float32 and abs(len(without) - len(with_sox)) <= 0.01 * len(with_sox)
    n = min(len(without), len(with_sox))
    corr = np.corrcoef(without[:n], with_sox[:n])[0, 1]
    assert corr > 0.95, corr  # the same samples up to the resampler's filter


def test_tables_list_every_rendering_of_a_text(bank_world):
    pack, bank, plain, banked, texts = bank_world
    n = len(plain.clip_len)
    assert len(banked.bank_keep) == 4 * 3  # the unrelated sentence is no pack clip's text
    assert len(banked.clip_len) == n + 12 and np.array_equal(banked.clip_len[:n], plain.clip_len)
    clip_texts = pack.meta["clip_texts"]
    for c in range(n):
        alts = banked.alt_ids[banked.alt_start[c]: banked.alt_start[c] + banked.alt_count[c]]
        assert alts[0] == c
        expect = 3 if clip_texts[c] in texts[:4] else 0
        assert len(alts) == 1 + expect
        for a in alts[1:]:
            b = int(banked.bank_keep[a - n])
            assert a >= n and bank.clip_texts[b] == clip_texts[c]
            # the same question and transcript token runs as the pack clip's
            assert banked.q_len[a] == banked.q_len[c] and banked.trx_len[a] == banked.trx_len[c]
            ids = lambda off, ln: banked.id_pool[off: off + ln].tolist()
            assert ids(banked.q_off[a], banked.q_len[a]) == ids(banked.q_off[c], banked.q_len[c])
            lo = int(banked.clip_offset[a])
            got = banked.clips[lo: lo + int(banked.clip_len[a])].numpy()
            assert np.array_equal(got, bank.clip_mulaw[bank.clip_offset[b]: bank.clip_offset[b + 1]])
    # the pack's own clips stay where they were
    assert torch.equal(banked.clips[: len(plain.clips)], plain.clips)


def test_planner_draws_renderings_only_when_augmenting(bank_world, tmp_path):
    from mdp.curriculum.data import read_stage_manifest
    from mdp.curriculum.plan import StepPlanner, draw
    from mdp.curriculum.stages import write_stage_manifest
    from mdp.curriculum.tables import record_arrays

    pack, bank, plain, banked, texts = bank_world
    manifest = str(tmp_path / "speech.jsonl")
    write_stage_manifest(pack, "speech", manifest, 200, 0)
    recs = record_arrays(read_stage_manifest(manifest, len(pack), pack.num_scenes, len(pack.answer_offset) - 1))
    idx = np.arange(200)
    # without a bank the draws are what they were (no extra draw shifts the generator)
    d0 = draw(np.random.default_rng(4), 200, len(plain.clip_len), augment=True, jitter=True)
    d1 = draw(np.random.default_rng(4), 200, len(plain.clip_len), augment=True, jitter=True, variants=False)
    assert "variant" not in d0 and all(np.array_equal(d0[k], d1[k]) for k in d0)
    d = draw(np.random.default_rng(4), 200, len(banked.clip_len), augment=True, jitter=True, variants=True)
    assert all(np.array_equal(d[k], d0[k]) for k in d0 if k not in ("babble",))
    rows = StepPlanner(banked, read_stage_manifest(manifest, len(pack), pack.num_scenes, len(pack.answer_offset) - 1),
                       0, 200, 384).rows(idx, None, d)
    own = banked.sample_clip[recs["i"][rows.index]]
    n = len(plain.clip_len)
    said = np.array([pack.meta["clip_texts"][c] in texts[:4] for c in own])
    assert said.any()
    heard_bank = rows.clip >= n
    assert heard_bank[said].mean() > 0.5 and not heard_bank[~said].any()  # 3 of 4 renderings are the bank's
    clip_texts = pack.meta["clip_texts"]
    text_of = lambda c: clip_texts[c] if c < n else bank.clip_texts[int(banked.bank_keep[c - n])]
    assert all(text_of(c) == clip_texts[o] for c, o in zip(rows.clip, own))  # the same question, another voice
    assert len(set(rows.clip[heard_bank].tolist())) > 1
    # augmentation off (equality tests, held-out probes): the pack's own clip
    clean = draw(np.random.default_rng(4), 200, len(banked.clip_len), augment=False, jitter=False, variants=True)
    assert "variant" not in clean
    planner = StepPlanner(banked, read_stage_manifest(manifest, len(pack), pack.num_scenes, len(pack.answer_offset) - 1),
                          0, 200, 384, augment=False, jitter=False)
    rows = planner.rows(idx, None, clean)
    assert np.array_equal(rows.clip, banked.sample_clip[recs["i"][rows.index]])


def test_loader_path_refuses_a_bank(tmp_path, mini_pack):
    import torch.distributed as dist

    from mdp.curriculum.run import run_curriculum
    from mdp.recipes import get_recipe
    from mdp.train import init_distributed

    r = get_recipe("omni-mini-smoke").override(
        [f"pack={mini_pack}", f"out_dir={tmp_path / 'run'}", "train_path=loader", f"voice_bank={tmp_path / 'v.npz'}"])
    if dist.is_initialized():
        dist.destroy_process_group()
    init_distributed()
    try:
        with pytest.raises(ValueError, match="voice_bank needs train_path=device"):
            run_curriculum(r)
    finally:
        dist.destroy_process_group()


def test_audio_pretraining_learns_from_the_bank(bank_world):
    """With no pack questions in the pool (pool=0) the CTC loss falls on bank clips alone."""
    from contextlib import nullcontext

    from encoders.audio import StreamingAudioEncoder
    from mdp.curriculum.data import pack_cmvn
    from mdp.curriculum.pretrain import pretrain_audio
    from omni.config import get_omni_config
    from omni.tokenizer import load_tokenizer

    pack, bank, *_ = bank_world
    torch.manual_seed(0)
    audio = StreamingAudioEncoder(get_omni_config("mini").audio)
    mean, istd = pack_cmvn(pack, audio.frontend, num_clips=32)
    audio.frontend.cmvn.mean.copy_(mean)
    audio.frontend.cmvn.istd.copy_(istd)
    losses = pretrain_audio(audio, pack, load_tokenizer(), 30, 8, 2e-3, 0, nullcontext, pool=0, bank=bank,
                            bank_pool=15)
    assert sum(losses[-5:]) / 5 < 0.6 * losses[0], losses

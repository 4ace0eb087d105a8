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


def test_random_sentences_use_the_train_words_only():
    from omni.synth.sentences import LENGTHS, random_sentences, vocabulary

    texts = ["where is the red star", "how many circles", "say hello"]
    words = vocabulary(texts)
    got = random_sentences(words, 40, seed=1, exclude={"say hello"})
    assert len(set(got)) == 40 and "say hello" not in got
    assert all(set(s.split()) <= set(words) and LENGTHS[0] <= len(s.split()) <= LENGTHS[1] for s in got)
    assert got == random_sentences(words, 40, seed=1, exclude={"say hello"}) != random_sentences(words, 40, seed=2)
    assert random_sentences(words, 5, seed=1) == random_sentences(words, 40, seed=1)[:5]  # a prefix: n only adds
    with pytest.raises(ValueError):
        random_sentences([], 3)


def test_bank_sentences_join_the_audio_pool_not_the_tables(bank_world, tmp_path):
    """Random sentences are the bank's last clips, one each; the question clips are those of a
    bank without them; the curriculum's tables ignore them; the CTC pool takes all of them
    beside `bank_pool` question clips."""
    from contextlib import nullcontext

    from encoders.audio import StreamingAudioEncoder
    from mdp.curriculum.data import answer_code_table
    from mdp.curriculum.pretrain import pretrain_audio
    from mdp.curriculum.tables import PackTables
    from omni.config import get_omni_config
    from omni.synth.voice_bank import VoiceBank, build_voice_bank, write_voice_bank
    from omni.tokenizer import load_tokenizer

    pack, plain_bank, _, banked, texts = bank_world
    sentences = ["red star blue circle", "how many hello say"]
    path = tmp_path / "voices.npz"
    write_voice_bank(path, build_voice_bank(texts[:4] + ["an unrelated sentence"], 3, seed=5, workers=2,
                                            progress=False, sentences=sentences))
    bank = VoiceBank.load(path)
    assert len(bank) == len(plain_bank) + 2 and bank.sentence_clips == 2
    assert sorted(bank.clip_texts[-2:]) == sorted(sentences)
    questions = bank.without_sentences()
    assert questions.clip_texts == plain_bank.clip_texts and np.array_equal(questions.clip_mulaw, plain_bank.clip_mulaw)
    cfg, tok = get_omni_config("mini"), load_tokenizer()
    tables = PackTables(pack, cfg, tok, answer_code_table(pack), torch.device("cpu"), bank=bank)
    assert np.array_equal(tables.bank_keep, banked.bank_keep)

    heard: list[str] = []

    class Recording:
        def encode(self, text):
            heard.append(text)
            return tok.encode(text)

    audio = StreamingAudioEncoder(cfg.audio)
    pretrain_audio(audio, pack, Recording(), 1, 2, 1e-3, 0, nullcontext, pool=0, bank=bank, bank_pool=4)
    assert len(heard) == 4 + 2 and set(sentences) <= set(heard)


def test_sentence_transcriptions_on_the_device_path(bank_world, tmp_path):
    """A bank's random sentences become clips of their own in the tables; the speech stage's
    manifest transcribes them (a share of its lines, none without sentences); a sentence row
    hears the sentence's clip and its labels are the sentence's words + EOS; the loader path
    refuses such a line."""
    from mdp.curriculum.build import expand_segments
    from mdp.curriculum.data import ManifestError, read_stage_manifest
    from mdp.curriculum.plan import StepPlanner, draw, finalize
    from mdp.curriculum.stages import write_stage_manifest
    from mdp.curriculum.tables import PackTables
    from mdp.curriculum.data import answer_code_table
    from omni.config import get_omni_config
    from omni.synth.voice_bank import VoiceBank, build_voice_bank, write_voice_bank
    from omni.tokenizer import load_tokenizer

    pack, plain_bank, _, banked, texts = bank_world
    sentences = ["red star blue circle", "how many hello say", "left square purple"]
    path = tmp_path / "voices.npz"
    write_voice_bank(path, build_voice_bank(texts[:4] + ["an unrelated sentence"], 3, seed=5, workers=2,
                                            progress=False, sentences=sentences))
    bank = VoiceBank.load(path)
    cfg, tok = get_omni_config("mini"), load_tokenizer()
    t = PackTables(pack, cfg, tok, answer_code_table(pack), torch.device("cpu"), bank=bank)
    assert t.num_sentences == 3 and t.sentence_base == len(banked.clip_len) and len(t.clip_len) == t.sentence_base + 3
    for s in range(3):
        c = t.sentence_base + s
        b = len(bank) - 3 + s
        lo = int(t.clip_offset[c])
        assert np.array_equal(t.clips[lo: lo + int(t.clip_len[c])].numpy(),
                              bank.clip_mulaw[bank.clip_offset[b]: bank.clip_offset[b + 1]])
        assert t.id_pool[t.trx_off[c]: t.trx_off[c] + t.trx_len[c]].tolist() == tok.encode(bank.clip_texts[b]) + [tok.special.eos]

    none = write_stage_manifest(pack, "speech", str(tmp_path / "plain.jsonl"), 300, 0)
    again = write_stage_manifest(pack, "speech", str(tmp_path / "again.jsonl"), 300, 0, sentences=0)
    assert none == again and not any("sentence" in k for k in none)
    assert (tmp_path / "plain.jsonl").read_text() == (tmp_path / "again.jsonl").read_text()
    manifest = str(tmp_path / "speech.jsonl")
    counts = write_stage_manifest(pack, "speech", manifest, 300, 0, sentences=3)
    assert 0.08 < counts["transcribe/text/sentence"] / 300 < 0.3  # 0.25 of 1.5 of the mix
    assert write_stage_manifest(pack, "speech", str(tmp_path / "w0.jsonl"), 300, 0, sentences=3,
                                sentence_weight=0.0) == none
    records = read_stage_manifest(manifest, len(pack), pack.num_scenes, len(pack.answer_offset) - 1)
    sent = np.array([r.get("sentence", -1) for r in records])
    idx = np.flatnonzero(sent >= 0)[:8]
    d = draw(np.random.default_rng(1), len(idx), len(t.clip_len), augment=True, jitter=True, variants=True)
    rows = StepPlanner(t, records, 0, len(idx), 384).rows(idx, None, d)
    assert np.array_equal(rows.clip, t.sentence_base + sent[rows.index])
    batch = expand_segments(t, torch.from_numpy(finalize(t, rows, 384).seg), 384)
    for r, k in enumerate(rows.index):
        labels = batch["text_labels"][r][batch["text_labels"][r] >= 0].tolist()
        words = tok.encode(bank.clip_texts[len(bank) - 3 + int(sent[k])])
        assert labels[-len(words) - 1:] == words + [tok.special.eos]
    # a line naming a sentence the bank does not have, and the loader path: refused
    with pytest.raises(ValueError, match="random sentence"):
        StepPlanner(banked, records, 0, len(idx), 384).rows(idx, None, d)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"i": 0, "layout": "audio", "scene": -1, "answer": 0, "voice": false, "seed": 1, "sentence": 0}\n')
    with pytest.raises(ManifestError, match="sentence"):
        read_stage_manifest(str(bad), len(pack), pack.num_scenes, len(pack.answer_offset) - 1)


def test_bank_rewordings_stand_for_their_question(bank_world, tmp_path):
    """A bank's rewordings (`omni.synth.rewording`) come after its question renderings, each
    standing for the question it rewords: the tables list it among that question's
    renderings (heard in its place), with its own words as the typed question and as the
    transcript; the audio pre-training hears its own words."""
    from contextlib import nullcontext

    from encoders.audio import StreamingAudioEncoder
    from mdp.curriculum.data import answer_code_table
    from mdp.curriculum.pretrain import pretrain_audio
    from mdp.curriculum.tables import PackTables
    from omni.config import get_omni_config
    from omni.synth.rewording import split_question
    from omni.synth.voice_bank import VoiceBank, build_voice_bank, write_voice_bank
    from omni.tokenizer import load_tokenizer

    pack, plain_bank, _, banked, texts = bank_world
    rewordable = [t for t in texts if split_question(t) is not None][:3]
    assert len(rewordable) == 3
    path = tmp_path / "voices.npz"
    write_voice_bank(path, build_voice_bank(rewordable, 2, seed=5, workers=2, progress=False,
                                            sentences=["red star blue circle"], rewordings=2))
    bank = VoiceBank.load(path)
    assert bank.reworded_clips == 6 and bank.sentence_clips == 1 and len(bank) == 6 + 6 + 1
    said, stands = bank.clip_texts[6:12], bank.clip_questions[6:12]
    assert all(s != q and split_question(q) is not None for s, q in zip(said, stands))
    assert bank.clip_questions[:6] == bank.clip_texts[:6] and bank.clip_questions[-1] == "red star blue circle"
    assert bank.without_sentences().clip_questions == bank.clip_questions[:12]
    plain = bank.without_rewordings()  # the renderings and the sentence, audio and all
    assert plain.reworded_clips == 0 and plain.sentence_clips == 1 and len(plain) == 7
    assert plain.clip_texts == plain.clip_questions == bank.clip_texts[:6] + bank.clip_texts[12:]
    clip = lambda b, c: b.clip_mulaw[b.clip_offset[c]: b.clip_offset[c + 1]]
    assert all(np.array_equal(clip(plain, c), clip(bank, c if c < 6 else c + 6)) for c in range(7))

    cfg, tok = get_omni_config("mini"), load_tokenizer()
    t = PackTables(pack, cfg, tok, answer_code_table(pack), torch.device("cpu"), bank=bank)
    n = len(pack.meta["clip_texts"])
    ids = lambda off, ln: t.id_pool[off: off + ln].tolist()
    reworded = 0
    for c, text in enumerate(pack.meta["clip_texts"]):
        alts = t.alt_ids[t.alt_start[c]: t.alt_start[c] + t.alt_count[c]]
        for a in alts[1:]:
            b = int(t.bank_keep[a - n])
            assert bank.clip_questions[b] == text
            assert ids(t.trx_off[a], t.trx_len[a]) == tok.encode(bank.clip_texts[b]) + [tok.special.eos]
            if bank.clip_texts[b] != text:
                reworded += 1
                assert ids(t.q_off[a], t.q_len[a]) != ids(t.q_off[c], t.q_len[c])
            else:
                assert ids(t.q_off[a], t.q_len[a]) == ids(t.q_off[c], t.q_len[c])
    assert reworded >= 6  # every rewording (a text the pack says in several clips counts once per clip)

    heard: list[str] = []

    class Recording:
        def encode(self, text):
            heard.append(text)
            return tok.encode(text)

    pretrain_audio(StreamingAudioEncoder(cfg.audio), pack, Recording(), 1, 2, 1e-3, 0, nullcontext, pool=0,
                   bank=bank, bank_pool=12)
    assert set(said) <= set(heard)


def test_bank_rewordings_in_the_wide_style(tmp_path):
    """`--rewording-style wide` reaches the bank: its rewordings are the wide style's draws,
    and the bank says which style made them."""
    from omni.synth.rewording import reword
    from omni.synth.voice_bank import VoiceBank, build_voice_bank, write_voice_bank

    text = "what color is the square"
    path = tmp_path / "voices.npz"
    write_voice_bank(path, build_voice_bank([text], 1, seed=3, workers=1, progress=False, rewordings=2,
                                            rewording_style="wide"))
    bank = VoiceBank.load(path)
    assert bank.meta["rewording_style"] == "wide" and bank.reworded_clips == 2
    assert bank.clip_texts[1:] == [reword(text, 3, k, style="wide") for k in range(2)]
    assert bank.clip_questions == [text] * 3

"""Audio front end: fbank vs torchaudio's Kaldi fbank, CMVN stats files, splicing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torchaudio.compliance.kaldi as kaldi

from encoders.audio import num_encoder_frames
from encoders.fbank import GlobalCMVN, KaldiFbank, read_cmvn_stats, splice, write_kaldi_stats
from encoders.frontend import AudioFrontend
from omni.config import get_flavor

CFG = get_flavor("audio", "debug")


def _speechlike(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / 16000
    x = 0.3 * torch.sin(2 * torch.pi * 220 * t) * torch.sin(2 * torch.pi * 3 * t) + 0.05 * torch.randn(n, generator=g)
    return x.clamp(-1, 1)


@pytest.mark.parametrize("remove_dc", [False, True])
def test_fbank_matches_torchaudio_kaldi(remove_dc):
    import dataclasses

    cfg = dataclasses.replace(CFG, remove_dc_offset=remove_dc)
    wavs = torch.stack([_speechlike(12345, 0), _speechlike(12345, 1)])
    ours = KaldiFbank(cfg)(wavs)
    for i in range(2):
        ref = kaldi.fbank(
            wavs[i : i + 1] * 32768,
            num_mel_bins=cfg.num_mel_bins,
            frame_length=cfg.frame_length_ms,
            frame_shift=cfg.frame_shift_ms,
            dither=0.0,
            preemphasis_coefficient=cfg.preemphasis,
            remove_dc_offset=remove_dc,
            low_freq=cfg.low_freq,
            high_freq=cfg.high_freq,
            window_type="povey",
            sample_frequency=cfg.sample_rate,
            energy_floor=0.0,
        )
        assert ref.shape == ours[i].shape == ((12345 - 400) // 160 + 1, cfg.num_mel_bins)
        torch.testing.assert_close(ours[i], ref, atol=5e-4, rtol=1e-5)


def test_fbank_of_a_cut_stream_equals_the_whole():
    fb = KaldiFbank(CFG)
    x = _speechlike(8000)[None]
    whole = fb(x)
    cut = 160 * 20  # a frame boundary
    parts = torch.cat([fb(x[:, : cut + 240]), fb(x[:, cut:])], dim=1)
    torch.testing.assert_close(parts, whole)


def _stats(rng, dim=80, n=1000):
    feats = rng.normal(3.0, 2.0, size=(n, dim))
    return feats, np.stack([np.r_[feats.sum(0), n], np.r_[(feats**2).sum(0), 0.0]])


@pytest.mark.parametrize("fmt", ["binary", "text", "json"])
def test_cmvn_loads_kaldi_and_json_stats(tmp_path, fmt):
    rng = np.random.default_rng(0)
    feats, stats = _stats(rng)
    path = tmp_path / "global_cmvn"
    if fmt == "json":
        path.write_text(
            json.dumps({"mean_stat": stats[0, :-1].tolist(), "var_stat": stats[1, :-1].tolist(), "frame_num": 1000})
        )
    else:
        write_kaldi_stats(path, stats, binary=fmt == "binary")
    cmvn = GlobalCMVN(80)
    cmvn.load(path)
    np.testing.assert_allclose(cmvn.mean.numpy(), feats.mean(0), rtol=1e-5)
    np.testing.assert_allclose(cmvn.istd.numpy(), 1 / feats.std(0), rtol=1e-4)
    normed = cmvn(torch.tensor(feats, dtype=torch.float32))
    np.testing.assert_allclose(normed.mean(0).numpy(), 0, atol=1e-4)
    assert "cmvn.mean" in str(list(AudioFrontend(CFG).state_dict()))  # saved with the module


def test_cmvn_bad_files_name_the_file(tmp_path):
    cmvn = GlobalCMVN(80)
    empty = tmp_path / "empty_cmvn"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty_cmvn: CMVN stats file is empty"):
        cmvn.load(empty)
    small = tmp_path / "small_cmvn"
    write_kaldi_stats(small, np.ones((2, 11)))
    with pytest.raises(ValueError, match=r"small_cmvn: CMVN stats must be \[2, 81\]"):
        cmvn.load(small)
    trunc = tmp_path / "trunc_cmvn"
    write_kaldi_stats(trunc, np.ones((2, 81)))
    trunc.write_bytes(trunc.read_bytes()[:-8])
    with pytest.raises(ValueError, match="truncated"):
        read_cmvn_stats(trunc)
    junk = tmp_path / "junk_cmvn"
    junk.write_text("hello")
    with pytest.raises(ValueError, match="junk_cmvn: not a Kaldi"):
        read_cmvn_stats(junk)
    with pytest.raises(FileNotFoundError, match="nope"):
        read_cmvn_stats(tmp_path / "nope")


@pytest.mark.parametrize("t", [1, 7, 8, 9, 16, 37])
def test_splice_matches_explicit_loop(t):
    feats = torch.randn(2, t, 3)
    out = splice(feats, 7, 7, 8)
    n = -(-t // 8)
    assert out.shape == (2, n, 15 * 3)
    for j in range(n):
        ctx = [min(max(j * 8 + o, 0), t - 1) for o in range(-7, 8)]
        torch.testing.assert_close(out[:, j], feats[:, ctx].reshape(2, -1))


@pytest.mark.parametrize("n", [0, 399, 400, 1679, 1680, 1681, 16000, 16000 * 3 + 17])
def test_frame_count_helper_matches_full_pass(n):
    fe = AudioFrontend(CFG)
    feats, lens = fe(torch.zeros(1, n) + 0.01)
    assert feats.shape[1] == int(lens[0]) == num_encoder_frames(n, CFG)
    assert feats.shape[-1] == CFG.input_size == 1200
    if n >= 16000:
        assert abs(num_encoder_frames(n, CFG) - n / 1280) < 1  # 12.5 frames per second


def test_padded_batch_rows_splice_at_their_own_end():
    fe = AudioFrontend(CFG)
    x = torch.stack([_speechlike(9000, 0), _speechlike(9000, 1)])
    x[1, 5000:] = 0
    feats, lens = fe(x, torch.tensor([9000, 5000]))
    alone, alone_len = fe(x[1:, :5000])
    assert int(lens[1]) == int(alone_len[0])
    torch.testing.assert_close(feats[1, : lens[1]], alone[0])
    assert (feats[1, lens[1] :] == 0).all()

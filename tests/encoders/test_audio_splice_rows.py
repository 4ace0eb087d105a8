"""The batched per-row splice (`encoders.fbank.splice_rows`, used by the audio front
end's full pass) equals `splice` of each row alone, and the front end's lengths and
widths follow the loader's and the device path's rules."""

from __future__ import annotations

import torch

from encoders.fbank import splice, splice_rows


def test_splice_rows_equals_each_row_alone():
    torch.manual_seed(0)
    feats = torch.randn(5, 37, 4)
    frames = torch.tensor([37, 1, 0, 16, 9])  # a full row, one frame, none, an exact multiple, a ragged one
    width = 6
    out = splice_rows(feats, frames, 7, 7, 8, width)
    assert out.shape == (5, width, 15 * 4)
    for r, t in enumerate(frames.tolist()):
        alone = splice(feats[r : r + 1, :t], 7, 7, 8)[0]
        n = alone.shape[0]
        assert torch.equal(out[r, :n], alone)
        assert not out[r, n:].any()


def test_frontend_widths_host_and_buffer():
    from encoders.frontend import AudioFrontend
    from omni.config import get_flavor

    fe = AudioFrontend(get_flavor("audio", "debug"))
    wav = torch.randn(3, 16000)
    n = torch.tensor([16000, 3000, 200])
    a, la = fe(wav, n)
    b, lb = fe(wav, n, pad_to_buffer=True)
    assert torch.equal(la, lb) and la.tolist() == [fe.num_frames(int(v)) for v in n]
    assert a.shape[1] == int(la.max()) and b.shape[1] == fe.num_frames(16000)
    assert torch.equal(b[:, : a.shape[1]], a) and not b[:, a.shape[1] :].any()

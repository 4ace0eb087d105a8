"""Streaming audio encoder: chunked == full pass, emission timing, causality, reset."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from encoders.audio import StreamingAudioEncoder, lookahead_ms, num_encoder_frames, samples_needed
from omni.config import get_flavor

CFG = get_flavor("audio", "debug")
N = 16000 * 3 + 777  # 3 s and a ragged tail


@pytest.fixture(scope="module")
def enc():
    torch.manual_seed(0)
    m = StreamingAudioEncoder(CFG).eval()
    # non-trivial CMVN and memory taps so every path carries signal
    with torch.no_grad():
        m.frontend.cmvn.mean.uniform_(5, 10)
        m.frontend.cmvn.istd.uniform_(0.2, 0.5)
        for layer in m.encoder.fsmn_layers:
            layer.memory.weight.normal_(0, 0.3)
    return m


@pytest.fixture(scope="module")
def pcm():
    g = torch.Generator().manual_seed(0)
    return (0.2 * torch.randn(2, N, generator=g)).clamp(-1, 1)


@pytest.fixture(scope="module")
def full(enc, pcm):
    with torch.no_grad():
        return enc(pcm)[0]


def _stream(enc, pcm, sizes, batch=2):
    state = enc.init_state(batch)
    outs, i, k = [], 0, 0
    with torch.no_grad():
        while i < pcm.shape[1]:
            n = sizes[k % len(sizes)]
            outs.append(enc.step(pcm[:, i : i + n], state))
            i, k = i + n, k + 1
        outs.append(enc.flush(state))
    return torch.cat(outs, dim=1), outs, state


@pytest.mark.parametrize(
    "sizes", [[320], [1600], [16000], [37, 5000, 1, 2999, 160, 12345]], ids=["20ms", "100ms", "1s", "uneven"]
)
def test_chunked_equals_full_pass(enc, pcm, full, sizes):
    streamed, _, state = _stream(enc, pcm, sizes)
    assert streamed.shape == full.shape == (2, num_encoder_frames(N, CFG), CFG.out_dim)
    torch.testing.assert_close(streamed, full, atol=1e-5, rtol=1e-4)
    assert state.num_frames == [full.shape[1]] * 2 and state.num_samples == [N] * 2


def test_frames_are_emitted_as_soon_as_their_lookahead_arrives(enc, pcm):
    x = pcm[:1]
    state = enc.init_state(1)
    got, fed = 0, 0
    with torch.no_grad():
        for j in range(6):
            need = samples_needed(j, CFG)
            got += enc.step(x[:, fed : need - 1], state).shape[1]
            fed = need - 1
            assert got == j, f"frame {j} came out before sample {need}"
            got += enc.step(x[:, fed:need], state).shape[1]
            fed = need
            assert got == j + 1, f"frame {j} not out at sample {need}"


def test_documented_lookahead():
    assert lookahead_ms(get_flavor("audio", "longcat")) == 495.0  # 6 x 80 ms + 15 ms
    assert samples_needed(0, get_flavor("audio", "longcat")) == 9200
    assert lookahead_ms(CFG) == 2 * 80 + 15


def test_future_input_does_not_change_emitted_frames(enc, pcm):
    j = 10
    cut = samples_needed(j, CFG)
    a = pcm[:1].clone()
    b = a.clone()
    b[:, cut:] = torch.randn(1, N - cut)  # different future
    with torch.no_grad():
        fa, fb = enc(a)[0], enc(b)[0]
    torch.testing.assert_close(fa[:, : j + 1], fb[:, : j + 1], atol=1e-6, rtol=0)
    assert not torch.allclose(fa[:, j + 1 :], fb[:, j + 1 :])
    # ...and the boundary is tight: the end of the last window frame j waits for
    # matters (its very last sample meets a zero of the povey window, so use the one before)
    c = a.clone()
    c[:, cut - 2] += 0.5
    with torch.no_grad():
        fc = enc(c)[0]
    assert not torch.allclose(fc[:, j], fa[:, j])


def test_reset_and_reuse(enc, pcm, full):
    streamed, _, state = _stream(enc, pcm, [4000])
    state.reset()
    again = []
    with torch.no_grad():
        for i in range(0, N, 7000):
            again.append(enc.step(pcm[:, i : i + 7000], state))
        again.append(enc.flush(state))
    torch.testing.assert_close(torch.cat(again, 1), full, atol=1e-5, rtol=1e-4)


def test_short_and_empty_streams(enc):
    state = enc.init_state(1)
    with torch.no_grad():
        assert enc.step(torch.zeros(1, 399), state).shape == (1, 0, CFG.out_dim)
        assert enc.flush(state).shape == (1, 0, CFG.out_dim)
        x = 0.1 * torch.randn(1, 1000)  # 4 fbank frames -> 1 encoder frame, shorter than the look-ahead
        state = enc.init_state(1)
        s = torch.cat([enc.step(x, state), enc.flush(state)], 1)
        torch.testing.assert_close(s, enc(x)[0], atol=1e-5, rtol=1e-4)
        assert s.shape[1] == 1


def test_padded_full_batch_equals_alone(enc, pcm):
    lens = torch.tensor([N, 20000])
    with torch.no_grad():
        out, flen = enc(pcm, lens)
        alone = enc(pcm[1:, :20000])[0]
    assert int(flen[1]) == alone.shape[1] == num_encoder_frames(20000, CFG)
    torch.testing.assert_close(out[1, : flen[1]], alone[0], atol=1e-5, rtol=1e-4)


def test_input_validation(enc):
    state = enc.init_state(2)
    with pytest.raises(ValueError, match="batch 1 but the state was made for 2"):
        enc.step(torch.zeros(1, 100), state)
    with pytest.raises(ValueError, match="float PCM"):
        enc.step(np.zeros((2, 100), dtype=np.int16), state)


def test_numpy_mono_input_and_bf16(enc, pcm):
    x = pcm[0, :20000].numpy()
    with torch.no_grad():
        a = enc(x)[0]
        low = StreamingAudioEncoder(CFG).eval()
        low.load_state_dict(enc.state_dict())
        low = low.to(torch.bfloat16)
        b, _ = low(x)
        state = low.init_state(1)
        s = torch.cat([low.step(x[:8000], state), low.step(x[8000:], state), low.flush(state)], 1)
    assert b.dtype == torch.bfloat16 and s.shape == b.shape
    assert ((a - b.float()).norm() / a.norm()) < 0.05
    assert ((s.float() - b.float()).norm() / b.float().norm()) < 0.05


def _full(enc, x):
    with torch.no_grad():
        return enc(x[None])[0][0]


def test_rows_fed_different_chunk_sizes(enc, pcm):
    """Each batch slot gets its own chunking; every row equals its own full pass."""
    a, b = pcm[0], pcm[1, :30001]
    state = enc.init_state(2)
    sizes = ([320], [1600, 37, 5000])
    got = [[], []]
    pos, k = [0, 0], 0
    with torch.no_grad():
        while pos[0] < len(a) or pos[1] < len(b):
            chunks = []
            for r, x in enumerate((a, b)):
                n = sizes[r][k % len(sizes[r])]
                chunks.append(x[pos[r] : pos[r] + n])  # empty once a row has run out
                pos[r] += n
            for r, y in enumerate(enc.step_rows(chunks, state)):
                got[r].append(y)
            k += 1
        for r, y in enumerate(enc.flush_rows(state)):
            got[r].append(y)
    for r, x in enumerate((a, b)):
        torch.testing.assert_close(torch.cat(got[r]), _full(enc, x), atol=1e-5, rtol=1e-4)


def test_reset_one_slot_while_the_other_streams(enc, pcm):
    import copy

    first, second, other = pcm[1, :9000], pcm[1, 9000:40000], pcm[0]
    state = enc.init_state(2)
    out0, out1 = [], []
    with torch.no_grad():
        i = 0
        for n in (3000, 3000, 3000):  # both slots in step
            y = enc.step(torch.stack([other[i : i + n], first[i : i + n]]), state)
            out0.append(y[0])
            out1.append(y[1])
            i += n
        tail = enc.flush_row(state, 1)  # slot 1's stream ends and the slot is reset
        torch.testing.assert_close(torch.cat([*out1, tail]), _full(enc, first), atol=1e-5, rtol=1e-4)
        assert state.num_samples == [9000, 0]
        # the slots are now at different positions: step() refuses what it cannot batch
        with pytest.raises(ValueError, match="different frame counts"):
            enc.step(torch.stack([other[i : i + 1600], second[:1600]]), copy.deepcopy(state))
        out1, j = [], 0
        while i < len(other) or j < len(second):
            y0, y1 = enc.step_rows([other[i : i + 1600], second[j : j + 1000]], state)
            out0.append(y0)
            out1.append(y1)
            i, j = i + 1600, j + 1000
        t0, t1 = enc.flush_rows(state)
    torch.testing.assert_close(torch.cat([*out0, t0]), _full(enc, other), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(torch.cat([*out1, t1]), _full(enc, second), atol=1e-5, rtol=1e-4)


def test_selected_rows_flush_together_as_each_alone(enc, pcm):
    """`select_rows` copies rows at different stream positions (in any order): flushing the copy
    gives each row's `flush(select(row))` tail, and the state's own rows go on untouched."""
    state = enc.init_state(3)
    with torch.no_grad():
        enc.step_rows([pcm[0, :7001], pcm[1, :12345], pcm[0, :300]], state)
        before = [enc.flush(state.select(r))[0] for r in range(3)]
        together = enc.flush_rows(state.select_rows([2, 0]))
        after = [enc.flush(state.select(r))[0] for r in range(3)]
    for got, r in zip(together, (2, 0)):
        torch.testing.assert_close(got, before[r], atol=1e-5, rtol=1e-4)
    for a, b in zip(before, after):
        torch.testing.assert_close(a, b)
    assert [len(t) for t in before] != [0, 0, 0]

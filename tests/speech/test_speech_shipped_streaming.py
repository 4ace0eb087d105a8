"""The shipped codec (whatever its decoder was fine-tuned to) streams as its whole decode:
within 1e-5, frame t's audio comes out with frame t + 3, later frames never change it."""

from __future__ import annotations

import torch

from speech import DEFAULT_DIR, Codec


def test_shipped_codec_streams_like_whole_decode() -> None:
    codec = Codec.from_pretrained(DEFAULT_DIR)
    g = torch.Generator().manual_seed(0)
    T = 24
    codes = torch.stack([torch.randint(0, n, (1, T), generator=g) for n in codec.codebook_sizes], 1)
    whole = codec.decode(codes)
    dec = codec.streaming_decoder()
    L, hop = dec.lookahead, dec.hop_length
    assert L == 3
    state = dec.init_state(1)
    pieces = []
    for t in range(T):
        piece = dec.step(codes[:, :, t], state)
        # frame t - 3 is emitted when frame t arrives, and it is final
        assert piece.shape[-1] == (hop if t >= L else 0)
        if t >= L:
            torch.testing.assert_close(piece, whole[:, (t - L) * hop : (t - L + 1) * hop], atol=1e-5, rtol=0)
        pieces.append(piece)
    pieces.append(dec.flush(state))
    torch.testing.assert_close(torch.cat(pieces, -1), whole, atol=1e-5, rtol=0)
    # the whole decode of a prefix of t + 3 frames already holds frame t exactly as the full one
    t = 10
    prefix = codec.decode(codes[:, :, : t + L + 1])
    torch.testing.assert_close(prefix[:, t * hop : (t + 1) * hop], whole[:, t * hop : (t + 1) * hop], atol=1e-5, rtol=0)

"""The messages that feed the page's live audio player: every sample once, in
order, across polls and replies; a stop when a reply is cut off."""

from __future__ import annotations

import base64
import json
from types import SimpleNamespace

import numpy as np
import pytest

from demo.live_audio import LiveAudio
from streaming.client import Reply


def _client(*replies: Reply):
    return SimpleNamespace(order=[r.id for r in replies], replies={r.id: r for r in replies}, out_rate=24000)


def _pcm(msg: str) -> np.ndarray:
    m = json.loads(msg)
    assert m["rate"] == 24000
    return np.frombuffer(base64.b64decode(m["pcm"]), dtype="<i2")


def test_each_sample_once_in_order_then_stop_on_cut():
    rng = np.random.default_rng(0)
    a = Reply("resp_a")
    c = _client(a)
    live = LiveAudio()
    assert live.next_message(c) is None  # nothing yet
    chunks = [rng.uniform(-0.9, 0.9, n).astype(np.float32) for n in (960, 1440, 480)]
    got = []
    a.audio.append(chunks[0])
    got.append(_pcm(live.next_message(c)))
    assert live.next_message(c) is None  # nothing new since
    a.audio += chunks[1:]
    got.append(_pcm(live.next_message(c)))
    want = (np.concatenate(chunks) * 32767).astype(np.int16)
    np.testing.assert_array_equal(np.concatenate(got), want)
    # a second reply is appended after the first; then it is cut off: one stop, nothing after
    b = Reply("resp_b")
    c = _client(a, b)
    b.audio.append(chunks[0])
    a.audio.append(chunks[2][:100])  # both replies have news: one message, counted per reply
    m = live.next_message(c)
    assert len(_pcm(m)) == 1060 and json.loads(m)["parts"] == [["resp_a", 100], ["resp_b", 960]]
    b.status = "cancelled"
    b.audio.append(chunks[1])  # late audio of a cut reply is never played
    m = json.loads(live.next_message(c))
    assert m["stop"] and m["rid"] == "resp_b"
    assert live.next_message(c) is None
    seqs = [live.seq]
    a.audio.append(np.clip(chunks[2][100:] * 5, -5, 5))  # out-of-range samples are clipped, not wrapped
    pcm = _pcm(live.next_message(c))
    assert live.seq == seqs[0] + 1 and pcm.min() >= -32767 and pcm.max() <= 32767 and len(pcm) == 380


def test_a_reply_cut_by_a_length_limit_plays_out():
    """`incomplete` (the step cap, a full context) is not a barge-in: all its audio plays."""
    r = Reply("resp_c")
    r.audio.append(np.full(960, 0.1, np.float32))
    c = _client(r)
    live = LiveAudio()
    assert len(_pcm(live.next_message(c))) == 960
    r.audio.append(np.full(480, 0.1, np.float32))
    r.status = "incomplete"
    assert len(_pcm(live.next_message(c))) == 480  # the rest, not a stop
    assert live.next_message(c) is None


def test_playback_follows_the_pages_player():
    """When the page plays each reply, as its player schedules the messages: back to back,
    each from LEAD_S after it leaves here at the soonest; a stop drops what was scheduled."""
    a, b = Reply("resp_a"), Reply("resp_b")
    c = _client(a, b)
    live = LiveAudio()
    a.audio.append(np.zeros(12000, np.float32))  # 0.5 s
    live.next_message(c, now=10.0)
    a.audio.append(np.zeros(6000, np.float32))
    b.audio.append(np.zeros(2400, np.float32))  # more of a, then b: queued behind what plays
    live.next_message(c, now=10.2)
    assert live.playback == {"resp_a": pytest.approx([10.05, 10.8]), "resp_b": pytest.approx([10.8, 10.9])}
    b.audio.append(np.zeros(2400, np.float32))  # the page ran dry meanwhile: from when it gets it
    live.next_message(c, now=12.0)
    assert live.playback["resp_b"] == pytest.approx([10.8, 12.15])
    b.status = "cancelled"
    assert json.loads(live.next_message(c, now=12.05))["stop"]
    d = Reply("resp_d", audio=[np.zeros(2400, np.float32)])
    live.next_message(_client(a, b, d), now=12.06)  # nothing queued after a stop
    assert live.playback["resp_d"] == pytest.approx([12.11, 12.21])

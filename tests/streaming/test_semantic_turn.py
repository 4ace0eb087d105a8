"""semantic_vad: the model's end-of-turn judgment combined with silero's silence
(streaming/semantic_turn.py), from the session settings to whole turns over real
websockets with real silero-vad and espeak-ng speech. The model is the scripted
stand-in with a fixed judgment, so each test knows what the model said; the
trained head itself is tested in tests/omni/test_turn_end.py."""

from __future__ import annotations

import numpy as np
import pytest
from streaming_helpers import ScriptedModel, run, serving, silence

from streaming.client import RealtimeClient
from streaming.protocol import SessionConfig, apply_session_update
from streaming.protocol.config import SEMANTIC_EAGERNESS, SEMANTIC_SPECULATIVE_MS
from streaming.semantic_turn import SemanticTurn
from streaming.vad import WINDOW, Endpointer

SR = 16000


class JudgingModel(ScriptedModel):
    """The scripted model with an end-of-turn head that always says `p`."""

    def __init__(self, p: float, **kw) -> None:
        super().__init__(**kw)
        self.turn_end = object()  # what the server looks for: the model has a head
        self.p = p
        self.judged = 0

    def turn_end_prob(self, slot: int) -> float:
        self.judged += 1
        return self.p


def test_threshold_holds_for_half_the_longest_wait_then_falls_to_zero():
    s = SemanticTurn(0.5, 2000)
    assert s.threshold_at(0) == s.threshold_at(1000) == 0.5
    assert s.threshold_at(1500) == pytest.approx(0.25)
    assert s.threshold_at(2000) == 0 and s.threshold_at(5000) == 0
    assert s.ends(0.6, 160) and not s.ends(0.4, 160)
    assert not s.ends(0.2, 1500) and s.ends(0.3, 1500)
    assert s.ends(0.0, 2000)  # the longest wait ends the turn whatever the model said
    for eager, (thr, wait) in SEMANTIC_EAGERNESS.items():
        t = SemanticTurn.for_eagerness(eager)
        assert (t.threshold, t.max_silence_ms) == (thr, wait)
    assert SemanticTurn.for_eagerness(None) == SemanticTurn.for_eagerness("auto")
    # a head's own thresholds (omni/turn_end.py) replace the table's, the waits stay
    own = {"auto": 0.72, "high": 0.41}
    assert SemanticTurn.for_eagerness(None, thresholds=own) == SemanticTurn(0.72, SEMANTIC_EAGERNESS["auto"][1])
    assert SemanticTurn.for_eagerness("high", 900, own) == SemanticTurn(0.41, 900)
    assert SemanticTurn.for_eagerness("low", thresholds=own).threshold == SEMANTIC_EAGERNESS["low"][0]


def test_semantic_vad_is_served_as_asked_only_by_a_model_that_judges_turns():
    # the session says which (clients such as the demo page ask for semantic_vad where it is served)
    assert SessionConfig(semantic_turn=True).to_json()["omni"]["semantic_turn"] is True
    assert SessionConfig().to_json()["omni"]["semantic_turn"] is False
    asked = {"turn_detection": {"type": "semantic_vad", "eagerness": "high"}}
    with_head = apply_session_update(SessionConfig(semantic_turn=True), asked)
    td = with_head.to_json()["audio"]["input"]["turn_detection"]
    assert td["type"] == "semantic_vad" and td["eagerness"] == "high"
    assert td["silence_duration_ms"] == SEMANTIC_EAGERNESS["high"][1]
    assert td["speculative_silence_ms"] == SEMANTIC_SPECULATIVE_MS
    assert with_head.adjusted == {}
    # without a head: server VAD with the eagerness's silence, and the echo says so
    without = apply_session_update(SessionConfig(), asked)
    td = without.to_json()["audio"]["input"]["turn_detection"]
    assert td["type"] == "server_vad" and "eagerness" not in td and td["silence_duration_ms"] == 400
    assert list(without.adjusted) == ["session.turn_detection.type"]
    # back to server_vad: its own thresholds again, unless given
    back = apply_session_update(with_head, {"turn_detection": {"type": "server_vad"}}).turn_detection
    assert (back.type, back.eagerness, back.silence_duration_ms, back.speculative_silence_ms) == \
        ("server_vad", None, 600, 200)
    given = apply_session_update(with_head, {"turn_detection": {"type": "server_vad", "silence_duration_ms": 900}})
    assert given.turn_detection.silence_duration_ms == 900
    # a client may still bound the longest wait itself
    own = apply_session_update(SessionConfig(semantic_turn=True), {"turn_detection": {
        "type": "semantic_vad", "silence_duration_ms": 1200}}).turn_detection
    assert (own.eagerness, own.silence_duration_ms) == ("auto", 1200)


def test_endpointer_reports_the_silence_of_the_pause_it_is_in():
    ep = Endpointer(silence_ms=2000, speculative_ms=160)
    assert ep.silence_ms() == 0
    ep.feed(np.full(10, 0.9, np.float32))  # speech
    assert ep.silence_ms() == 0
    ep.feed(np.full(5, 0.05, np.float32))  # 5 silent windows
    assert ep.silence_ms() == pytest.approx(5 * WINDOW * 1000 / SR)
    ep.feed(np.full(1, 0.9, np.float32))  # speech again: no pause
    assert ep.silence_ms() == 0


async def _turn(model: JudgingModel, audio: np.ndarray, eagerness: str = "medium", n_replies: int = 1):
    async with serving(model) as srv, RealtimeClient(srv.url) as c:
        await c.configure(turn_detection={"type": "semantic_vad", "eagerness": eagerness},
                          omni={"debug_events": True})
        echo = next(e for e in c.events if e["type"] == "session.updated")
        await c.stream_audio(audio, SR, realtime=True)
        replies = [await c.wait_response(timeout=20) for _ in range(n_replies)]
        return c, echo, replies, srv.metrics.render()


def test_a_turn_the_model_judges_complete_ends_long_before_the_longest_silence(voice):
    q = voice("What color is the square?")
    model = JudgingModel(0.9)
    c, echo, (r,), prom = run(_turn(model, np.concatenate([silence(0.3), q, silence(3.5)])))
    assert echo["session"]["audio"]["input"]["turn_detection"]["type"] == "semantic_vad"
    assert r.status == "completed" and model.judged >= 1
    assert "omni_semantic_turn_ends_total 1" in prom
    # ended by the judgment at the first speculation (160 ms of silence), not by the 2.5 s wait
    assert r.server_metrics["confirm_after_speech_end_s"] < SEMANTIC_EAGERNESS["medium"][1] / 1000 / 2
    assert "omni_turn_end_probability_count" in prom


def test_a_turn_the_model_judges_incomplete_waits_for_the_longest_silence(voice):
    q = voice("What color is the square?")
    model = JudgingModel(0.02)
    c, echo, (r,), prom = run(_turn(model, np.concatenate([silence(0.3), q, silence(3.5)]), eagerness="high"))
    assert r.status == "completed"
    assert "omni_semantic_turn_ends_total" not in prom
    # P = 0.02 ends the turn only when the falling threshold reaches it: near the 1.5 s longest wait
    assert r.server_metrics["confirm_after_speech_end_s"] > SEMANTIC_EAGERNESS["high"][1] / 1000 * 0.9


def test_the_session_applies_the_heads_own_threshold(voice):
    """A head calibrated to 0.95 (omni/turn_end.py) does not end a turn it judged 0.9 at once,
    as the protocol's 0.5 would: it waits until the falling threshold meets 0.9 (~1.3 s)."""
    from types import SimpleNamespace

    q = voice("What color is the square?")
    model = JudgingModel(0.9)
    model.turn_end = SimpleNamespace(thresholds={"medium": 0.95})
    c, echo, (r,), prom = run(_turn(model, np.concatenate([silence(0.3), q, silence(3.5)])))
    assert r.status == "completed" and model.judged >= 1
    assert r.server_metrics["confirm_after_speech_end_s"] > 1.2


def test_a_pause_inside_a_sentence_is_waited_out_when_the_model_says_incomplete(voice):
    a, b = voice("What color is the"), voice("square at the top?")
    model = JudgingModel(0.02)
    c, echo, (r,), prom = run(_turn(model, np.concatenate([silence(0.3), a, silence(0.9), b, silence(3.0)])))
    turn = [e["state"] for e in c.events if e["type"] == "omni.turn"]
    # the pause was speculated on and rolled back; one user turn, one reply
    assert turn[:2] == ["speculating", "rolled_back"] and turn[-1] == "confirmed"
    assert sum(e["type"] == "input_audio_buffer.committed" for e in c.events) == 1
    assert sum(e["type"] == "response.created" for e in c.events) == 1


def test_the_same_pause_ends_the_turn_when_the_model_says_complete(voice):
    a, b = voice("What color is the"), voice("square at the top?")
    model = JudgingModel(0.95)
    c, echo, replies, prom = run(_turn(model, np.concatenate([silence(0.3), a, silence(0.9), b, silence(3.0)]),
                                       n_replies=2))
    # the model judged the first part complete: it took the turn in the pause; the rest is a new turn
    kinds = [e["type"] for e in c.events]
    assert kinds.count("input_audio_buffer.committed") == 2 and kinds.count("response.created") == 2
    assert "omni_semantic_turn_ends_total 2" in prom and replies[1].status == "completed"

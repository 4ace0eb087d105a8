"""The page asks for the model's own end of turn where the server's model has one
(demo/turns.py), and keeps the server's default elsewhere; the scene checker asks the same."""

from __future__ import annotations

from demo.turns import PAGE_TURN_DETECTION, judges_turns, page_turn_detection
from streaming.client import RealtimeClient


def test_the_page_asks_for_semantic_vad_only_where_the_model_judges_turns():
    assert page_turn_detection({"omni": {"semantic_turn": True}}) == {"turn_detection": PAGE_TURN_DETECTION}
    assert PAGE_TURN_DETECTION == {"type": "semantic_vad", "eagerness": "high"}
    for session in ({"omni": {"semantic_turn": False}}, {"omni": {}}, {"omni": "x"}, {}, None,
                    {"omni": {"semantic_turn": "yes"}}):
        assert page_turn_detection(session) == {} and not judges_turns(session)


def test_a_server_with_a_judging_model_serves_the_page_semantic_vad_and_one_without_keeps_server_vad():
    from tests.streaming.streaming_helpers import ScriptedModel, run, serving

    class Judging(ScriptedModel):
        def __init__(self) -> None:
            super().__init__()
            self.turn_end = object()

        def turn_end_prob(self, slot: int) -> float:
            return 0.9

    async def echo(model) -> dict:
        async with serving(model) as srv, RealtimeClient(srv.url) as c:
            assert judges_turns(c.session) == (getattr(model, "turn_end", None) is not None)
            return await c.configure(**page_turn_detection(c.session))

    td = run(echo(Judging()))["audio"]["input"]["turn_detection"]
    assert (td["type"], td["eagerness"]) == ("semantic_vad", "high")
    td = run(echo(ScriptedModel()))["audio"]["input"]["turn_detection"]
    assert td["type"] == "server_vad" and td["silence_duration_ms"] == 600


def test_a_played_question_keeps_the_microphone_open_until_the_turn_ends(tmp_path):
    """A question the model judges unfinished ends only at the longest silence: the played
    clip's own tail (0.3 s here) is shorter, so the page's open microphone must carry it."""
    import numpy as np

    from demo.turns import play_as_microphone
    from tests.streaming.streaming_helpers import ScriptedModel, run, serving, speak

    class Unsure(ScriptedModel):
        def __init__(self) -> None:
            super().__init__()
            self.turn_end = object()

        def turn_end_prob(self, slot: int) -> float:
            return 0.02  # "unfinished": the threshold falls to it only near the 1.5 s longest wait

    q = speak("What color is the square?", tmp_path / "q.wav")
    clip = np.concatenate([np.zeros(4800, np.float32), q, np.zeros(4800, np.float32)])

    async def main():
        async with serving(Unsure()) as srv, RealtimeClient(srv.url) as c:
            await c.configure(input_rate=16000, **page_turn_detection(c.session))
            n = len(c.events)
            await play_as_microphone(c, clip)
            kinds = [e["type"] for e in c.events[n:]]
            assert "input_audio_buffer.committed" in kinds  # ended while the microphone stayed open
            r = await c.wait_response(20, start=n)
            return r, c.sent_ms

    r, sent_ms = run(main())
    assert r.status == "completed"
    # the clip was 0.3 s + speech + 0.3 s; the page sent about the longest wait (1.5 s) more, not 6 s
    assert len(clip) / 16 + 900 < sent_ms < len(clip) / 16 + 4000

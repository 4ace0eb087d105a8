"""semantic_vad: end the user's turn when the model judges it complete, not after a fixed silence.

Silence alone answers late (600 ms after every question) and still cuts people
off in any longer pause inside a sentence. Here the two combine:

  1. silero's silence reaches `speculative_silence_ms` (128 ms): the session
     speculates as under server_vad, and the engine's `begin_response` has the
     model judge the turn (omni/turn_end.py): P(complete) arrives as an engine
     event `turn_end` a few ms later;
  2. the turn ends as soon as P(complete) >= the eagerness's threshold (the
     head's own, calibrated on cut questions: omni/turn_end.py), which holds for
     the first half of the longest wait and then falls linearly to 0;
  3. at the longest wait (`silence_duration_ms`) the endpointer ends the turn
     whatever the model said, as server_vad does.

So a complete question is answered ~130 ms of silence after its last word plus the reply's
first audio, and a pause after "what color is the" waits (up to 2.5 s at
medium eagerness) for the rest. Speech again before the end rolls the
speculative reply back, as under server_vad.
"""

from __future__ import annotations

from dataclasses import dataclass

from streaming.protocol.config import SEMANTIC_EAGERNESS


@dataclass(frozen=True)
class SemanticTurn:
    threshold: float  # P(complete) that ends the turn in the first half of the longest wait
    max_silence_ms: float  # the longest wait; the threshold reaches 0 here

    @classmethod
    def for_eagerness(cls, eagerness: str | None, max_silence_ms: float | None = None,
                      thresholds: dict[str, float] | None = None) -> "SemanticTurn":
        """`thresholds`: the model's head's own (omni/turn_end.py: calibrated so that an
        eagerness ends a known share of cut questions at once); else the protocol's table."""
        eager = eagerness or "auto"
        thr, wait = SEMANTIC_EAGERNESS.get(eager, SEMANTIC_EAGERNESS["auto"])
        if thresholds and eager in thresholds:
            thr = thresholds[eager]
        return cls(thr, float(max_silence_ms if max_silence_ms is not None else wait))

    def threshold_at(self, silence_ms: float) -> float:
        """The threshold after `silence_ms` of silence: flat, then down to 0 at the longest wait."""
        half = self.max_silence_ms / 2
        if silence_ms <= half:
            return self.threshold
        return self.threshold * max(0.0, (self.max_silence_ms - silence_ms) / half)

    def ends(self, p_complete: float, silence_ms: float) -> bool:
        return p_complete >= self.threshold_at(silence_ms)

"""Semantic end of turn: has the user finished what they meant to say?

Silence alone cannot tell a finished question from a pause in the middle of one
("what color is the ... square"). The model can: the LLM's hidden state at the
position where its reply would begin has read the whole user turn so far, so a
small head on it judges whether the turn is complete. The realtime model
computes it for free when a speculative reply begins (`RealtimeOmni.begin_response`
already runs that position), and the server combines it with silero's silence
(streaming/semantic_turn.py).

The head lives beside the model it reads, in the model directory:
`turn_end.safetensors` (weights) and `turn_end.json` (its shape, what it was
trained on, its held-out scores and its eagerness thresholds). It is trained on
frozen hidden states by `omni train-turn-end` (omni/turn_end_train.py); a model
directory without it serves `semantic_vad` as plain silence (and says so).

Each head brings its own thresholds: two heads of equal quality spread their scores
differently (a head retrained for new weights ended 23 % of cut questions at 0.5
where the one before ended 14 %), so a fixed P(complete) would move the server's
operating point with every model. `omni train-turn-end` sets each eagerness's
threshold on a calibration set of cut questions (apart from the held-out scores)
so that it ends at most `CUT_RATE[eagerness]` of them at once; a head without them
(trained before) uses the protocol's fixed table.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)

WEIGHTS = "turn_end.safetensors"
META = "turn_end.json"
FORMAT = "omni-turn-end"
# eagerness -> the share of cut questions ("what color is the") a head's threshold may
# end at once: the rate at which the assistant would take over a pause of the user's.
# A lower share also ends fewer complete questions at once (they wait for the falling
# threshold): with the seventeenth run's head (held-out AUC 0.88) 5 % of cut questions
# ends only 36 % of complete ones at once, 10 % about 60 %, so medium keeps the median
# answer fast and low is for users who pause a lot
CUT_RATE: dict[str, float] = {"high": 0.2, "medium": 0.1, "auto": 0.1, "low": 0.03}


def calibrate_thresholds(p_incomplete, rates: dict[str, float] | None = None) -> dict[str, float]:
    """eagerness -> the lowest P(complete) that ends at most that share of the given
    incomplete turns' scores (ties end, as `SemanticTurn.ends` does: p >= threshold)."""
    p = np.sort(np.asarray(p_incomplete, dtype=np.float64))[::-1]  # highest first
    if not len(p):
        raise ValueError("calibrate_thresholds: no incomplete turns to calibrate on")
    out = {}
    for eager, rate in (rates or CUT_RATE).items():
        k = int(np.floor(rate * len(p)))  # at most k scores may reach the threshold
        # just above the (k+1)-th highest score: the k highest end, the rest wait
        thr = float(np.nextafter(p[k], np.inf)) if k < len(p) else 0.0
        out[eager] = min(0.999, max(0.01, thr))  # not rounded: a rounded one may fall onto a score
    return out


class TurnEndHead(nn.Module):
    """hidden [..., H] -> logit [...] of "the user's turn is complete".

    The hidden state is standardized with the training set's statistics (the
    backbone's hidden states have a few very large channels), then a linear
    read-out (`width` 0, the default: it generalizes best to unseen voices and
    wordings, see `omni train-turn-end`) or a one-hidden-layer MLP of `width`."""

    def __init__(self, hidden_size: int, width: int = 0) -> None:
        super().__init__()
        self.hidden_size, self.width = hidden_size, width
        # eagerness -> P(complete) threshold calibrated for this head (None: the protocol's table)
        self.thresholds: dict[str, float] | None = None
        self.register_buffer("mean", torch.zeros(hidden_size))
        self.register_buffer("scale", torch.ones(hidden_size))
        if width:
            self.net = nn.Sequential(nn.Linear(hidden_size, width), nn.GELU(), nn.Linear(width, 1))
        else:
            self.net = nn.Sequential(nn.Linear(hidden_size, 1))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        x = (hidden.float() - self.mean) / self.scale
        return self.net(x).squeeze(-1)

    @torch.no_grad()
    def prob(self, hidden: torch.Tensor) -> float:
        """P(complete) of one hidden state [H]."""
        return self.probs([hidden])[0]

    @torch.no_grad()
    def probs(self, hiddens: list[torch.Tensor]) -> list[float]:
        """P(complete) of several hidden states [H] in one pass (one host read for all)."""
        x = torch.stack([h.reshape(-1) for h in hiddens]).to(self.mean.device)
        return torch.sigmoid(self(x)).float().tolist()


def save_turn_end(head: TurnEndHead, path: str | Path, meta: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    path = Path(path)
    state = {k: v.detach().cpu().float().contiguous() for k, v in head.state_dict().items()}
    save_file(state, str(path / WEIGHTS), metadata={"format": FORMAT})
    body = {"format": FORMAT, "hidden_size": head.hidden_size, "width": head.width, **meta}
    (path / META).write_text(json.dumps(body, indent=2) + "\n")


def load_turn_end(path: str | Path | None, hidden_size: int | None = None,
                  device: str | torch.device = "cpu") -> TurnEndHead | None:
    """The head of a model directory, or None when it has none. A head that does not
    fit the model (another hidden size, unreadable files) is refused with a clear error:
    serving it would judge turns from the wrong features."""
    if path is None:
        return None
    path = Path(path)
    if not (path / WEIGHTS).is_file():
        return None
    from safetensors.torch import load_file

    try:
        meta = json.loads((path / META).read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path / META}: unreadable ({e}); it describes {path / WEIGHTS}") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path / META}: format {meta.get('format')!r} is not {FORMAT!r}")
    h = int(meta["hidden_size"])
    if hidden_size is not None and h != hidden_size:
        raise ValueError(f"{path / WEIGHTS}: an end-of-turn head for hidden size {h}, the model has {hidden_size}")
    head = TurnEndHead(h, int(meta.get("width", 0)))
    head.load_state_dict(load_file(str(path / WEIGHTS)))
    thr = meta.get("thresholds")
    if thr is not None:
        if not isinstance(thr, dict) or not all(isinstance(v, (int, float)) and 0 <= v <= 1 for v in thr.values()):
            raise ValueError(f"{path / META}: thresholds must map eagerness to a P(complete) in [0, 1], got {thr!r}")
        head.thresholds = {str(k): float(v) for k, v in thr.items()}
    return head.to(device).eval()


def turn_end_meta(path: str | Path) -> dict[str, Any] | None:
    p = Path(path) / META
    return json.loads(p.read_text()) if p.is_file() else None

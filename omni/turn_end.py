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
trained on and its held-out scores). It is trained on frozen hidden states by
`omni train-turn-end` (omni/turn_end_train.py); a model directory without it
serves `semantic_vad` as plain silence (and says so).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)

WEIGHTS = "turn_end.safetensors"
META = "turn_end.json"
FORMAT = "omni-turn-end"


class TurnEndHead(nn.Module):
    """hidden [..., H] -> logit [...] of "the user's turn is complete".

    The hidden state is standardized with the training set's statistics (the
    backbone's hidden states have a few very large channels), then a linear
    read-out (`width` 0, the default: it generalizes best to unseen voices and
    wordings, see `omni train-turn-end`) or a one-hidden-layer MLP of `width`."""

    def __init__(self, hidden_size: int, width: int = 0) -> None:
        super().__init__()
        self.hidden_size, self.width = hidden_size, width
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
    return head.to(device).eval()


def turn_end_meta(path: str | Path) -> dict[str, Any] | None:
    p = Path(path) / META
    return json.loads(p.read_text()) if p.is_file() else None

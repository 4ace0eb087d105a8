"""A model directory's card: what the model knows and what to ask it.

`DIR/card.json` (optional) holds {"about": str, "ask": [str, ...]}. `omni serve`
reports it to every session (`session.omni.model.about` / `.ask`) and the demo page
shows it, so a newcomer learns what the model can talk about before speaking to it.
A card is advice, not part of the model: a missing one is fine, a malformed one is
reported and ignored (the model still serves).
"""

from __future__ import annotations

import json
import logging
import os

CARD = "card.json"
MAX_ABOUT = 600
MAX_ASK = 8
MAX_QUESTION = 100

log = logging.getLogger(__name__)


class CardError(ValueError):
    pass


def parse_card(data: object) -> dict:
    """A validated card {"about": str, "ask": [str]} from parsed JSON, or CardError."""
    if not isinstance(data, dict):
        raise CardError("a card is a JSON object")
    unknown = set(data) - {"about", "ask"}
    if unknown:
        raise CardError(f"unknown card fields {sorted(unknown)} (known: about, ask)")
    about = data.get("about", "")
    ask = data.get("ask", [])
    if not isinstance(about, str) or len(about) > MAX_ABOUT:
        raise CardError(f"'about' must be a string of at most {MAX_ABOUT} characters")
    if not isinstance(ask, list) or len(ask) > MAX_ASK or not all(
            isinstance(q, str) and 0 < len(q) <= MAX_QUESTION for q in ask):
        raise CardError(f"'ask' must be a list of at most {MAX_ASK} questions of 1-{MAX_QUESTION} characters")
    return {"about": about.strip(), "ask": [q.strip() for q in ask]}


def read_card(model_dir: str | os.PathLike | None) -> dict | None:
    """The card of a model directory; None when it has none or it is malformed (logged)."""
    if not model_dir:
        return None
    path = os.path.join(model_dir, CARD)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            return parse_card(json.load(fh))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, CardError) as e:
        log.warning("ignoring %s: %s", path, e)
        return None

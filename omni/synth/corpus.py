"""Text corpus for the default model's small tokenizer: the world's words and the chat template.

One line per string: every train question wording, every answer, the chat
template's role headers, end-of-turn marker and `second{t}:` timestamps, and the
multiple-choice prompt form `omni eval` uses, and the world's tool (its declaration,
calls, outputs, requests and answers). Held-out wordings are left out by
default, so the tokenizer is fitted on training text only (byte-level BPE still
encodes anything).
"""

from __future__ import annotations

import os
from pathlib import Path

from .questions import COLOR_NAMES, GREETINGS, NUMBER_WORDS, POSITIONS, SHAPES, all_question_texts, answer_space
from .tool_world import corpus_lines as tool_lines
from .world import DIRECTIONS

# Mirrors omni/sequence.py's ROLE_HEADERS and the spec's system prompts (kept
# literal here so the generator does not import the model code).
ROLE_HEADERS = ("SYSTEM:", "USER:", "ASSISTANT:", "VOICE ASSISTANT:")
END_OF_TURN = "</longcat_s>"
SYSTEM_PROMPTS = ("You are a helpful assistant.", "You are an emotional voice intelligent assistant.")
MCQ_SUFFIX = "Answer with the letter of the correct option."


def timestamps(max_seconds: float = 60.0, step: float = 0.5) -> list[str]:
    """`second{t}:` markers as the sequence builder writes them (one decimal)."""
    n = int(max_seconds / step) + 1
    return [f"second{{{i * step:.1f}}}:" for i in range(n)]


def corpus_lines(include_heldout: bool = False) -> list[str]:
    lines: list[str] = list(ROLE_HEADERS) + [END_OF_TURN] + list(SYSTEM_PROMPTS) + timestamps()
    questions = all_question_texts("train") + (all_question_texts("heldout") if include_heldout else [])
    lines += questions
    lines += answer_space()
    for group in (NUMBER_WORDS, COLOR_NAMES, SHAPES, POSITIONS, tuple(DIRECTIONS)):
        lines.append(" ".join(group))
    # Chat-formatted examples, so the headers merge with their neighbours as in use.
    answers = answer_space()
    for k, q in enumerate(questions[::15]):
        lines.append(f"USER:{q}")
        lines.append(f"VOICE ASSISTANT:{answers[k % len(answers)]}{END_OF_TURN}")
    for a, words, _ in GREETINGS.values():
        lines.append(f"USER:{words[0]}")
        lines.append(f"VOICE ASSISTANT:{a}{END_OF_TURN}")
    opts = ("red", "green", "blue", "yellow")
    lines.append("Options: " + " ".join(f"{k}. {v}" for k, v in zip("ABCD", opts)))
    lines.append(MCQ_SUFFIX)
    lines += [f"The answer is {k}." for k in "ABCD"]
    lines += tool_lines()
    return list(dict.fromkeys(lines))


def write_corpus(path: str | os.PathLike, include_heldout: bool = False) -> int:
    """Write the corpus (one string per line); returns the number of lines."""
    lines = corpus_lines(include_heldout)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return len(lines)

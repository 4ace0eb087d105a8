"""The default world's tool: a light the assistant switches by calling a function.

The conversation is the one a client of `omni serve` has with OpenAI Realtime
function calling (`streaming/calls.py`), in the chat template of `omni.sequence`:

    SYSTEM:{tool section declaring set_light}</longcat_s>\\n     session.update with the tool
    USER:{the request, spoken or typed}\\n                        "turn the light on"
    VOICE ASSISTANT:{call block}</longcat_s>\\n                   never spoken: its codec rows are silence
    USER:<longcat_tool_response>{output}</longcat_tool_response>\\n   function_call_output
    VOICE ASSISTANT:{spoken answer}</longcat_s>\\n                response.create

The output decides the answer, not the request: the light may not answer, and then
the assistant says so. A model that answers from the request alone is wrong on those
cases, so the answer shows that the output was read.

Requests are split into train and held-out wordings as the questions are
(`omni.synth.questions`): the held-out ones are new sentences of words the train
ones use (tests check it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from omni.tool_calls import Tool, call_block, tool_section

if TYPE_CHECKING:  # the world's data side stays free of torch (the demo imports omni.synth)
    from omni.sequence import ChatFormat, Tokens

LIGHT = Tool(
    name="set_light",
    description="Turn the light on or off.",
    parameters={"type": "object", "properties": {"on": {"type": "boolean"}}, "required": ["on"],
                "additionalProperties": False},
)

# on -> split -> wordings
REQUESTS: dict[bool, dict[str, tuple[str, ...]]] = {
    True: {
        "train": ("turn the light on", "turn on the light", "switch the light on", "please switch on the light",
                  "can you turn the light on", "could you turn the light on", "light on please",
                  "i want the light on"),
        "heldout": ("could you switch on the light", "please turn the light on"),
    },
    False: {
        "train": ("turn the light off", "turn off the light", "switch the light off", "please switch off the light",
                  "can you turn the light off", "could you turn the light off", "light off please",
                  "i want the light off"),
        "heldout": ("could you switch off the light", "please turn the light off"),
    },
}
# what the tool returns: the light's new state, or that it did not answer
FAILURE = {"error": "the light does not answer"}
FAILURE_ANSWER = "the light did not answer"
FAILURE_SHARE = 0.25  # of the drawn cases


def state_answer(on: bool) -> str:
    return f"the light is {'on' if on else 'off'}"


def request_texts(split: str) -> list[str]:
    """Every request wording of `split` (both intents), in a fixed order."""
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be train or heldout, got {split!r}")
    return [t for on in (True, False) for t in REQUESTS[on][split]]


def answer_texts() -> list[str]:
    """Every spoken answer a tool conversation can end with (for packs and grammars)."""
    return [state_answer(True), state_answer(False), FAILURE_ANSWER]


def system_prompt() -> str:
    """The system prompt of a session that declared the tool (and no instructions)."""
    return tool_section([LIGHT])


@dataclass(frozen=True)
class ToolCase:
    """One conversation: the request, the call it asks for, the tool's output and the answer."""

    request: str
    on: bool
    ok: bool  # the light answered

    @property
    def call(self) -> str:
        return call_block(LIGHT.name, {"on": self.on})

    @property
    def output(self) -> str:
        return json.dumps({"light": "on" if self.on else "off"} if self.ok else FAILURE)

    @property
    def answer(self) -> str:
        return state_answer(self.on) if self.ok else FAILURE_ANSWER

    @property
    def query(self) -> dict:
        """The case as a question query of the world (`omni.synth.questions.answer_query`)."""
        return {"type": "tool", "on": self.on, "ok": self.ok}

    @staticmethod
    def of(request: str, query: dict) -> "ToolCase":
        return ToolCase(request, bool(query["on"]), bool(query["ok"]))


def draw_case(rng: np.random.Generator, split: str) -> ToolCase:
    on = bool(rng.random() < 0.5)
    texts = REQUESTS[on][split]
    return ToolCase(texts[int(rng.integers(len(texts)))], on, bool(rng.random() >= FAILURE_SHARE))


def corpus_lines() -> list[str]:
    """What the tokenizer should know of the tool: the declaration, the calls, the outputs,
    the train requests and the answers, in the template's framing."""
    cases = [ToolCase(t, on, ok) for on in (True, False) for t in REQUESTS[on]["train"] for ok in (True, False)]
    lines = [line for line in system_prompt().split("\n") if line]  # the corpus is one string a line
    lines += request_texts("train") + answer_texts()
    lines += list(dict.fromkeys(f"VOICE ASSISTANT:{c.call}</longcat_s>" for c in cases))
    lines += list(dict.fromkeys(f"USER:<longcat_tool_response>{c.output}</longcat_tool_response>" for c in cases))
    return lines


@dataclass
class ToolConversation:
    """A whole tool conversation as one run, and where its two replies are."""

    tokens: Tokens
    call_span: tuple[int, int]  # [start, end) positions of the call reply's rows
    answer_span: tuple[int, int]  # [start, end) positions of the spoken answer's rows


def tool_conversation(fmt: ChatFormat, user_turn: Tokens, call_reply: Tokens, output: str,
                      answer_reply: Tokens, voice: bool = True) -> ToolConversation:
    """The conversation of the module docstring from its parts.

    `user_turn` is the request's whole user turn (`USER:` to its newline, any layout of
    `omni.sequence` / `omni.sequence_av`); the replies are their rows as the model
    writes them (text + EOS aligned with codec rows for a spoken reply). The framing
    between them is what the server's incremental builder adds (`begin_response`,
    `end_response`, the tool turn), so the run equals what a served session holds."""
    from omni.sequence import Tokens

    head = Tokens.cat([fmt.system_turn(system_prompt()), user_turn, fmt.generation_prompt(voice)])
    middle = Tokens.cat([fmt.newline(), fmt.tool_turn(output), fmt.generation_prompt(voice)])
    a = len(head)
    b = a + len(call_reply)
    c = b + len(middle)
    d = c + len(answer_reply)
    runs = [head, call_reply, middle, answer_reply, fmt.newline()]
    return ToolConversation(Tokens.cat(runs, fmt.codec_pad), (a, b), (c, d))

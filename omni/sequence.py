"""Token sequences of the omni model and the chat template.

A `Tokens` run is what one prefill consumes: text ids, the four codec columns
(offset values; 3 = pad) and the continuous features that replace the
`<|audio_pad|>` / `<|image_pad|>` positions, in order. Runs concatenate, so a
whole conversation and the same conversation fed chunk by chunk are the same
data (tests check this).

Chat template (the original release's voice-chat format):

    SYSTEM:{text}</longcat_s>\\n          (optional)
    USER:{items}\\n
    VOICE ASSISTANT:{text + codec rows}</longcat_s>\\n

Items: text; image = N x `<|image_pad|>` + `\\n`; audio = `<|audio|>` + n x
`<|audio_pad|>` + `<|/audio|>`; streamed audio-visual input is interleaved in 1 s
chunks with `second{t}:` timestamps (see `sequence_av.py`).

Template modes (`TemplateConfig` in omni/config.py, saved with the checkpoint;
all off for the original release, so its layout above is unchanged). They carry
LongCat-Flash's text template, `SYSTEM:{system_prompt} [Round N] USER:{query}
/think_on ASSISTANT:`, into this newline-separated layout:

    rounds:   user turns are numbered from 0:  `[Round N] USER:{items}\\n`
    thinking: a user turn may end with ` /think_on` or ` /think_off` (before its
              newline); a reply may then open with a thinking section
              `<longcat_think>...</longcat_think>` (omni/reply_stream.py splits it
              off; serving never speaks it). Asking for it from a checkpoint
              without the mode is an error.

Tool results (role "tool") are user turns holding
`<longcat_tool_response>{output}</longcat_tool_response>` (omni/tool_calls.py);
they are not numbered as rounds.

Text pieces are tokenized one at a time at fixed boundaries (role header,
timestamp, text item), so the offline and the incremental builders, which emit
the same pieces, give identical ids with any BPE tokenizer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Iterable

import torch

from omni.config import TemplateConfig
from omni.tokenizer import OmniTokenizer
from omni.tool_calls import tool_response

NUM_CODEBOOKS = 4
THINK_ON, THINK_OFF = " /think_on", " /think_off"
ROLE_HEADERS = {
    "system": "SYSTEM:",
    "user": "USER:",
    "assistant": "ASSISTANT:",
    "voice_assistant": "VOICE ASSISTANT:",
}


@dataclass
class Tokens:
    """A run of positions: ids [L], codec [L, 4] and replacement features."""

    ids: torch.Tensor  # int64 [L]
    codec: torch.Tensor  # int64 [L, 4], offset values, 3 = pad
    audio: list[torch.Tensor] = field(default_factory=list)  # each [n_i, D]; sum n_i = #audio_pad
    image: list[torch.Tensor] = field(default_factory=list)  # each [m_j, D]; sum m_j = #image_pad

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @staticmethod
    def empty(codec_pad: int = 3) -> "Tokens":
        return Tokens(torch.zeros(0, dtype=torch.long), torch.full((0, NUM_CODEBOOKS), codec_pad, dtype=torch.long))

    @staticmethod
    def cat(runs: Iterable["Tokens"], codec_pad: int = 3) -> "Tokens":
        runs = [r for r in runs]
        if not runs:
            return Tokens.empty(codec_pad)
        return Tokens(
            ids=torch.cat([r.ids for r in runs]),
            codec=torch.cat([r.codec for r in runs]),
            audio=[a for r in runs for a in r.audio],
            image=[i for r in runs for i in r.image],
        )

    def check(self, audio_pad_id: int, image_pad_id: int) -> None:
        """Raise if the placeholder counts and the feature rows disagree."""
        n_audio = int((self.ids == audio_pad_id).sum())
        n_image = int((self.ids == image_pad_id).sum())
        have_audio = sum(int(a.shape[0]) for a in self.audio)
        have_image = sum(int(i.shape[0]) for i in self.image)
        if n_audio != have_audio:
            raise ValueError(f"sequence has {n_audio} <|audio_pad|> positions but {have_audio} audio feature rows")
        if n_image != have_image:
            raise ValueError(f"sequence has {n_image} <|image_pad|> positions but {have_image} image feature rows")


def format_timestamp(t: float) -> str:
    """`second{t}:` with one decimal, rounded half up (the original's form)."""
    value = Decimal(repr(float(t))).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
    return f"second{{{value}}}:"


class ChatFormat:
    """Renders pieces of the chat template into `Tokens`."""

    def __init__(self, tokenizer: OmniTokenizer, codec_pad: int = 3, template: TemplateConfig | None = None) -> None:
        self.tok = tokenizer
        self.sp = tokenizer.special
        self.codec_pad = codec_pad
        self.template = template or TemplateConfig()
        self._cache: dict[str, list[int]] = {}

    # ---------------------------------------------------------- primitives
    def ids(self, ids: list[int], audio=(), image=()) -> Tokens:
        t = torch.tensor(ids, dtype=torch.long)
        codec = torch.full((len(ids), NUM_CODEBOOKS), self.codec_pad, dtype=torch.long)
        return Tokens(t, codec, list(audio), list(image))

    def text(self, text: str) -> Tokens:
        if text not in self._cache:
            self._cache[text] = self.tok.encode(text)
        return self.ids(list(self._cache[text]))

    def header(self, role: str) -> Tokens:
        if role not in ROLE_HEADERS:
            raise ValueError(f"unknown role {role!r}; known: {sorted(ROLE_HEADERS)}")
        return self.text(ROLE_HEADERS[role])

    def user_header(self, round: int | None = None) -> Tokens:
        """`USER:`, or `[Round N] USER:` when the template numbers rounds and N is given."""
        if self.template.rounds and round is not None:
            return self.text(f"[Round {int(round)}] {ROLE_HEADERS['user']}")
        return self.header("user")

    def think_switch(self, think: bool | None) -> Tokens:
        """` /think_on` / ` /think_off` at the end of a user turn; nothing for None."""
        if think is None:
            return Tokens.empty(self.codec_pad)
        if not self.template.thinking:
            raise ValueError("this checkpoint's chat template has no thinking mode (TemplateConfig.thinking)")
        return self.text(THINK_ON if think else THINK_OFF)

    def newline(self) -> Tokens:
        return self.text("\n")

    def eos(self) -> Tokens:
        return self.ids([self.sp.eos])

    def timestamp(self, t: float) -> Tokens:
        return self.text(format_timestamp(t))

    def audio_pads(self, feats: torch.Tensor) -> Tokens:
        n = int(feats.shape[0])
        return self.ids([self.sp.audio_pad] * n, audio=[feats] if n else [])

    def image_pads(self, feats: torch.Tensor) -> Tokens:
        n = int(feats.shape[0])
        return self.ids([self.sp.image_pad] * n, image=[feats] if n else [])

    def audio_open(self) -> Tokens:
        return self.ids([self.sp.audio_start])

    def audio_close(self) -> Tokens:
        return self.ids([self.sp.audio_end])

    # ---------------------------------------------------------- items / turns
    def image_item(self, feats: torch.Tensor) -> Tokens:
        return Tokens.cat([self.image_pads(feats), self.newline()])

    def audio_item(self, feats: torch.Tensor) -> Tokens:
        return Tokens.cat([self.audio_open(), self.audio_pads(feats), self.audio_close()])

    def system_turn(self, text: str) -> Tokens:
        return Tokens.cat([self.header("system"), self.text(text), self.eos(), self.newline()])

    def assistant_text_turn(self, text: str) -> Tokens:
        return Tokens.cat([self.header("assistant"), self.text(text), self.eos(), self.newline()])

    def user_text_turn(self, text: str, round: int | None = None, think: bool | None = None) -> Tokens:
        return Tokens.cat([self.user_header(round), self.text(text), self.think_switch(think), self.newline()])

    def tool_turn(self, output: str) -> Tokens:
        """A tool's result for the model (a user turn, not a numbered round)."""
        return Tokens.cat([self.header("user"), self.text(tool_response(output)), self.newline()])

    def text_turn(self, role: str, text: str, round: int | None = None) -> Tokens:
        if role == "system":
            return self.system_turn(text)
        if role == "user":
            return self.user_text_turn(text, round)
        if role == "tool":
            return self.tool_turn(text)
        if role in ("assistant", "voice_assistant"):
            return self.assistant_text_turn(text)
        raise ValueError(f"unknown role {role!r}; expected system, user, assistant or tool")

    def generation_prompt(self, voice: bool = True) -> Tokens:
        return self.header("voice_assistant" if voice else "assistant")

    def render_text(self, messages: list[dict], voice: bool = True, think: bool | None = None) -> Tokens:
        """Text-only conversation (list of {role, content}) + generation prompt; `think`
        switches thinking on / off in the last user turn (templates with the mode)."""
        runs, rounds = [], 0
        last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=-1)
        for i, m in enumerate(messages):
            if m["role"] == "user":
                runs.append(self.user_text_turn(m["content"], rounds, think if i == last_user else None))
                rounds += 1
            else:
                runs.append(self.text_turn(m["role"], m["content"]))
        runs.append(self.generation_prompt(voice))
        return Tokens.cat(runs)

"""Splits a reply's text, as it streams, into what may be spoken and what may not.

A LongCat reply can hold blocks that are not speech: tool calls
(`<longcat_tool_call>...</longcat_tool_call>`, see omni/tool_calls.py) and
thinking (`<longcat_think>...</longcat_think>`, checkpoints with a thinking
mode, see omni/sequence.py). The text arrives a token at a time and a tag can be
split anywhere, so `ReplyStream.feed` holds back any tail that could still be
the start of a tag, and returns pieces in order:

    Piece("text", "Sure, ")                    speakable
    Piece("call", '{"name": ...}', True)       a complete call block's content
    Piece("think", "...", True)                thinking (never spoken)

`finish()` ends the reply: held text comes out as text, and an unclosed block
comes out with complete=False. While `hiding` is true (inside a block, or
holding a possible tag start) nothing of the reply may be spoken: the serving
engine holds or drops the speech frames of those steps.
"""

from __future__ import annotations

from dataclasses import dataclass

from omni.tool_calls import CALL_CLOSE, CALL_OPEN

THINK_OPEN, THINK_CLOSE = "<longcat_think>", "</longcat_think>"
BLOCKS = {CALL_OPEN: ("call", CALL_CLOSE), THINK_OPEN: ("think", THINK_CLOSE)}
MAX_BLOCK_CHARS = 32768  # a block longer than this is cut (complete=False): a babbling model cannot grow it forever


@dataclass
class Piece:
    kind: str  # "text" | "call" | "think"
    text: str
    complete: bool = True


def _held_prefix(text: str, tags: list[str]) -> int:
    """Length of the longest tail of `text` that is a proper prefix of one of `tags`."""
    best = 0
    for tag in tags:
        for n in range(min(len(tag) - 1, len(text)), best, -1):
            if text.endswith(tag[:n]):
                best = n
                break
    return best


class ReplyStream:
    def __init__(self) -> None:
        self.buf = ""  # text not yet classified
        self.block: tuple[str, str] | None = None  # (kind, close tag) while inside a block
        self.content: list[str] = []
        self.size = 0

    @property
    def in_block(self) -> bool:
        return self.block is not None

    @property
    def hiding(self) -> bool:
        return self.block is not None or bool(self.buf)

    def feed(self, text: str) -> list[Piece]:
        self.buf += text
        out: list[Piece] = []
        while self.buf:
            if self.block is None:
                hits = [(self.buf.find(tag), tag) for tag in BLOCKS if tag in self.buf]
                if hits:
                    at, tag = min(hits)
                    if at:
                        out.append(Piece("text", self.buf[:at]))
                    self.buf = self.buf[at + len(tag):]
                    self.block, self.content, self.size = BLOCKS[tag], [], 0
                    continue
                keep = _held_prefix(self.buf, list(BLOCKS))
                if len(self.buf) > keep:
                    out.append(Piece("text", self.buf[:len(self.buf) - keep]))
                    self.buf = self.buf[len(self.buf) - keep:]
                break
            kind, close = self.block
            at = self.buf.find(close)
            if at >= 0:
                self._add(self.buf[:at])
                self.buf = self.buf[at + len(close):]
                out.append(self._end(complete=self.size <= MAX_BLOCK_CHARS))
                continue
            keep = _held_prefix(self.buf, [close])
            self._add(self.buf[:len(self.buf) - keep])
            self.buf = self.buf[len(self.buf) - keep:]
            break
        return out

    def finish(self) -> list[Piece]:
        """The reply is over: what was held back, and an unclosed block (incomplete)."""
        out: list[Piece] = []
        if self.block is None:
            if self.buf:
                out.append(Piece("text", self.buf))
        else:
            self._add(self.buf)
            out.append(self._end(complete=False))
        self.buf = ""
        return out

    def _add(self, text: str) -> None:
        if self.size <= MAX_BLOCK_CHARS:
            self.content.append(text)
        self.size += len(text)

    def _end(self, complete: bool) -> Piece:
        kind = self.block[0]
        self.block = None
        return Piece(kind, "".join(self.content)[:MAX_BLOCK_CHARS], complete)


class SpeechGate:
    """Which decode steps' speech is spoken, for a caller that speaks as it decodes
    (`omni chat`): not the steps in which a block (thinking, a tool call) starts, goes on
    or ends, and, while the text may be starting a tag, held until a later step decides.
    The server's `SlotStream.split_step` keeps the same rule."""

    def __init__(self, stream: ReplyStream | None = None) -> None:
        self.stream = stream or ReplyStream()
        self.held: list = []

    def step(self, text: str, speech: list, done: bool = False) -> tuple[list[Piece], list]:
        """Feed one step's text and its speech items; -> (text pieces, speech to play now)."""
        was_in = self.stream.in_block
        pieces = self.stream.feed(text) + (self.stream.finish() if done else [])
        if was_in or self.stream.in_block or any(p.kind != "text" for p in pieces):
            self.held = []  # a block's steps (and a held tag start that became one) are not speech
            return pieces, []
        self.held += speech
        if self.stream.hiding and not done:  # a possible tag start: the next step decides
            return pieces, []
        out, self.held = self.held, []
        return pieces, out

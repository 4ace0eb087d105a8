"""Session configuration negotiated by `session.update`.

Accepts both shapes the `openai` SDK has sent: the GA shape
(`session.audio.input.format`, `session.audio.input.turn_detection`,
`session.output_modalities`) and the older beta shape (`input_audio_format:
"pcm16"`, top-level `turn_detection`, `modalities`). Unknown fields are ignored,
as the OpenAI server does; known fields with bad values raise a ProtocolError
that names the field.

Settings the server cannot honour as asked are not refused but replaced by what
it actually uses, and `session.omni.adjusted` lists each replacement
({param, requested, used}) so nothing changes silently:
- `voice`: the model has one voice, reported as "default";
- `turn_detection.type: "semantic_vad"` on a server whose model has no
  end-of-turn head (omni/turn_end.py): server VAD runs with
  `silence_duration_ms` from the eagerness (low 1000, medium / auto 600, high
  400 ms), and the echo says `server_vad`. With a head, semantic_vad is served
  as asked (streaming/semantic_turn.py; `SEMANTIC_EAGERNESS` below);
- `audio.input.transcription` (`input_audio_transcription`): the server's own
  recognizer (its name in `model`, language "en") whatever model is named, or
  null when the server runs none.

Function tools (`tools`, `tool_choice`, also per `response.create`): names
must be unique and 1-64 of [A-Za-z0-9_.-]; a parameter schema may use only the
JSON-schema keywords the server checks calls against (omni/tool_calls.py), so a
call is never passed on unchecked; a named `tool_choice` must name a declared
tool, and `required` needs one.

Extensions (ignored by OpenAI clients that do not send them):
- `turn_detection.ignore_backchannels`: "uh-huh", "yeah", "okay" during a reply
  do not stop it (default true where the server has its backchannel detector,
  streaming/backchannel.py; false, and noted in `adjusted`, where it has none).
- `turn_detection.speculative_silence_ms`: the early silence point at which the
  engine starts decoding speculatively (null disables speculation). The other
  threshold, `silence_duration_ms`, confirms the end of the turn.
- audio format `{"type": "audio/pcm", "rate": 16000}` on input or output.
- `session.omni`: `{"debug_events": bool, "dense_fps": 2.0, "sparse_fps": 0.5}`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from omni.tool_calls import TOOL_NAME, SchemaError, check_schema
from streaming.protocol.events import ProtocolError

SUPPORTED_RATES = (24000, 16000)
VOICE = "default"  # the one voice the model speaks with


@dataclass
class AudioFormat:
    type: str = "audio/pcm"
    rate: int = 24000

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "rate": self.rate}


# semantic_vad, eagerness -> (P(complete) that ends the turn at once, the longest
# silence before the turn ends whatever the model judged, in ms). The threshold
# holds for the first half of that silence, then falls to 0 (streaming/semantic_turn.py).
# A head with thresholds of its own (calibrated when trained, omni/turn_end.py) replaces
# the first number; the waits are always these.
SEMANTIC_EAGERNESS: dict[str, tuple[float, int]] = {
    "high": (0.3, 1500), "medium": (0.5, 2500), "auto": (0.5, 2500), "low": (0.7, 4000)}
SEMANTIC_SPECULATIVE_MS = 128  # semantic_vad speculates (and so judges the turn) this early


@dataclass
class TurnDetection:
    type: str = "server_vad"
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 600  # end of turn confirmed (LongCat: 600-700 ms)
    speculative_silence_ms: int | None = 200  # start decoding early; None: never
    create_response: bool = True
    interrupt_response: bool = True
    eagerness: str | None = None  # semantic_vad only: low | medium | high | auto
    # extension: "uh-huh" during a reply does not stop it (needs the server's detector, streaming/backchannel.py)
    ignore_backchannels: bool = False

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if self.eagerness is None:
            del d["eagerness"]
        return d


@dataclass
class SessionConfig:
    id: str = ""
    model: str = "omni"
    model_trained: bool | None = None  # False: randomly initialized (its words are noise); None: not said
    model_card: dict[str, Any] | None = None  # what the model knows and what to ask it (omni.model_card)
    semantic_turn: bool = False  # the model judges the end of a turn (semantic_vad is served as asked)
    backchannels: bool = False  # the server tells backchannels from interruptions (ignore_backchannels works)
    instructions: str | None = None
    output_modalities: list[str] = field(default_factory=lambda: ["audio"])
    input_format: AudioFormat = field(default_factory=AudioFormat)
    output_format: AudioFormat = field(default_factory=AudioFormat)
    turn_detection: TurnDetection | None = field(default_factory=TurnDetection)
    voice: str = VOICE
    max_output_tokens: int | None = None  # decode steps; None: the server's cap
    tools: list[dict[str, Any]] = field(default_factory=list)  # {"type": "function", name, description, parameters}
    tool_choice: Any = "auto"  # "auto" | "none" | "required" | {"type": "function", "name": ...}
    transcriber: str | None = None  # the server's input recognizer (None: it has none)
    transcription: dict[str, Any] | None = None  # what the session uses: {"model": transcriber, "language": "en"}
    adjusted: dict[str, dict[str, Any]] = field(default_factory=dict)  # param -> {param, requested, used}
    debug_events: bool = False
    dense_fps: float = 2.0
    sparse_fps: float = 0.5

    def to_json(self) -> dict[str, Any]:
        td = self.turn_detection.to_json() if self.turn_detection else None
        return {
            "type": "realtime",
            "object": "realtime.session",
            "id": self.id,
            "model": self.model,
            "instructions": self.instructions or "",
            "output_modalities": list(self.output_modalities),
            "max_output_tokens": self.max_output_tokens if self.max_output_tokens else "inf",
            "tools": [dict(t) for t in self.tools],
            "tool_choice": self.tool_choice,
            "audio": {
                "input": {"format": self.input_format.to_json(), "turn_detection": td,
                          "transcription": dict(self.transcription) if self.transcription else None},
                "output": {"format": self.output_format.to_json(), "voice": self.voice},
            },
            "omni": {
                "adjusted": list(self.adjusted.values()),
                "debug_events": self.debug_events,
                "dense_fps": self.dense_fps,
                "sparse_fps": self.sparse_fps,
                "semantic_turn": self.semantic_turn,  # semantic_vad is served as asked (the model has a head)
                **({"model": {"name": self.model, "trained": self.model_trained, **(self.model_card or {})}}
                   if self.model_trained is not None or self.model_card else {}),
            },
        }


def _err(param: str, message: str, code: str = "invalid_value") -> ProtocolError:
    return ProtocolError(code, message, param=param)


def _format(value: Any, param: str) -> AudioFormat:
    if value == "pcm16":  # beta shape: pcm16 at 24 kHz
        return AudioFormat("audio/pcm", 24000)
    if isinstance(value, str):
        raise _err(param, f"unsupported audio format {value!r}; use pcm16 or audio/pcm", "unsupported_audio_format")
    if not isinstance(value, dict):
        raise _err(param, f"audio format must be an object, got {type(value).__name__}")
    kind = value.get("type", "audio/pcm")
    if kind != "audio/pcm":
        raise _err(param, f"unsupported audio format {kind!r}; only audio/pcm (pcm16 mono)", "unsupported_audio_format")
    rate = value.get("rate", 24000)
    if rate not in SUPPORTED_RATES:
        raise _err(param + ".rate", f"unsupported sample rate {rate!r}; supported: {list(SUPPORTED_RATES)}",
                   "unsupported_audio_format")
    return AudioFormat("audio/pcm", int(rate))


def _num(d: dict, key: str, param: str, lo: float, hi: float, integer: bool = False) -> Any:
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (lo <= v <= hi):
        raise _err(f"{param}.{key}", f"{key} must be a number in [{lo}, {hi}], got {v!r}")
    return int(v) if integer else float(v)


def _adjust(adjusted: dict, param: str, requested: Any, used: Any) -> None:
    """Note (or clear) that `param` was asked as `requested` and the server uses `used`."""
    if requested == used:
        adjusted.pop(param, None)
    else:
        adjusted[param] = {"param": param, "requested": requested, "used": used}


def _turn_detection(value: Any, current: TurnDetection | None, param: str,
                    adjusted: dict | None = None, semantic: bool = False,
                    backchannels: bool = False) -> TurnDetection | None:
    """semantic: the server's model has an end-of-turn head, so semantic_vad is served as asked;
    backchannels: the server has a backchannel detector, so ignore_backchannels is too."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _err(param, "turn_detection must be an object or null")
    kind = value.get("type", "server_vad")
    if kind not in ("server_vad", "semantic_vad"):
        raise _err(param + ".type", f"unknown turn_detection type {kind!r}; use server_vad or semantic_vad")
    td = dataclasses.replace(current) if current else TurnDetection()
    if kind == "semantic_vad":
        eager = value.get("eagerness", "auto")
        if eager not in SEMANTIC_EAGERNESS:
            raise _err(param + ".eagerness", f"eagerness must be one of {', '.join(SEMANTIC_EAGERNESS)}, got {eager!r}")
        if semantic:  # the model judges the turn; the silence is only the longest wait
            td.type, td.eagerness = "semantic_vad", eager
            td.silence_duration_ms = SEMANTIC_EAGERNESS[eager][1]
            td.speculative_silence_ms = SEMANTIC_SPECULATIVE_MS
        else:  # no semantic model here: map eagerness onto the silence threshold
            td.type, td.eagerness = "server_vad", None
            td.silence_duration_ms = {"low": 1000, "medium": 600, "auto": 600, "high": 400}[eager]
    elif td.type == "semantic_vad":  # back to server VAD: its own defaults, unless given below
        base = TurnDetection()
        td.type, td.eagerness = "server_vad", None
        td.silence_duration_ms, td.speculative_silence_ms = base.silence_duration_ms, base.speculative_silence_ms
    if adjusted is not None:
        _adjust(adjusted, param + ".type", kind, td.type)
    if "threshold" in value:
        td.threshold = _num(value, "threshold", param, 0.05, 0.99)
    if "prefix_padding_ms" in value:
        td.prefix_padding_ms = _num(value, "prefix_padding_ms", param, 0, 2000, True)
    if "silence_duration_ms" in value:
        td.silence_duration_ms = _num(value, "silence_duration_ms", param, 100, 10000, True)
    if "speculative_silence_ms" in value:
        if value["speculative_silence_ms"] is None:
            td.speculative_silence_ms = None
        else:
            td.speculative_silence_ms = _num(value, "speculative_silence_ms", param, 32, 10000, True)
    if current is None:  # turn detection back on: the server's default for backchannels
        td.ignore_backchannels = backchannels
    if value.get("ignore_backchannels") is not None:
        if not isinstance(value["ignore_backchannels"], bool):
            raise _err(f"{param}.ignore_backchannels", "ignore_backchannels must be true or false")
        td.ignore_backchannels = value["ignore_backchannels"] and backchannels
        if adjusted is not None:
            _adjust(adjusted, param + ".ignore_backchannels", value["ignore_backchannels"], td.ignore_backchannels)
    for key in ("create_response", "interrupt_response"):
        if key in value and value[key] is not None:
            if not isinstance(value[key], bool):
                raise _err(f"{param}.{key}", f"{key} must be true or false")
            setattr(td, key, value[key])
    if td.speculative_silence_ms is not None and td.speculative_silence_ms >= td.silence_duration_ms:
        raise _err(param + ".speculative_silence_ms",
                   f"speculative_silence_ms ({td.speculative_silence_ms}) must be below "
                   f"silence_duration_ms ({td.silence_duration_ms})")
    return td


def parse_tools(value: Any, param: str) -> list[dict[str, Any]]:
    """Function tools (already of the schema's shape) in their normalized form."""
    tools, seen = [], set()
    for i, t in enumerate(value or []):
        name = t["name"]
        if not TOOL_NAME.match(name):
            raise _err(f"{param}[{i}].name", f"tool name {name[:64]!r} must be 1-64 of A-Z a-z 0-9 _ . -")
        if name in seen:
            raise _err(f"{param}[{i}].name", f"tool name {name!r} is declared twice")
        seen.add(name)
        params = t.get("parameters") or {"type": "object", "properties": {}}
        try:
            check_schema(params)
        except SchemaError as e:
            raise _err(f"{param}[{i}].{e.path}", str(e)) from None
        tools.append({"type": "function", "name": name, "description": t.get("description") or "",
                      "parameters": params})
    return tools


def check_tool_choice(choice: Any, tools: list[dict[str, Any]], param: str) -> Any:
    """`choice` (already of the schema's shape) if it fits `tools`."""
    if choice is None:
        return "auto"
    if isinstance(choice, dict):
        if choice["name"] not in {t["name"] for t in tools}:
            raise _err(param + ".name", f"tool_choice names {choice['name'][:64]!r}, which is not a declared tool")
        return {"type": "function", "name": choice["name"]}
    if choice == "required" and not tools:
        raise _err(param, "tool_choice 'required' needs at least one tool")
    return choice


def apply_session_update(cfg: SessionConfig, session: Any) -> SessionConfig:
    """A new SessionConfig with the fields present in `session` applied."""
    if not isinstance(session, dict):
        raise _err("session", "session must be an object")
    new = dataclasses.replace(cfg, adjusted=dict(cfg.adjusted))
    if "instructions" in session:
        if session["instructions"] is not None and not isinstance(session["instructions"], str):
            raise _err("session.instructions", "instructions must be a string")
        new.instructions = session["instructions"] or None
    mods = session.get("output_modalities", session.get("modalities"))
    if mods is not None:
        if not isinstance(mods, list) or not mods or any(m not in ("text", "audio") for m in mods):
            raise _err("session.output_modalities", f"output_modalities must list 'text' and/or 'audio', got {mods!r}")
        new.output_modalities = list(mods)
    if "max_output_tokens" in session or "max_response_output_tokens" in session:
        v = session.get("max_output_tokens", session.get("max_response_output_tokens"))
        if v in (None, "inf"):
            new.max_output_tokens = None
        elif isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 100000:
            new.max_output_tokens = v
        else:
            raise _err("session.max_output_tokens", f"max_output_tokens must be 1..100000 or 'inf', got {v!r}")
    # beta shape
    if "input_audio_format" in session:
        new.input_format = _format(session["input_audio_format"], "session.input_audio_format")
    if "output_audio_format" in session:
        new.output_format = _format(session["output_audio_format"], "session.output_audio_format")
    if "turn_detection" in session:
        new.turn_detection = _turn_detection(session["turn_detection"], cfg.turn_detection, "session.turn_detection",
                                             new.adjusted, cfg.semantic_turn, cfg.backchannels)
    if isinstance(session.get("voice"), str):
        _adjust(new.adjusted, "session.voice", session["voice"], VOICE)
    if "input_audio_transcription" in session:
        _transcription(new, session["input_audio_transcription"], "session.input_audio_transcription")
    if "tools" in session:
        new.tools = parse_tools(session["tools"], "session.tools")
    if "tool_choice" in session:
        new.tool_choice = session["tool_choice"] or "auto"
    # GA shape
    audio = session.get("audio")
    if audio is not None:
        if not isinstance(audio, dict):
            raise _err("session.audio", "audio must be an object")
        inp, out = audio.get("input") or {}, audio.get("output") or {}
        if "format" in inp:
            new.input_format = _format(inp["format"], "session.audio.input.format")
        if "turn_detection" in inp:
            new.turn_detection = _turn_detection(
                inp["turn_detection"], cfg.turn_detection, "session.audio.input.turn_detection", new.adjusted,
                cfg.semantic_turn, cfg.backchannels)
        if "transcription" in inp:
            _transcription(new, inp["transcription"], "session.audio.input.transcription")
        if "format" in out:
            new.output_format = _format(out["format"], "session.audio.output.format")
        if isinstance(out.get("voice"), str):
            _adjust(new.adjusted, "session.audio.output.voice", out["voice"], VOICE)
    omni = session.get("omni")
    if omni is not None:
        if not isinstance(omni, dict):
            raise _err("session.omni", "omni must be an object")
        if "debug_events" in omni:
            new.debug_events = bool(omni["debug_events"])
        if "dense_fps" in omni:
            new.dense_fps = _num(omni, "dense_fps", "session.omni", 0.1, 10)
        if "sparse_fps" in omni:
            new.sparse_fps = _num(omni, "sparse_fps", "session.omni", 0.05, 10)
    # checked against the tools in force after this update (either may have changed)
    new.tool_choice = check_tool_choice(new.tool_choice, new.tools, "session.tool_choice")
    return new


def _transcription(new: SessionConfig, value: Any, param: str) -> None:
    """Input transcription on (with the server's recognizer) or off."""
    if value is None:
        new.transcription = None
        for key in [k for k in new.adjusted if k.startswith(param)]:
            del new.adjusted[key]
        return
    used = {"model": new.transcriber, "language": "en"} if new.transcriber else None
    new.transcription = used
    asked = value.get("model")
    if used is None or asked is not None:  # off although asked for, or another recognizer than named
        _adjust(new.adjusted, param + ".model", asked or "(any)", new.transcriber)
    if value.get("language") is not None:
        _adjust(new.adjusted, param + ".language", value["language"], "en" if used else None)

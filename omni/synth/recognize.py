"""An independent judge of spoken answers: pocketsphinx with a JSGF grammar of every answer.

The world's answers are a closed set, so recognition is constrained to it: the
judge says which answer it heard (or "" for none). Used to pick the assistant's
voice (`omni data check-voice`) and by the default model's speech benchmark.

Pocketsphinx needs context around an utterance: on digital silence its noise
and cepstral-mean estimates fail and short words ("one", "left") come back
empty. `recognize` therefore pads 0.6 s on each side and adds faint dither
(about -60 dBFS) before decoding; both are documented parts of the judge.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .audio import SAMPLE_RATE, to_float
from .questions import answer_space, normalize_answer

PAD_S = 0.6
DITHER_RMS = 30.0 / 32768.0


def sphinx_decode(decoder: Any, x: np.ndarray, rng: np.random.Generator) -> Any:
    """One utterance (float in [-1, 1] at 16 kHz) through a pocketsphinx decoder: padded with
    PAD_S of faintly dithered silence each side, which short words need; its hypothesis or None."""
    pad = np.zeros(int(PAD_S * SAMPLE_RATE))
    x = np.concatenate([pad, np.asarray(x, dtype=np.float64).reshape(-1), pad])
    x = x + rng.standard_normal(len(x)) * DITHER_RMS
    pcm = np.clip(np.round(x * 32768.0), -32768, 32767).astype("<i2")
    decoder.start_utt()
    decoder.process_raw(pcm.tobytes(), full_utt=True)
    decoder.end_utt()
    return decoder.hyp()


def answer_grammar(answers: list[str]) -> str:
    """JSGF grammar accepting exactly one of `answers`."""
    alts = " | ".join(f"( {normalize_answer(a)} )" for a in answers)
    return f"#JSGF V1.0;\ngrammar answers;\npublic <answer> = {alts} ;\n"


class AnswerRecognizer:
    """Recognizes which of a closed set of answers a 16 kHz waveform says."""

    def __init__(self, answers: list[str] | None = None) -> None:
        try:
            import pocketsphinx
        except ImportError as exc:
            raise RuntimeError("pocketsphinx is not installed (pip install pocketsphinx)") from exc
        self.answers = [normalize_answer(a) for a in (answers or answer_space())]
        self.decoder = pocketsphinx.Decoder(pocketsphinx.Config(loglevel="FATAL"))
        unknown = sorted({w for a in self.answers for w in a.split() if self.decoder.lookup_word(w) is None})
        if unknown:
            raise ValueError(f"answer words missing from the pocketsphinx dictionary: {unknown}")
        self.decoder.add_jsgf_string("answers", answer_grammar(self.answers))
        self.decoder.activate_search("answers")
        self._rng = np.random.default_rng(0)

    def recognize(self, wav: np.ndarray, sample_rate: int = SAMPLE_RATE) -> str:
        """The answer heard in `wav` (float in [-1, 1] or int16), or "" when none."""
        if sample_rate != SAMPLE_RATE:
            raise ValueError(f"the recognizer takes {SAMPLE_RATE} Hz audio, got {sample_rate} Hz")
        x = wav.astype(np.float64) / (32768.0 if wav.dtype == np.int16 else 1.0)
        hyp = sphinx_decode(self.decoder, x, self._rng)
        return normalize_answer(hyp.hypstr) if hyp is not None else ""


# Renderings of one voice that `check_voice` judges (speed and pitch offsets from the
# voice's own): the first is the voice itself, then slower/lower, faster/higher, ...
RENDERING_OFFSETS: tuple[tuple[int, int], ...] = (
    (0, 0), (-15, -8), (15, 8), (-8, 10), (8, -10), (-20, 4), (20, -4), (0, -16), (0, 16),
)


def voice_renderings(voice, n: int = 1) -> list:
    """The first `n` judged renderings of `voice` (same name and word gap, other speed / pitch)."""
    from dataclasses import replace

    if not 1 <= n <= len(RENDERING_OFFSETS):
        raise ValueError(f"renderings must be 1..{len(RENDERING_OFFSETS)}, got {n}")
    return [replace(voice, speed=voice.speed + ds, pitch=min(99, max(0, voice.pitch + dp)))
            for ds, dp in RENDERING_OFFSETS[:n]]


def check_voice(voice=None, answers: list[str] | None = None, progress: bool = True, codec=None,
                renderings: int = 1, min_share: float = 0.8, with_original: bool = False) -> dict:
    """Share of the answers, spoken by `voice` (default: the assistant's), that the judge hears right.

    codec: a `speech.Codec`; the judge then hears each answer after an encode /
    decode round trip, the best a model speaking through that codec can sound.
    renderings: judge every answer in that many renderings of the voice
    (`voice_renderings`); an answer passes when it is heard in at least `min_share`
    of them. with_original (with a codec): also judge the original speech, with its
    own recognizer, to tell the codec's misses from the judge's own.
    The top-level "correct" / "misses" are those of the first rendering (the voice itself).
    """
    import math

    from .voices import ASSISTANT_VOICE, synthesize

    voice = voice or ASSISTANT_VOICE
    setups = voice_renderings(voice, renderings)
    # one recognizer per condition: its dither sequence is then the same whatever else is judged
    judge = AnswerRecognizer(answers)
    orig_judge = AnswerRecognizer(answers) if (with_original and codec is not None) else None
    names = judge.answers
    conditions = ["codec" if codec is not None else "original"] + (["original"] if orig_judge else [])
    heard = {c: {a: [] for a in names} for c in conditions}
    items = [(r, a) for r in range(len(setups)) for a in names]
    if progress:
        from tqdm import tqdm

        items = tqdm(items, desc=f"recognize {voice.name} x{len(setups)}", unit="answer", dynamic_ncols=True)
    for r, a in items:
        wav = to_float(synthesize(a, setups[r]))
        if orig_judge is not None:
            heard["original"][a].append(orig_judge.recognize(wav))
        if codec is not None:
            import torch

            wav = codec.decode(codec.encode(torch.from_numpy(wav)))[0].cpu().numpy()
        heard[conditions[0]][a].append(judge.recognize(wav))
    n = len(names)
    need = math.ceil(min_share * len(setups) - 1e-9)

    def summary(c: str) -> dict:
        per = {a: sum(h == a for h in heard[c][a]) for a in names}
        return {
            "per_rendering_correct": [sum(heard[c][a][r] == a for a in names) for r in range(len(setups))],
            "heard_correct_times": per,
            "answers_below_bar": sorted((a for a in names if per[a] < need), key=lambda a: (per[a], a)),
            "heard": {a: heard[c][a] for a in names if per[a] < len(setups)},
        }

    main = conditions[0]
    misses = [{"answer": a, "heard": heard[main][a][0]} for a in names if heard[main][a][0] != a]
    res = {"voice": voice.to_dict(), "through_codec": codec is not None, "answers": n, "correct": n - len(misses),
           "accuracy": (n - len(misses)) / n, "misses": misses}
    if len(setups) > 1 or orig_judge is not None:
        res["renderings"] = [{"speed": v.speed, "pitch": v.pitch} for v in setups]
        res["bar"] = {"min_share": min_share, "min_times": need, "of": len(setups)}
        res["conditions"] = {c: summary(c) for c in conditions}
    return res

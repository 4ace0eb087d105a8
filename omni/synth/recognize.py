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

import numpy as np

from .audio import SAMPLE_RATE, to_float
from .questions import answer_space, normalize_answer

PAD_S = 0.6
DITHER_RMS = 30.0 / 32768.0


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
        pad = np.zeros(int(PAD_S * SAMPLE_RATE))
        x = np.concatenate([pad, x, pad])
        x = x + self._rng.standard_normal(len(x)) * DITHER_RMS
        pcm = np.clip(np.round(x * 32768.0), -32768, 32767).astype("<i2")
        self.decoder.start_utt()
        self.decoder.process_raw(pcm.tobytes(), full_utt=True)
        self.decoder.end_utt()
        hyp = self.decoder.hyp()
        return normalize_answer(hyp.hypstr) if hyp is not None else ""


def check_voice(voice=None, answers: list[str] | None = None, progress: bool = True, codec=None) -> dict:
    """Share of the answers, spoken by `voice` (default: the assistant's), that the judge hears right.

    codec: a `speech.Codec`; the judge then hears each answer after an encode /
    decode round trip, the best a model speaking through that codec can sound.
    """
    from .voices import ASSISTANT_VOICE, synthesize

    voice = voice or ASSISTANT_VOICE
    judge = AnswerRecognizer(answers)
    items = judge.answers
    if progress:
        from tqdm import tqdm

        items = tqdm(items, desc=f"recognize {voice.name}", unit="answer", dynamic_ncols=True)
    misses = []
    for a in items:
        wav = to_float(synthesize(a, voice))
        if codec is not None:
            import torch

            wav = codec.decode(codec.encode(torch.from_numpy(wav)))[0].cpu().numpy()
        heard = judge.recognize(wav)
        if heard != a:
            misses.append({"answer": a, "heard": heard})
    n = len(judge.answers)
    return {"voice": voice.to_dict(), "through_codec": codec is not None, "answers": n, "correct": n - len(misses), "accuracy": (n - len(misses)) / n, "misses": misses}

"""Input transcription: the user's spoken words as text.

A transcriber is anything with a `name` and `transcribe(audio) -> str` (16 kHz
float mono in [-1, 1]). The server runs one in a process of its own
(streaming/transcribe_stage.py), built from a factory named in `TRANSCRIBERS`
("module:function"), so a better one plugs in by name:

- "world-sphinx" (the default): pocketsphinx (its stock US-English acoustic
  model and dictionary, shipped in the wheel) with a trigram language model of
  the default world's spoken questions (omni.synth.questions: every wording of
  both splits, plus the world's typed prompts). Its words are restricted to the
  world's 93 words and biased toward its sentences; speech outside the world
  comes out as the nearest world words.
- "sphinx": the same recognizer with pocketsphinx's stock English language model
  (any English, far less accurate on the world's questions).
- "ctc": the model's own audio-encoder CTC head, decoded greedily over the LLM
  tokenizer's ids. On the shipped default model it is pre-trained on the questions'
  words, then left behind while the encoder learns on through the LLM.
- "model": the model itself, asked to write down what was said (the default
  model's recipe trains this: `omni.synth.questions.TRANSCRIBE_PROMPT`), a
  greedy text-only reply; a second copy of the model in the transcriber's process.

bench/transcribe_wer.py measures their word error rate on the world's held-out
voices (bench/results/transcribe_wer_cpu.json).
"""

from __future__ import annotations

import math
import os
import tempfile
from collections import Counter
from typing import Any, Protocol

import numpy as np

TRANSCRIBERS: dict[str, str] = {
    "world-sphinx": "omni.transcribe:world_sphinx",
    "sphinx": "omni.transcribe:sphinx",
    "ctc": "omni.transcribe:ctc",
    "model": "omni.transcribe:model",
}
SAMPLE_RATE = 16000


class Transcriber(Protocol):
    name: str

    def transcribe(self, audio: np.ndarray) -> str: ...


def world_sentences() -> list[str]:
    """What users of the default world say: every question wording of both splits and the typed prompts."""
    from omni.synth.questions import CAPTION_PROMPT, TRANSCRIBE_PROMPT, all_question_texts

    return list(dict.fromkeys(all_question_texts("train") + all_question_texts("heldout")
                              + [CAPTION_PROMPT, TRANSCRIBE_PROMPT]))


def trigram_arpa(sentences: list[str]) -> str:
    """A trigram language model of `sentences` (ARPA text), Witten-Bell discounting with
    back-off: a seen n-gram keeps c / (c(h) + T(h)) and the rest of the history's mass
    (T(h) / (c(h) + T(h)), T = distinct words seen after it) goes to the lower order."""
    c1, c2, c3 = Counter(), Counter(), Counter()
    for s in sentences:
        w = ["<s>"] + s.split() + ["</s>"]
        c1.update(w[1:])
        c2.update(zip(w, w[1:]))
        c3.update(zip(w, w[1:], w[2:]))
    total = sum(c1.values())
    p1 = {w: c / total for w, c in c1.items()}

    def discount(counts: Counter, order: int) -> tuple[dict, dict]:
        hist_n, hist_t = Counter(), Counter()
        for ngram, c in counts.items():
            hist_n[ngram[:order - 1]] += c
            hist_t[ngram[:order - 1]] += 1
        probs = {g: c / (hist_n[g[:-1]] + hist_t[g[:-1]]) for g, c in counts.items()}
        left = {h: hist_t[h] / (hist_n[h] + hist_t[h]) for h in hist_n}
        return probs, left

    p2, left2 = discount(c2, 2)
    p3, left3 = discount(c3, 3)
    seen2: dict[tuple, float] = Counter()
    for (u, w) in p2:
        seen2[(u,)] += p1[w]
    bo1 = {h: left2[h] / max(1.0 - seen2[h], 1e-9) for h in left2}
    seen3: dict[tuple, float] = Counter()
    for (u, v, w) in p3:
        seen3[(u, v)] += p2[(v, w)]  # every seen trigram's bigram is seen too
    bo2 = {h: left3[h] / max(1.0 - seen3[h], 1e-9) for h in left3}

    def lg(x: float) -> str:
        return f"{math.log10(x):.6f}" if x > 0 else "-99"

    lines = ["\\data\\", f"ngram 1={len(p1) + 1}", f"ngram 2={len(p2)}", f"ngram 3={len(p3)}", "", "\\1-grams:"]
    lines.append(f"-99\t<s>\t{lg(bo1.get(('<s>',), 1.0))}")
    for w in sorted(p1):
        bo = bo1.get((w,))
        lines.append(f"{lg(p1[w])}\t{w}" + (f"\t{lg(bo)}" if bo is not None else ""))
    lines += ["", "\\2-grams:"]
    for (u, w) in sorted(p2):
        bo = bo2.get((u, w))
        lines.append(f"{lg(p2[(u, w)])}\t{u} {w}" + (f"\t{lg(bo)}" if bo is not None else ""))
    lines += ["", "\\3-grams:"]
    lines += [f"{lg(p)}\t{' '.join(g)}" for g, p in sorted(p3.items())]
    lines += ["", "\\end\\", ""]
    return "\n".join(lines)


class SphinxTranscriber:
    """pocketsphinx over whole utterances; `sentences` give it a trigram LM of those texts
    (None: its stock English LM)."""

    def __init__(self, sentences: list[str] | None = None, name: str = "sphinx") -> None:
        import pocketsphinx

        self.name = name
        kwargs: dict[str, Any] = {"loglevel": "FATAL"}
        self._lm_path = None
        if sentences is not None:
            fd, self._lm_path = tempfile.mkstemp(suffix=".arpa", prefix="omni-lm-")
            with os.fdopen(fd, "w") as fh:
                fh.write(trigram_arpa(sentences))
            kwargs["lm"] = self._lm_path
        self.decoder = pocketsphinx.Decoder(**kwargs)
        if self._lm_path is not None:
            os.unlink(self._lm_path)  # loaded: the file is no longer needed
        self._rng = np.random.default_rng(0)

    def transcribe(self, audio: np.ndarray) -> str:
        from omni.synth.recognize import sphinx_decode

        hyp = sphinx_decode(self.decoder, audio, self._rng)
        words = hyp.hypstr.split() if hyp is not None else []
        return " ".join(w.split("(")[0] for w in words if not w.startswith(("<", "[")))


class CtcTranscriber:
    """The audio encoder's CTC head (blank = 0), greedy, over the LLM tokenizer's ids."""

    name = "ctc"

    def __init__(self, encoder, tokenizer) -> None:
        self.encoder, self.tokenizer = encoder.eval(), tokenizer

    def transcribe(self, audio: np.ndarray) -> str:
        import torch

        with torch.no_grad():
            x = torch.as_tensor(np.asarray(audio, dtype=np.float32).reshape(1, -1))
            feats, lens = self.encoder.features(x)
            hidden = self.encoder.encoder(feats.to(self.encoder.dtype), lens)
            best = self.encoder.encoder.ctc_logits(hidden)[0, : int(lens[0])].argmax(-1).tolist()
        ids = [t for i, t in enumerate(best) if t != 0 and (i == 0 or t != best[i - 1])]
        ids = [t for t in ids if t < self.tokenizer.vocab_size]
        return self.tokenizer.decode(ids)


class ModelTranscriber:
    """The model answers "write down what I said" after the audio: greedy, text only."""

    name = "model"

    def __init__(self, model, max_words: int = 48) -> None:
        self.model, self.max_new_tokens = model.eval(), 2 * max_words

    def transcribe(self, audio: np.ndarray) -> str:
        from omni.generation import GenerationOptions, OmniRequest, generate
        from omni.synth.questions import TRANSCRIBE_PROMPT

        req = OmniRequest(audio=np.asarray(audio, dtype=np.float32).reshape(-1), text=TRANSCRIBE_PROMPT)
        opts = GenerationOptions(max_new_tokens=self.max_new_tokens, speech=False, decode_audio=False)
        return generate(self.model, [req], opts)[0].text.strip()


# ---- factories (TRANSCRIBERS) ------------------------------------------------------
def world_sphinx() -> SphinxTranscriber:
    return SphinxTranscriber(world_sentences(), name="world-sphinx")


def sphinx() -> SphinxTranscriber:
    return SphinxTranscriber(None, name="sphinx")


def ctc(model_dir: str | None = None, flavor: str = "mini", seed: int = 0) -> CtcTranscriber:
    """The CTC head of a checkpoint (`model_dir`), else of a randomly initialized `flavor`."""
    import torch

    from encoders.audio import StreamingAudioEncoder
    from omni.tokenizer import load_tokenizer

    if model_dir:
        from omni.model import OmniModel

        model = OmniModel.from_pretrained(model_dir, device="cpu")
        return CtcTranscriber(model.audio_encoder, model.tokenizer)
    from omni.config import get_omni_config

    torch.manual_seed(seed)
    return CtcTranscriber(StreamingAudioEncoder(get_omni_config(flavor).audio), load_tokenizer())


def model(model_dir: str | None = None, flavor: str = "mini", seed: int = 0) -> ModelTranscriber:
    """A checkpoint (`model_dir`) asked to transcribe, else a randomly initialized `flavor`."""
    import torch

    from omni.model import OmniModel

    if model_dir:
        return ModelTranscriber(OmniModel.from_pretrained(model_dir, device="cpu"))
    from omni.config import get_omni_config

    torch.manual_seed(seed)
    return ModelTranscriber(OmniModel(get_omni_config(flavor)))

"""Text tokenizer of the omni model: special tokens, loading, incremental detokenization.

Any local Hugging Face tokenizer directory works (loaded with `AutoTokenizer`,
`local_files_only=True`; nothing is ever downloaded). The multimodal special
strings (`<|audio_pad|>`, `<|image_pad|>`, `</pause>`, ...) are not new vocabulary
entries: as in the original release, each string is textually replaced by a
reserved `<mask_N>` token (N = 110 + index) before tokenization, so the ids come
from the tokenizer itself. A tokenizer that lacks `<mask_N>` but has the literal
string as a token is accepted too.

The default model ships a small byte-level BPE tokenizer of its own in
`omni/assets/tokenizer/` (512 tokens, built by `build_default_tokenizer` from
`omni/assets/tokenizer_corpus.txt`, the synthetic world's training text written
by `omni data corpus`); its vocabulary fits the `debug` backbone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

ASSETS = Path(__file__).resolve().parent / "assets"
DEFAULT_TOKENIZER_DIR = ASSETS / "tokenizer"
DEFAULT_CORPUS = ASSETS / "tokenizer_corpus.txt"

# Order matters: string i is carried by the reserved token <mask_{110 + i}>.
SPECIAL_STRINGS: tuple[str, ...] = (
    "<|audio|>",
    "<|/audio|>",
    "<|audio_pad|>",
    "</pause>",
    "<begin-of-system>",
    "<begin-of-user>",
    "<begin-of-assistant>",
    "<begin-of-voice-assistant>",
    "<|image_pad|>",
    "<image>",
)
MASK_BASE = 110
BOS_TOKEN = "<longcat_s>"
EOS_TOKEN = "</longcat_s>"
PAD_TOKEN = "<longcat_pad>"
UNK_TOKEN = "<unk>"


def mask_token(special: str) -> str:
    return f"<mask_{MASK_BASE + SPECIAL_STRINGS.index(special)}>"


@dataclass(frozen=True)
class SpecialIds:
    """Ids of every token the sequence format and the generator need."""

    bos: int
    eos: int
    pad: int  # text pad: its embedding is zeroed in prompt rows
    audio_start: int
    audio_end: int
    audio_pad: int
    image_pad: int
    pause: int

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class OmniTokenizer:
    """Wraps a Hugging Face tokenizer with the omni special-string substitution."""

    def __init__(self, hf_tokenizer, source: str = "") -> None:
        self.hf = hf_tokenizer
        self.source = source
        vocab = hf_tokenizer.get_vocab()
        self._special_token: dict[str, str] = {}
        for s in SPECIAL_STRINGS:
            m = mask_token(s)
            if m in vocab:
                self._special_token[s] = m
            elif s in vocab:
                self._special_token[s] = s
            else:
                raise ValueError(
                    f"tokenizer {source or '?'} has neither {m!r} nor {s!r} in its vocabulary; "
                    "the omni format needs one of them for every special string"
                )
        ids = {}
        for name, tok in (("bos", BOS_TOKEN), ("eos", EOS_TOKEN), ("pad", PAD_TOKEN)):
            if tok not in vocab:
                raise ValueError(f"tokenizer {source or '?'} lacks the {name} token {tok!r}")
            ids[name] = vocab[tok]
        self.special = SpecialIds(
            bos=ids["bos"],
            eos=ids["eos"],
            pad=ids["pad"],
            audio_start=vocab[self._special_token["<|audio|>"]],
            audio_end=vocab[self._special_token["<|/audio|>"]],
            audio_pad=vocab[self._special_token["<|audio_pad|>"]],
            image_pad=vocab[self._special_token["<|image_pad|>"]],
            pause=vocab[self._special_token["</pause>"]],
        )
        self.vocab_size = len(vocab)
        self._hidden_ids = {ids["bos"], ids["eos"], ids["pad"]} | {
            vocab[t] for t in self._special_token.values()
        }

    # ------------------------------------------------------------------ encode
    def encode(self, text: str) -> list[int]:
        """Token ids of `text` (special strings substituted, no BOS/EOS added)."""
        for s, tok in self._special_token.items():
            if s != tok:
                text = text.replace(s, tok)
        return list(self.hf.encode(text, add_special_tokens=False))

    # ------------------------------------------------------------------ decode
    def decode(self, ids: Iterable[int]) -> str:
        """Readable text: drops ids <= 0 and format tokens, `</pause>` becomes a space."""
        out: list[int] = []
        pieces: list[str] = []
        for i in ids:
            i = int(i)
            if i == self.special.pause:
                pieces.append(self.hf.decode(out))
                out = []
                pieces.append(" ")
                continue
            if i < 0 or i in self._hidden_ids:
                continue
            out.append(i)
        pieces.append(self.hf.decode(out))
        return " ".join("".join(pieces).split()) if pieces else ""

    def incremental(self) -> "IncrementalDetokenizer":
        return IncrementalDetokenizer(self)

    def save_pretrained(self, path: str | os.PathLike) -> None:
        self.hf.save_pretrained(str(path))


class IncrementalDetokenizer:
    """Turns a stream of token ids into text deltas.

    Byte-level tokens may split a UTF-8 character; a delta is withheld while the
    decoded tail ends in the replacement character (the HF streamer's rule).
    """

    def __init__(self, tok: OmniTokenizer) -> None:
        self.tok = tok
        self.ids: list[int] = []
        self.emitted = ""

    def push(self, token_id: int) -> str:
        self.ids.append(int(token_id))
        text = self.tok.decode(self.ids)
        if text.endswith("\ufffd"):
            return ""
        # Whitespace is normalized at the end of the text, so a space appears
        # only once the word after it arrives; never re-emit changed text.
        if not text.startswith(self.emitted):
            return ""
        delta = text[len(self.emitted) :]
        self.emitted = text
        return delta


def load_tokenizer(path: str | os.PathLike | None = None) -> OmniTokenizer:
    """Load a local tokenizer directory (default: the shipped small tokenizer)."""
    from transformers import AutoTokenizer

    path = Path(path) if path is not None else DEFAULT_TOKENIZER_DIR
    if not path.is_dir():
        raise FileNotFoundError(f"tokenizer directory {path} does not exist")
    if not any((path / f).exists() for f in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")):
        raise FileNotFoundError(
            f"{path} holds no tokenizer (expected tokenizer.json or tokenizer_config.json)"
        )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    hf = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    return OmniTokenizer(hf, source=str(path))


def build_default_tokenizer(
    corpus: Sequence[str] | str | os.PathLike = DEFAULT_CORPUS,
    out_dir: str | os.PathLike = DEFAULT_TOKENIZER_DIR,
    vocab_size: int = 512,
) -> OmniTokenizer:
    """Train the small byte-level BPE tokenizer and save it in HF format.

    Ids 0-3 are `<unk>`, BOS, EOS and the text pad (3, as in the original), then
    the reserved `<mask_110>`..`<mask_119>`; byte-level BPE means any text encodes.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if isinstance(corpus, (str, os.PathLike)) and Path(corpus).exists():
        lines = Path(corpus).read_text().splitlines()
    elif isinstance(corpus, (str, os.PathLike)):
        raise FileNotFoundError(f"tokenizer corpus {corpus} does not exist")
    else:
        lines = list(corpus)
    specials = [UNK_TOKEN, BOS_TOKEN, EOS_TOKEN, PAD_TOKEN] + [mask_token(s) for s in SPECIAL_STRINGS]
    tok = Tokenizer(models.BPE(unk_token=UNK_TOKEN))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(lines, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token=UNK_TOKEN,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        additional_special_tokens=[mask_token(s) for s in SPECIAL_STRINGS],
    )
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(out_dir))
    return load_tokenizer(out_dir)

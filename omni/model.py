"""OmniModel: encoders -> projectors -> LongCat-Flash backbone -> text head + four audio heads.

    model = OmniModel(get_omni_config("debug"))             # random weights, shipped tokenizer
    tokens = model.prepare(OmniRequest(text="hi", audio=pcm))
    logits, hidden = model.prefill(cache, [0], [tokens])     # last position of each row
    reply = generate(model, [request])[0]                    # see omni.generation

Submodules (and checkpoint prefixes): `llm` (LongCat-Flash, transformers key
names), `vision` (LongCat-ViT `vit` + `projector`), `audio_encoder` (fbank
front end, DFSMN `encoder`, `projector`), `audio_embedding`
(`audio_embeddings.{0..3}`), `audio_head` (`audio_output_layers.{0..3}`,
`embedding.{0..2}`), `codec` (the speech codec; saved in its own folder).
"""

from __future__ import annotations

import contextlib
from typing import Sequence

import numpy as np
import torch
from torch import nn

from encoders.audio import StreamingAudioEncoder
from encoders.image_processing import preprocess_video
from encoders.vision import VisionEncoder
from encoders.vision_projector import cap_tokens, token_grid
from omni.config import OmniConfig
from omni.embedding import AudioEmbedding, embed_rows, replace_features
from omni.heads import AudioHead
from omni.llm import LongcatFlashForCausalLM, MLACache
from omni.sequence import ChatFormat, Tokens
from omni.sequence_av import build_av_user_turn
from omni.tokenizer import OmniTokenizer, load_tokenizer


def default_codec(cfg: OmniConfig):
    """The shipped codec when its configuration matches `cfg.codec`, else a fresh
    (untrained) one of the configured size: the audio heads' vocabulary follows
    the codec's codebooks, so the two must agree."""
    import os

    from speech import DEFAULT_DIR, Codec

    if os.path.isfile(os.path.join(DEFAULT_DIR, "model.safetensors")):
        codec = Codec.from_pretrained(DEFAULT_DIR)
        if codec.cfg == cfg.codec:
            return codec
    from speech import CodecModel

    return Codec(CodecModel(cfg.codec))


class OmniModel(nn.Module):
    def __init__(
        self,
        cfg: OmniConfig,
        tokenizer: OmniTokenizer | None = None,
        codec=None,  # speech.Codec
        init: bool = True,
    ) -> None:
        super().__init__()
        hidden = cfg.llm.hidden_size
        for name, sub in (("vision", cfg.vision), ("audio", cfg.audio)):
            if sub.out_dim != hidden:
                raise ValueError(f"OmniConfig.{name}.out_dim={sub.out_dim} must equal llm.hidden_size={hidden}")
        if cfg.audio_vocab_size <= cfg.audio_id_offset:
            raise ValueError("OmniConfig: the audio vocabulary must exceed audio_id_offset")
        self.config = cfg
        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer()
        if self.tokenizer.vocab_size > cfg.llm.vocab_size:
            raise ValueError(
                f"tokenizer {self.tokenizer.source} has {self.tokenizer.vocab_size} tokens but "
                f"llm.vocab_size is {cfg.llm.vocab_size}"
            )
        self.fmt = ChatFormat(self.tokenizer, cfg.audio_pad_id, cfg.template)
        self.llm = LongcatFlashForCausalLM(cfg.llm, init=init)
        self.vision = VisionEncoder(cfg.vision)
        self.audio_encoder = StreamingAudioEncoder(cfg.audio)
        self.audio_embedding = AudioEmbedding(cfg.num_audio_heads, cfg.audio_vocab_size, hidden, cfg.audio_pad_id)
        self.audio_head = AudioHead(cfg)
        if init:
            std = cfg.llm.initializer_range
            for mod in (self.audio_embedding, self.audio_head):
                for p in mod.parameters():
                    nn.init.normal_(p, 0.0, std)
        # the codec (speech.Codec) is not a submodule: it has its own checkpoint folder.
        # Without one given, the default is loaded on first use (training never uses it).
        self._codec = None
        if codec is not None:
            self.codec = codec
        self._ready_cache: dict[int, int] = {}
        self.decode_mode = "eager"  # "eager" | "static" | "graph": see set_decode_mode
        self._runners: dict[tuple[int, int], object] = {}
        self.compiled = False  # the decoder layers compiled for the decode step (compile_decode)

    # ------------------------------------------------------------- properties
    @property
    def device(self) -> torch.device:
        return self.llm.device

    @property
    def dtype(self) -> torch.dtype:
        return self.llm.dtype

    @property
    def codec(self):
        """The speech codec (speech.Codec), loaded on first use when none was given."""
        if self._codec is None:
            self.codec = default_codec(self.config).to(self.device)
        return self._codec

    @codec.setter
    def codec(self, codec) -> None:
        if codec.cfg != self.config.codec:
            raise ValueError("the codec's configuration differs from OmniConfig.codec")
        self._codec = codec

    @property
    def codec_decoder(self):
        """The codec's streaming decoder (inference-prepared, on the codec's device)."""
        return self.codec.streaming_decoder()

    def to(self, *args, **kwargs) -> "OmniModel":
        super().to(*args, **kwargs)
        device = torch._C._nn._parse_to(*args, **kwargs)[0]
        if device is not None and self._codec is not None:  # a codec loaded later follows the model
            self._codec.to(device)
        return self

    @property
    def output_sample_rate(self) -> int:
        return int(self.config.codec.sample_rate)

    def new_cache(self, max_slots: int, capacity: int) -> MLACache:
        return self.llm.new_cache(max_slots, capacity)

    def to_dtype(self, dtype: torch.dtype) -> "OmniModel":
        """Cast for inference (the backbone keeps its router in fp32; the
        audio front end keeps fp32 buffers)."""
        self.llm.to_dtype(dtype)
        for mod in (self.vision, self.audio_encoder.encoder, self.audio_encoder.projector, self.audio_embedding, self.audio_head):
            mod.to(dtype)
        return self

    # ------------------------------------------------------------- encoding
    def frames_ready(self, num_samples: int) -> int:
        """Audio frames the streaming encoder has released after `num_samples` samples."""
        enc = self.audio_encoder
        total = enc.num_frames(num_samples)
        j = self._ready_cache.get(num_samples)
        if j is not None:
            return j
        j = 0
        while j < total and enc.samples_needed(j) <= num_samples:
            j += 1
        self._ready_cache[num_samples] = j
        return j

    @torch.no_grad()
    def encode_audio(self, wavs: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """Whole clips (16 kHz float32) -> one [frames_i, hidden] tensor each, batched."""
        if not wavs:
            return []
        n = [int(len(w)) for w in wavs]
        batch = np.zeros((len(wavs), max(n)), dtype=np.float32)
        for i, w in enumerate(wavs):
            batch[i, : n[i]] = w
        emb, lens = self.audio_encoder(torch.from_numpy(batch), torch.tensor(n))
        return [emb[i, : int(lens[i])] for i in range(len(wavs))]

    @torch.no_grad()
    def encode_visual(self, items: Sequence) -> list[torch.Tensor]:
        """Images / frame-pair units -> one [tokens_i, hidden] tensor each (one packed pass)."""
        return self.vision.encode(list(items)) if items else []

    # ------------------------------------------------------------- sequences
    def prepare(self, request, voice: bool = True) -> Tokens:
        """An `OmniRequest` -> the prompt `Tokens`, up to and including the generation prompt."""
        return self.prepare_many([request], voice)[0]

    @torch.no_grad()
    def prepare_many(self, requests: Sequence, voice: bool = True) -> list[Tokens]:
        """Prompts of several requests, encoding all their media in batched passes."""
        cfg = self.config
        streams = [r.audio_stream() for r in requests]
        has_audio = [s is not None and len(s) > 0 for s in streams]
        audio_feats = iter(self.encode_audio([s for s, h in zip(streams, has_audio) if h]))
        units, owners = [], []
        for i, r in enumerate(requests):
            if r.images:
                for u in self.vision.prepare(list(r.images)):
                    units.append(u)
                    owners.append((i, "image", None))
            if r.video:
                pairs = preprocess_video(list(r.video), cfg.vision)
                times = list(r.video_times)[::2]
                for u, t in zip(pairs, times):
                    units.append(u)
                    owners.append((i, "video", float(t)))
        feats = self.encode_visual(units)
        # the visual token budget holds per request, over all its images and frames
        for i in range(len(requests)):
            idx = [k for k, o in enumerate(owners) if o[0] == i]
            if idx:
                capped, _ = cap_tokens([feats[k] for k in idx], [token_grid(units[k].grid) for k in idx], cfg.vision.max_video_tokens)
                for k, f in zip(idx, capped):
                    feats[k] = f
        per_image: list[list[torch.Tensor]] = [[] for _ in requests]
        per_video: list[list[tuple[float, torch.Tensor]]] = [[] for _ in requests]
        for (i, kind, t), f in zip(owners, feats):
            (per_image[i].append(f) if kind == "image" else per_video[i].append((t, f)))
        out = []
        for i, r in enumerate(requests):
            runs = []
            if r.system:
                runs.append(self.fmt.system_turn(r.system))
            runs.append(self.fmt.user_header(0))  # one request: round 0 (numbered only by templates with rounds)
            runs += [self.fmt.image_item(f) for f in per_image[i]]
            think = getattr(r, "think", None)
            if has_audio[i] or per_video[i]:
                a = next(audio_feats) if has_audio[i] else None
                n = len(streams[i]) if has_audio[i] else 0
                turn = build_av_user_turn(
                    self.fmt, a, n, per_video[i], frames_ready=self.frames_ready,
                    sample_rate=cfg.audio.sample_rate, chunk_seconds=cfg.chunk_seconds, text=r.text, header=False,
                    think=think,
                )
                runs.append(turn)
            else:
                if r.text:
                    runs.append(self.fmt.text(r.text))
                runs += [self.fmt.think_switch(think), self.fmt.newline()]
            runs.append(self.fmt.generation_prompt(voice))
            out.append(Tokens.cat(runs, cfg.audio_pad_id))
        return out

    def embed(self, ids: torch.Tensor, codec: torch.Tensor, audio=(), image=()) -> torch.Tensor:
        """ids [..., L], codec [..., L, 4] + features -> input embeddings [..., L, hidden]."""
        sp = self.tokenizer.special
        ids, codec = ids.to(self.device), codec.to(self.device)
        e = embed_rows(self.llm.model.embed_tokens, self.audio_embedding, ids, codec, sp.pad)
        e = replace_features(e, ids, sp.audio_pad, [a.to(e.device) for a in audio], "<|audio_pad|>")
        return replace_features(e, ids, sp.image_pad, [i.to(e.device) for i in image], "<|image_pad|>")

    def embed_tokens(self, tokens: Tokens) -> torch.Tensor:
        return self.embed(tokens.ids, tokens.codec, tokens.audio, tokens.image)

    # ------------------------------------------------------------- backbone calls
    def compile_decode(self) -> None:
        """Compile the backbone's decoder layers (torch.compile, one layer body, the batch
        dimension dynamic) for the decode step; with decode mode "graph" each batch size's
        step is then captured from the compiled layers. Prefills and the eager step run the
        layers uncompiled: their shapes change every call. Irreversible for this model."""
        from omni.llm.runner import compile_layers

        if not self.compiled:
            compile_layers(self.llm, dynamic=True)
            self._runners.clear()
            self.compiled = True

    def _uncompiled(self):
        """The context that runs compiled layers eagerly (see compile_decode)."""
        return torch.compiler.set_stance("force_eager") if self.compiled else contextlib.nullcontext()

    @torch.no_grad()
    def prefill(self, cache: MLACache, slots: Sequence[int], runs: Sequence[Tokens]) -> tuple[torch.Tensor, torch.Tensor]:
        """Write each run into its cache slot in one right-padded forward.

        Returns the text logits [B, V] and hidden state [B, H] at each row's
        last position (rows with an empty run return zeros).
        """
        lens = [len(r) for r in runs]
        width = max(max(lens), 1)
        embeds = torch.zeros(len(runs), width, self.config.llm.hidden_size, dtype=self.dtype, device=self.device)
        for i, r in enumerate(runs):
            if lens[i]:
                embeds[i, : lens[i]] = self.embed_tokens(r).to(self.dtype)
        with self._uncompiled():
            out = self.llm(inputs_embeds=embeds, cache=cache, slots=list(slots), lengths=lens, logits="none")
        last = torch.tensor([max(n - 1, 0) for n in lens], device=self.device)
        hidden = out.hidden_states[torch.arange(len(runs), device=self.device), last]
        return self.llm.lm_head(hidden).float(), hidden

    def set_decode_mode(self, mode: str) -> None:
        """How `step` runs the backbone: "eager" (the general forward), "static"
        (the backbone's static-shape decode step) or "graph" (that step captured
        once per batch size and cache in a CUDA graph, then replayed: for long-lived
        caches such as RealtimeOmni's; CUDA only)."""
        if mode not in ("eager", "static", "graph"):
            raise ValueError(f"decode mode must be 'eager', 'static' or 'graph', got {mode!r}")
        if mode == "graph" and self.device.type != "cuda":
            raise ValueError("decode mode 'graph' needs the model on a CUDA device")
        self.decode_mode = mode
        self._runners.clear()

    @torch.no_grad()
    def step(self, cache: MLACache, slots: Sequence[int], text_ids: torch.Tensor, codec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One decoding step: rows (text id [B], codec row [B, 4]) -> logits [B, V], hidden [B, H]."""
        # generated rows carry no features: a sampled placeholder id stays a plain token
        sp = self.tokenizer.special
        ids, codec = text_ids[:, None].to(self.device), codec[:, None].to(self.device)
        e = embed_rows(self.llm.model.embed_tokens, self.audio_embedding, ids, codec, sp.pad).to(self.dtype)
        if self.decode_mode == "eager":
            with self._uncompiled():
                out = self.llm(inputs_embeds=e, cache=cache, slots=list(slots), logits="none")
            hidden = out.hidden_states[:, 0]
            return self.llm.lm_head(hidden).float(), hidden
        from omni.llm.runner import DecodeRunner

        key = (id(cache), len(slots))
        runner = self._runners.get(key)
        if runner is None or runner.cache is not cache:
            # runners of other caches go: a new cache (one per generate call) replaces them
            self._runners = {k: r for k, r in self._runners.items() if r.cache is cache}
            runner = DecodeRunner(self.llm, cache, len(slots), use_graph=self.decode_mode == "graph", embeds=True)
            self._runners[key] = runner
        logits, hidden = runner.step(list(slots), inputs_embeds=e[:, 0])
        # graph outputs are reused by the next replay: hand out copies (fp32 logits too)
        return logits.to(torch.float32, copy=True), hidden.clone()

    # ------------------------------------------------------------- training
    def forward(
        self,
        ids: torch.Tensor,
        codec: torch.Tensor,
        audio: Sequence[torch.Tensor] = (),
        image: Sequence[torch.Tensor] = (),
        target_codec: torch.Tensor | None = None,
        lengths: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Teacher-forced pass over [B, L]: returns (text logits [B, L, V],
        hidden [B, L, H], audio logits [B, L, 4, Va] if `target_codec` [B, L, 4]
        (the next row's codes each position predicts) is given)."""
        e = self.embed(ids, codec, audio, image).to(self.dtype)
        out = self.llm(inputs_embeds=e, lengths=lengths)
        audio_logits = None if target_codec is None else self.audio_head(out.hidden_states, target_codec.to(self.device))
        return out.logits, out.hidden_states, audio_logits

    # ------------------------------------------------------------- checkpoints
    @classmethod
    def from_pretrained(cls, path, device="cpu", dtype: torch.dtype | None = None) -> "OmniModel":
        """Load a directory written by `save_pretrained` (or `omni convert`)."""
        from omni.checkpoint import from_pretrained

        return from_pretrained(cls, path, device=device, dtype=dtype)

    def save_pretrained(self, path, dtype: torch.dtype | None = None) -> None:
        """config.json + model.safetensors + tokenizer/ + codec/."""
        from omni.checkpoint import save_pretrained

        save_pretrained(self, path, dtype=dtype)

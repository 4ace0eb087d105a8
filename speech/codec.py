"""`Codec`: the one object other packages use for speech tokens.

    codec = Codec.from_pretrained()              # the shipped default codec
    codes = codec.encode(wav)                    # [B, N] float -> [B, 4, T] int64, no offset
    wav = codec.decode(codes)                    # [B, 4, T] -> [B, T * hop] float32
    dec = codec.streaming_decoder()              # CodecDecoder, frame by frame:
    state = dec.init_state(batch)
    piece = dec.step(codes[:, :, t], state)      # audio of frame t - 3 ([B, 0] for t < 3)
    tail = dec.flush(state)                      # the last 3 frames

A pretrained directory holds `config.json` (the CodecConfig fields) and
`model.safetensors` (the full CodecModel state dict, weight-normalized as in
training, so the decoder half keeps the official key layout).
"""

from __future__ import annotations

import json
import os

import torch

from omni.config import CodecConfig, from_dict, get_flavor, to_dict
from speech.decoder import CodecDecoder
from speech.model import CodecModel

DEFAULT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pretrained", "default")
FORMAT = "omni-speech-codec/1"


class Codec:
    def __init__(self, model: CodecModel, device: str | torch.device = "cpu") -> None:
        self.model = model.to(device).eval()
        self.cfg: CodecConfig = model.cfg
        self._stream_decoder: CodecDecoder | None = None

    # --- construction ------------------------------------------------------
    @classmethod
    def from_flavor(cls, name: str, device: str | torch.device = "cpu", seed: int | None = 0) -> "Codec":
        """A randomly initialized codec of a config flavor (tests, training start)."""
        if seed is not None:
            torch.manual_seed(seed)
        return cls(CodecModel(get_flavor("codec", name)), device)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> "Codec":
        """Load `path` (default: the codec shipped in speech/pretrained/default)."""
        from safetensors.torch import load_file

        path = os.fspath(path) if path is not None else DEFAULT_DIR
        cfg_path, w_path = os.path.join(path, "config.json"), os.path.join(path, "model.safetensors")
        for p in (cfg_path, w_path):
            if not os.path.isfile(p):
                raise FileNotFoundError(f"{p}: missing (a codec directory holds config.json and model.safetensors)")
        with open(cfg_path) as fh:
            meta = json.load(fh)
        if meta.get("format") != FORMAT:
            raise ValueError(f"{cfg_path}: field 'format' is {meta.get('format')!r}, expected {FORMAT!r}")
        try:
            cfg = from_dict(CodecConfig, meta["codec"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{cfg_path}: field 'codec' is not a valid CodecConfig ({e})") from None
        model = CodecModel(cfg)
        state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(w_path).items()}
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise ValueError(f"{w_path}: weights do not match {cfg_path}: {e}") from None
        return cls(model, device)

    def save_pretrained(self, path: str | os.PathLike, dtype: torch.dtype = torch.float32, extra: dict | None = None) -> None:
        """Write config.json + model.safetensors (`dtype` float16 halves the size)."""
        from safetensors.torch import save_file

        path = os.fspath(path)
        os.makedirs(path, exist_ok=True)
        self.model.sync_semantic_table()
        state = {
            k: v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype).contiguous()
            for k, v in self.model.state_dict().items()
        }
        save_file(state, os.path.join(path, "model.safetensors"))
        meta = {"format": FORMAT, "codec": to_dict(self.cfg), **(extra or {})}
        with open(os.path.join(path, "config.json"), "w") as fh:
            json.dump(meta, fh, indent=2)

    # --- properties --------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        return self.cfg.sample_rate

    @property
    def hop_length(self) -> int:
        return self.cfg.hop_length

    @property
    def frame_rate(self) -> float:
        return self.cfg.frame_rate

    @property
    def num_codebooks(self) -> int:
        return self.cfg.num_codebooks

    @property
    def codebook_sizes(self) -> list[int]:
        return [self.cfg.semantic_codebook_size] + [self.cfg.acoustic_codebook_size] * self.cfg.acoustic_codebooks

    @property
    def lookahead_frames(self) -> int:
        return self.cfg.lookahead_frames

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # --- encode / decode ---------------------------------------------------
    @torch.no_grad()
    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        """wav [B, N] or [N] float at `sample_rate` -> codes [B, 4, ceil(N / hop)] int64."""
        if not isinstance(wav, torch.Tensor):
            wav = torch.as_tensor(wav)
        if not wav.is_floating_point():
            raise TypeError(f"encode: expected float audio in [-1, 1], got dtype {wav.dtype}")
        if wav.dim() == 1:
            wav = wav[None]
        if wav.dim() != 2:
            raise ValueError(f"encode: expected audio [B, N] or [N], got shape {tuple(wav.shape)}")
        if not torch.isfinite(wav).all():
            raise ValueError("encode: audio contains NaN or infinite samples")
        return self.model.encode(wav.float().to(self.device))

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, 4, T] or [4, T] (values without offset) -> wav [B, T * hop] float32."""
        codes = torch.as_tensor(codes)
        if codes.dim() == 2:
            codes = codes[None]
        dec = self.streaming_decoder()
        dec.check_codes(codes)
        return dec(codes.long().to(self.device)).float()

    def streaming_decoder(self) -> CodecDecoder:
        """The decoder prepared for inference (weight norm folded; a frozen snapshot)."""
        if self._stream_decoder is None:
            # a fresh copy (old-style weight norm modules cannot be deep-copied)
            dec = CodecDecoder(self.cfg)
            dec.load_state_dict(self.model.decoder.state_dict())
            self._stream_decoder = dec.to(self.device).prepare_inference()
        return self._stream_decoder

    def to(self, device: str | torch.device) -> "Codec":
        self.model.to(device)
        if self._stream_decoder is not None:
            self._stream_decoder = None  # re-prepared on the new device
        return self

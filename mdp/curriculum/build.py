"""A step's batch built on the device from its host plan (`mdp.curriculum.plan`).

Three pieces, each a handful of batched tensor ops whatever the batch size, and
none reads a device value back to the host:

    expand_segments   token rows: ids, codec rows, labels, first-audio flags and,
                      for every placeholder position, the row of the encoder-output
                      table that fills it (searchsorted over each row's segment ends,
                      then gathers from the pack tables' pools)
    build_audio       the microphone: each clean clip resampled (speed), shifted
                      by its leading silence, plus white / pink / brown / hum /
                      babble noise at its SNR, gain, peak limit (`omni.synth.audio`'s
                      recipe, on [rows, samples] at once)
    build_patches     the ViT's patch rows of every distinct still / frame pair,
                      normalized and patchified from the pack's uint8 frames

With augmentation off the audio is the clip itself and every output equals the
loader path's (`tests/default_model/test_omni_mini_device.py`).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from mdp.data import CAT_AUDIO_ONLY, CAT_AUDIO_TEXT, CAT_TEXT, IGNORE
from mdp.curriculum.plan import StepPlan
from mdp.curriculum.tables import PackTables
from omni.synth.audio import NOISE_KINDS

_INT_AUDIO = ("clip_start", "clip_len", "n_speech", "lead", "ns", "kind")
_FLOAT_AUDIO = ("speed", "gain_db", "snr_db", "hum_hz")


class DevicePlan(dict):
    """The plan's arrays on the device (one host-to-device copy per dtype) + its sizes."""

    plan: StepPlan


def to_device(t: PackTables, plan: StepPlan, device: torch.device) -> DevicePlan:
    """Every array the builder reads, in two flat buffers (int64, float32) copied
    without blocking from pinned memory on CUDA."""
    r, ar = plan.rows, plan.audio_rows
    clip = r.clip[ar]
    bab = r.draws["babble"][ar]
    bab_len = t.clip_len[bab]
    ints = {
        "seg": plan.seg, "units": plan.unit_frames,
        "clip_start": t.clip_offset[clip], "clip_len": t.clip_len[clip], "n_speech": r.n_speech[ar],
        "lead": r.draws["lead"][ar], "ns": r.ns[ar], "kind": r.draws["kind"][ar],
        "babble_start": t.clip_offset[bab], "babble_len": bab_len, "babble_at": r.draws["babble_at"][ar] % bab_len,
    }
    kind = r.draws["kind"][ar]
    for k in range(1, len(NOISE_KINDS)):  # the audio rows of each noise kind present
        rows_k = np.flatnonzero(kind == k)
        if len(rows_k):
            ints[f"rows_{NOISE_KINDS[k]}"] = rows_k
    floats = {"speed": r.draws["speed"][ar], "gain_db": r.draws["gain_db"][ar], "snr_db": r.draws["snr_db"][ar],
              "hum_hz": r.draws["hum_hz"][ar], "hum_phase": r.draws["hum_phase"][ar]}
    out = DevicePlan()
    for arrays, dtype in ((ints, np.int64), (floats, np.float32)):
        flat = np.concatenate([np.asarray(v, dtype).reshape(-1) for v in arrays.values()])
        host = torch.from_numpy(flat)
        if device.type == "cuda":
            host = host.pin_memory()
        dev = host.to(device, non_blocking=True)
        pos = 0
        for name, v in arrays.items():
            shape = np.shape(v)
            size = int(np.prod(shape))
            out[name] = dev[pos : pos + size].view(shape)
            pos += size
    out.plan = plan
    return out


def expand_segments(t: PackTables, seg: torch.Tensor, T: int) -> dict[str, torch.Tensor]:
    """seg [B, S, 8] (len, id start, id stride, row start, row stride, category,
    answer flag, feature row) -> the loader path's batch tensors over T input
    positions, plus `feat` [B, T]: the row of the feature table (0 = none) each
    input position takes its embedding from."""
    b, s, _ = seg.shape
    length, id0, ids_k, row0, row_k, cat, answer_flag, feat0 = seg.unbind(-1)
    ends = length.cumsum(1)
    pos = torch.arange(T + 1, device=seg.device).expand(b, T + 1).contiguous()
    which = torch.searchsorted(ends, pos, right=True)  # segment of each position (s: past the row's end)
    live = which < s
    which = which.clamp(max=s - 1)
    pick = lambda f: f.gather(1, which)
    off = pos - pick(ends - length)
    ids = torch.where(live, t.id_pool[torch.where(live, pick(id0) + pick(ids_k) * off, 0)], t.sp.pad)
    rows = t.row_pool[torch.where(live, pick(row0) + pick(row_k) * off, 0)]  # [B, T+1, 4]
    category = torch.where(live, pick(cat), 0)
    answer = live & (pick(answer_flag) > 0)
    feat_start = pick(feat0)
    feat = torch.where(live & (feat_start > 0), feat_start + off, 0)
    cat = category[:, 1:]
    audio_labels = torch.where(((cat == CAT_AUDIO_TEXT) | (cat == CAT_AUDIO_ONLY))[..., None], rows[:, 1:], IGNORE)
    # the first-audio label of a spoken reply is its first frame: the first label with a code
    # (not a pad: a reply's delay rows, `OmniConfig.text_audio_delay`, are pads) after none
    coded = (audio_labels[..., 0] != IGNORE) & (audio_labels[..., 0] != t.cfg.audio_pad_id)
    first_audio = coded & ~torch.nn.functional.pad(coded[:, :-1], (1, 0))
    return {
        "ids": ids[:, :-1], "codec": rows[:, :-1],
        "text_labels": torch.where((cat == CAT_TEXT) | (cat == CAT_AUDIO_TEXT), ids[:, 1:], IGNORE),
        "text_cat": cat,
        "audio_labels": audio_labels,
        "first_audio": first_audio,
        "answer": answer[:, 1:],
        "feat": feat[:, :-1],
    }


def _clip_samples(t: PackTables, start: torch.Tensor, length: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Decoded samples of clips (start, length [Ba]) at integer positions pos [Ba, n] (clamped)."""
    idx = start[:, None] + pos.clamp(min=0).minimum(length[:, None] - 1)
    return t.mulaw[t.clips[idx].long()]


def build_audio(t: PackTables, p: DevicePlan, augment: bool, gen: torch.Generator | None) -> torch.Tensor:
    """pcm [Ba, W] of the plan's audio rows (zeros past each row's length)."""
    W = p.plan.W
    dev = p["ns"].device
    n = torch.arange(W, device=dev)[None]
    u = n - p["lead"][:, None]  # position in the speech
    speech = (u >= 0) & (u < p["n_speech"][:, None])
    valid = n < p["ns"][:, None]
    if not augment:
        return torch.where(speech, _clip_samples(t, p["clip_start"], p["clip_len"], u), 0.0)
    # speed: linear interpolation at u * speed (`omni.synth.audio.change_speed`)
    x = u.float() * p["speed"][:, None]
    i0 = x.floor()
    frac = x - i0
    i0 = i0.long()
    a0 = _clip_samples(t, p["clip_start"], p["clip_len"], i0)
    a1 = _clip_samples(t, p["clip_start"], p["clip_len"], i0 + 1)
    x = torch.where(speech, a0 + (a1 - a0) * frac, 0.0)
    noise = _noise(t, p, n, valid, gen)
    # mix at the SNR over the voiced part (`mix_at_snr`), gain, peak limit (`augment`)
    voiced = (x.abs() > 1e-3) & valid
    p_speech = (x.square() * voiced).sum(1) / voiced.sum(1).clamp(min=1)
    p_noise = (noise.square() * valid).sum(1) / p["ns"].clamp(min=1)
    ratio = p_speech / (p_noise * torch.pow(10.0, p["snr_db"] / 10)).clamp(min=1e-30)
    scale = torch.where((p_speech > 0) & (p_noise > 0), ratio.sqrt(), 0.0)
    x = (x + scale[:, None] * noise) * torch.pow(10.0, p["gain_db"] / 20)[:, None]
    peak = (x.abs() * valid).amax(1)
    x = x * torch.where(peak > 0.98, 0.98 / peak.clamp(min=1e-30), 1.0)[:, None]
    return x * valid


def _noise(t: PackTables, p: DevicePlan, n: torch.Tensor, valid: torch.Tensor, gen) -> torch.Tensor:
    """Unit-RMS noise of each row's kind (`omni.synth.audio.make_noise`), made only for
    the rows of that kind; the colored kinds are shaped over the whole buffer, then
    each row is normalized over its own length ("none" rows stay zero)."""
    ba, W = valid.shape
    dev = valid.device
    sr = t.cfg.audio.sample_rate
    noise = torch.zeros(ba, W, device=dev)
    for name in NOISE_KINDS[1:]:
        rows = p.get(f"rows_{name}")
        if rows is None:
            continue
        k = rows.shape[0]
        if name in ("white", "pink", "brown"):
            v = torch.randn(k, W, device=dev, generator=gen)
            if name != "white":
                f = torch.fft.rfftfreq(W, 1.0 / sr, device=dev)
                f[0] = f[1] if W > 1 else 1.0
                v = torch.fft.irfft(torch.fft.rfft(v) / (f.sqrt() if name == "pink" else f), W)
        elif name == "hum":
            sec = n.float() / sr
            hz, phase = p["hum_hz"][rows, None], p["hum_phase"][rows]
            v = sum(torch.sin(2 * math.pi * hz * h * sec + phase[:, j, None]) / h for j, h in enumerate((1, 2, 3, 5)))
            v = v + 0.1 * torch.randn(k, W, device=dev, generator=gen)
        else:  # babble: three other questions, each looped from a random start
            start, length, at = p["babble_start"][rows], p["babble_len"][rows], p["babble_at"][rows]
            v = sum(_clip_samples(t, start[:, j], length[:, j], (at[:, j, None] + n) % length[:, j, None])
                    for j in range(3))
        noise = noise.index_copy(0, rows, v)
    noise = noise * valid
    rms = (noise.square().sum(1) / p["ns"].clamp(min=1)).sqrt()
    return noise / torch.where(rms > 0, rms, 1.0)[:, None]


def build_patches(t: PackTables, units: torch.Tensor) -> torch.Tensor:
    """Patch rows [U * gh * gw, patch_dim] of units (first, second frame) [U, 2], in
    `encoders.image_processing.patchify`'s (c, t, y, x) order, raster order per unit."""
    v = t.cfg.vision
    u = units.shape[0]
    p, (gh, gw) = v.patch_size, t.grid
    x = t.frames[units.reshape(-1)].float().div_(255.0)  # [U*2, H, W, 3]
    x = x.view(u, 2, gh * p, gw * p, 3).permute(0, 1, 4, 2, 3)  # [U, t, c, H, W]
    x = (x - t.image_mean) / t.image_std
    x = x.reshape(u, 2, 3, gh, p, gw, p).permute(0, 3, 5, 2, 1, 4, 6)  # [U, gh, gw, c, t, p, p]
    return x.reshape(u * gh * gw, -1)

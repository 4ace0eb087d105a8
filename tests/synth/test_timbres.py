"""Generated espeak-ng timbres (`omni.synth.timbres`) and a voice bank that speaks in them."""

from __future__ import annotations

import numpy as np
import pytest


def _fields(text: str) -> dict[str, list[list[int]]]:
    out: dict[str, list[list[int]]] = {}
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] in ("pitch", "formant", "voicing", "breath", "flutter", "roughness", "echo"):
            out.setdefault(parts[0], []).append([int(x) for x in parts[1:]])
    return out


def test_variants_are_seeded_and_within_the_shipped_ranges():
    from omni.synth.timbres import variant_text

    a = variant_text(np.random.default_rng(7), "gt3")
    assert a == variant_text(np.random.default_rng(7), "gt3")
    assert a != variant_text(np.random.default_rng(8), "gt3")
    for seed in range(40):
        f = _fields(variant_text(np.random.default_rng(seed), "gt0"))
        (lo, hi), = f["pitch"]
        assert 60 <= lo < hi <= 320
        assert [k for k, *_ in f["formant"]] == list(range(9))
        freqs = [freq for _, freq, _, _ in f["formant"]]
        assert all(75 <= x <= 130 for x in freqs)
        # one vocal-tract scale moves the formants together: they stay within +-6 % of each other's scale
        assert max(freqs) / min(freqs) < 1.14
        assert 100 <= f["voicing"][0][0] < 165


def test_timbre_data_makes_distinct_voices_espeak_finds(tmp_path):
    from omni.synth.timbres import MAX_TIMBRES, check_timbre, names, timbre_data
    from omni.synth.voices import Voice, synthesize

    path = timbre_data(tmp_path / "t", MAX_TIMBRES, seed=1)
    check_timbre(path, names(MAX_TIMBRES)[-1])  # the last of the list is found too
    a = synthesize("red circle", Voice("en-gb-scotland+gt4", 160, 50), path)
    b = synthesize("red circle", Voice("en-gb-scotland+gt5", 160, 50), path)
    base = synthesize("red circle", Voice("en-gb-scotland", 160, 50))
    assert len(a) > 0.2 * 16000 and not np.array_equal(a, b) and not np.array_equal(a, base)
    # shipped variants still speak from the copy, exactly as from the installed data
    assert np.array_equal(synthesize("red circle", Voice("en-gb-scotland+m3", 160, 50), path),
                          synthesize("red circle", Voice("en-gb-scotland+m3", 160, 50)))
    with pytest.raises(ValueError):
        timbre_data(tmp_path / "u", MAX_TIMBRES + 1)
    with pytest.raises(RuntimeError, match="does not find"):
        check_timbre(path, "gt99999")


def test_voice_bank_with_generated_timbres(tmp_path):
    from omni.synth.voice_bank import VoiceBank, bank_voice, build_voice_bank, write_voice_bank
    from omni.synth.voices import BANK_VARIANTS

    assert bank_voice(3, "say hello", 2, timbres=0) == bank_voice(3, "say hello", 2)
    variants = {bank_voice(0, "say hello", k, timbres=50).name.split("+")[1] for k in range(200)}
    assert any(v.startswith("gt") for v in variants) and variants & set(BANK_VARIANTS)
    path = tmp_path / "voices.npz"
    write_voice_bank(path, build_voice_bank(["what color is the star", "say red"], 6, seed=2, workers=2,
                                            progress=False, timbres=20))
    bank = VoiceBank.load(path)
    assert len(bank) == 12 and bank.meta["timbres"] == 20
    assert any("+gt" in v for v in bank.meta["voices"])


def test_every_accent_of_the_bank_honours_its_variant():
    """espeak-ng ignores the variant of "en-gb" (found by language, not by file): the bank
    speaks that accent as "en", which honours it."""
    from omni.synth.voices import ACCENTS, Voice, synthesize, variant_voice

    for accent in ACCENTS:
        a = synthesize("red circle", Voice(variant_voice(accent, "m3"), 160, 50))
        b = synthesize("red circle", Voice(variant_voice(accent, "f2"), 160, 50))
        assert not np.array_equal(a, b), accent
    assert np.array_equal(synthesize("red circle", Voice("en-gb+m3", 160, 50)),
                          synthesize("red circle", Voice("en-gb+f2", 160, 50)))  # the quirk itself

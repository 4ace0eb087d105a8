"""Generated espeak-ng timbres: many more distinct speakers than espeak-ng ships.

The audio encoder learns the voices it hears: with the ~75 human variants espeak-ng
ships it transcribes its training clips almost perfectly and misses about half of the
tokens of unseen variants (README, "At the GPU recipe's scale"). More renderings in the
same timbres do not close that gap; new timbres might. An espeak-ng variant is a small
text file (pitch base and range, the frequency, height and width of each formant,
voicing, breath, flutter, roughness, echo), so new speakers can be drawn at random:

  - one vocal-tract scale (0.82-1.22) moves every formant together, as a longer or
    shorter tract does, and each formant then moves a little on its own (+-6 %);
  - heights and widths, pitch base and range, voicing, breath, flutter, roughness and
    sometimes an echo are drawn independently within the ranges the shipped variants use.

`timbre_data(folder, n, seed)` writes a private copy of the espeak-ng data with `n`
generated variants `gt0` ... `gt{n-1}` (the held-out variants and the assistant's are
never copied or imitated by name; a drawn timbre may of course sound like anyone) and
returns the folder to pass as ESPEAK_DATA_PATH (`voices.synthesize(..., data_path=)`).
espeak-ng falls back silently to its default voice for a variant it cannot find, so
`check_timbre` renders one word with a generated variant and with the default and
refuses a folder where they are the same.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

PREFIX = "gt"
MAX_TIMBRES = 200  # with the shipped variants and the English languages, within espeak-ng's voice list


def variant_text(rng: np.random.Generator, name: str) -> str:
    """One random espeak-ng variant file."""
    female = rng.random() < 0.5
    tract = rng.uniform(1.0, 1.22) if female else rng.uniform(0.82, 1.04)
    base = int(rng.integers(140, 210) if female else rng.integers(60, 125))
    lines = ["language variant", f"name {name}", f"gender {'female' if female else 'male'}", "",
             f"pitch {base} {base + int(rng.integers(30, 110))}"]
    for k in range(9):
        freq = round(100 * tract * rng.uniform(0.94, 1.06))
        height = int(rng.integers(50, 150)) if k else int(rng.integers(80, 130))
        width = int(rng.integers(60, 160))
        lines.append(f"formant {k} {freq} {height} {width}")
    lines.append(f"voicing {int(rng.integers(100, 165))}")
    if rng.random() < 0.4:
        lines.append("breath " + " ".join(str(int(x)) for x in rng.integers(0, 25, 8)))
    if rng.random() < 0.5:
        lines.append(f"flutter {int(rng.integers(0, 40))}")
    if rng.random() < 0.3:
        lines.append(f"roughness {int(rng.integers(0, 5))}")
    if rng.random() < 0.2:
        lines.append(f"echo {int(rng.integers(50, 200))} {int(rng.integers(5, 25))}")
    return "\n".join(lines) + "\n"


def names(n: int) -> tuple[str, ...]:
    return tuple(f"{PREFIX}{k}" for k in range(n))


def espeak_data_dir() -> Path:
    """The espeak-ng data folder in use ("Data at:" of `espeak-ng --version`)."""
    out = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True, check=False).stdout
    if "Data at:" not in out:
        raise RuntimeError(f"espeak-ng --version says no data folder: {out.strip()!r}")
    return Path(out.split("Data at:", 1)[1].strip())


def timbre_data(folder: str | Path, n: int, seed: int = 0) -> str:
    """A copy of the espeak-ng data in folder/espeak-ng-data with `n` generated variants;
    returns `folder` (the ESPEAK_DATA_PATH). The draws depend on `seed` only."""
    if not 1 <= n <= MAX_TIMBRES:
        raise ValueError(f"the number of generated timbres must be in [1, {MAX_TIMBRES}] (espeak-ng's voice list)")
    folder = Path(folder)
    data = folder / "espeak-ng-data"
    if data.exists():
        shutil.rmtree(data)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copytree(espeak_data_dir(), data, symlinks=True)
    # espeak-ng lists at most ~350 voices (languages, variants and mbrola voices together) and
    # finds no variant past that: the copy keeps only the English languages (the world's
    # accents) and no mbrola voices
    for f in (data / "lang").rglob("*"):
        if f.is_file() and not f.name.lower().startswith("en"):
            f.unlink()
    shutil.rmtree(data / "voices" / "mb", ignore_errors=True)
    rng = np.random.default_rng([seed, 2604])
    for name in names(n):
        (data / "voices" / "!v" / name).write_text(variant_text(rng, name))
    check_timbre(str(folder), names(n)[-1])  # the last one: past the list's end it would fall back
    return str(folder)


def check_timbre(data_path: str, name: str = f"{PREFIX}0") -> None:
    """Refuse a data folder whose generated variant espeak-ng does not find (it would fall
    back, silently, to its default voice)."""
    def render(voice: str) -> bytes:
        return subprocess.run(["espeak-ng", "-v", voice, "--stdout", "red"], capture_output=True, check=False,
                              env={**os.environ, "ESPEAK_DATA_PATH": data_path}).stdout

    if render(f"en-us+{name}") == render("en-us"):
        raise RuntimeError(f"espeak-ng does not find the generated variant {name!r} under {data_path}")

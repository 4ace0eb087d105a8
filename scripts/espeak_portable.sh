#!/usr/bin/env bash
# A portable espeak-ng for a machine without it (the GPU machine, which writes the voice
# bank of `omni data voice-bank` there): the Debian command-line program, the espeak-ng
# library of the `espeakng-loader` wheel (built without the audio-output libraries the
# Debian one needs: ALSA, PulseAudio) and the English part of its data, ~3 MB in all.
#
#   bash scripts/espeak_portable.sh [DEST]        (default .espeak; run where apt and pip reach a mirror)
#
# Then, on the other machine (DEST carried with the tree):
#   export PATH=$PWD/.espeak/bin:$PATH LD_LIBRARY_PATH=$PWD/.espeak/lib ESPEAK_DATA_PATH=$PWD/.espeak
# `omni.synth.voices.synthesize` resamples with torchaudio where sox is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${1:-.espeak}
PY=${PYTHON:-$PWD/.venv/bin/python}
[[ -x "$PY" ]] || PY=python3
WHEEL_VERSION=${WHEEL_VERSION:-0.2.4}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download espeak-ng >/dev/null 2>&1) || { echo "apt-get download espeak-ng failed" >&2; exit 1; }
"$PY" -m pip download -q --no-deps --only-binary=:all: --platform manylinux_2_17_x86_64 --python-version 3.12 \
    --implementation cp -d "$work" "espeakng-loader==$WHEEL_VERSION"
dpkg -x "$work"/espeak-ng_*.deb "$work/deb"
(cd "$work" && "$PY" -m zipfile -e espeakng_loader-*.whl wheel)
rm -rf "$DEST" && mkdir -p "$DEST/bin" "$DEST/lib" "$DEST/espeak-ng-data/lang/gmw" "$DEST/espeak-ng-data/voices"
cp "$work/deb/usr/bin/espeak-ng" "$DEST/bin/"
cp "$work/wheel/espeakng_loader/libespeak-ng.so" "$DEST/lib/libespeak-ng.so.1"
data="$work/wheel/espeakng_loader/espeak-ng-data"
cp "$data"/{phontab,phonindex,phondata,phondata-manifest,intonations,en_dict} "$DEST/espeak-ng-data/"
cp "$data"/lang/gmw/en* "$DEST/espeak-ng-data/lang/gmw/"
cp -r "$data/voices/!v" "$DEST/espeak-ng-data/voices/"
chmod +x "$DEST/bin/espeak-ng"
bytes=$(PATH=$PWD/$DEST/bin:$PATH LD_LIBRARY_PATH=$PWD/$DEST/lib ESPEAK_DATA_PATH=$PWD/$DEST \
    espeak-ng -v en-gb-scotland+Storm -s 160 --stdout "how many squares are there" | wc -c)
(( bytes > 10000 )) || { echo "the portable espeak-ng wrote no speech" >&2; exit 1; }
echo "portable espeak-ng in $DEST ($(du -sh "$DEST" | cut -f1)): $(PATH=$PWD/$DEST/bin:$PATH LD_LIBRARY_PATH=$PWD/$DEST/lib ESPEAK_DATA_PATH=$PWD/$DEST espeak-ng --version)"

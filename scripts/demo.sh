#!/usr/bin/env bash
# Install labelsift and run its main job on the bundled photos with the offline model: scan a folder,
# write the manifest, export a Custom Labels folder layout and a COCO file into ./labelsift-demo.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e .
.venv/bin/labelsift demo "${1:-labelsift-demo}"

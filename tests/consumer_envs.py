"""The consumers' own virtual environments (Ultralytics, Datumaro, Hugging Face datasets), made by
scripts/test.sh in `.venv-consumers/<name>` because their dependencies clash with each other's.

`load(name, script, *args)` runs `tests/consumers/<script>` with that environment's python, from a
working directory of its own (not the export's), and returns the JSON it prints.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = Path(__file__).resolve().parent / "consumers"


def python_of(name: str) -> Path:
    python = ROOT / ".venv-consumers" / name / "bin" / "python"
    if not python.exists():
        message = f"{python} is missing: `bash scripts/test.sh` makes the consumers' environments"
        if os.environ.get("LABELSIFT_REQUIRE_CONSUMERS"):
            pytest.fail(message)
        pytest.skip(message)
    return python


def load(name: str, script: str, *args: str) -> Any:
    python = python_of(name)
    with tempfile.TemporaryDirectory(prefix=f"consumer-{name}-") as elsewhere:
        env = {
            **os.environ,
            "YOLO_CONFIG_DIR": elsewhere,  # Ultralytics' settings file
            "HF_DATASETS_CACHE": f"{elsewhere}/hf-cache",
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "PYTHONPATH": "",
        }
        done = subprocess.run(
            [str(python), str(SCRIPTS / script), *args],
            cwd=elsewhere,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    assert done.returncode == 0, f"{script} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])

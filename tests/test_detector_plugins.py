"""A detector from a separate package, found through the `labelsift.detectors` entry points."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from labelsift.demo import photos
from labelsift.detectors.factory import available, billing_of

PLUGIN = Path(__file__).parent / "plugins" / "labelsift-example-detector"


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example plugin installed (built as a wheel by pip) into a folder of its own."""
    target = tmp_path_factory.mktemp("plugin-site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(target),
            str(PLUGIN),
        ],
        check=True,
        timeout=300,
    )
    return target


def labelsift(plugin_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_path), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "labelsift.cli", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def test_the_built_in_detectors_are_registered_as_plugins() -> None:
    assert {"local", "rekognition", "onnx", "custom-labels"} <= set(available())
    assert billing_of("rekognition") == "per_image"
    assert billing_of("custom-labels:arn:aws:rekognition:x") == "per_hour"
    assert billing_of("local") == "free"


def test_a_plugin_package_scans_like_a_built_in_detector(plugin_path: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "m.jsonl"
    result = labelsift(plugin_path, "scan", str(photos()), "-o", str(manifest), "-d", "brightness:100",
                       "--label", "Bright")  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    records = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert len(records) == 9
    for record in records:
        assert record["status"] == "labeled"
        assert record["detector"] == {"name": "brightness", "model_version": "level=100"}
        names = {label["name"] for label in record["labels"]}
        assert names in ({"Bright", "Lighting"}, {"Dark", "Lighting"})
    broken = labelsift(plugin_path, "scan", str(photos()), "-o", str(tmp_path / "b.jsonl"), "-d", "broken")
    assert broken.returncode == 2, broken.stderr
    assert "RuntimeError: weights missing" in " ".join((broken.stdout + broken.stderr).split())
    assert "Traceback" not in broken.stderr
    wrong = labelsift(
        plugin_path, "scan", str(photos()), "-o", str(tmp_path / "w.jsonl"), "-d", "not-a-plugin"
    )
    assert wrong.returncode == 2
    assert "not a labelsift.detectors.factory.DetectorPlugin" in " ".join(
        (wrong.stdout + wrong.stderr).split()
    )
    listed = labelsift(plugin_path, "scan", str(photos()), "-o", str(tmp_path / "x.jsonl"), "-d", "nosuch")
    assert listed.returncode == 2
    assert "brightness" in listed.stdout + listed.stderr

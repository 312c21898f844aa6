"""The command line on local folders with the offline model: what a newcomer runs first."""

import json
import logging
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from labelsift.cli import app
from labelsift.demo import photos
from labelsift.manifest import iter_records
from labelsift.models import ScanStatus

runner = CliRunner()


def test_estimate_counts_and_prices_a_folder(tmp_path: Path) -> None:
    for name in ("a.jpg", "b.png", "notes.txt"):
        (tmp_path / name).write_bytes(b"x" * 1000)
    result = runner.invoke(app, ["estimate", str(tmp_path), "--rate", "1"])
    assert result.exit_code == 0, result.output
    assert "2 images" in result.output
    assert "$0.00 for a full scan" in result.output
    assert "crowd labelling instead: $0.07–$0.12" in result.output


def test_scan_then_rescan_with_another_label_pays_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    shutil.copytree(photos(), folder)
    manifest = tmp_path / "m.jsonl"
    first = runner.invoke(app, ["scan", str(folder), "-o", str(manifest), "--label", "Dog", "--workers", "2"])
    assert first.exit_code == 0, first.output
    records = list(iter_records(str(manifest)))
    assert len(records) == 9
    assert all(r.status is ScanStatus.LABELED and r.detector and r.detector.name == "local" for r in records)
    again = runner.invoke(app, ["scan", str(folder), "-o", str(manifest), "--label", "birb"])
    assert again.exit_code == 0, again.output
    assert "Did you mean 'Bird'" in " ".join(again.output.split())
    assert len(list(iter_records(str(manifest)))) == 9


def test_mixing_detectors_in_one_manifest_is_refused(tmp_path: Path) -> None:
    manifest = tmp_path / "m.jsonl"
    record = {"source": str(tmp_path / "x.jpg"), "status": "labeled", "detector": {"name": "rekognition"}}
    manifest.write_text(json.dumps(record) + "\n")
    result = runner.invoke(app, ["scan", str(photos()), "-o", str(manifest)])
    assert result.exit_code == 3
    assert "--allow-mixed-detectors" in result.output


def test_a_bad_band_is_a_usage_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["export", "coco", str(tmp_path / "m.jsonl"), str(tmp_path), "-l", "Dog",
                                 "--band", "80:50"])  # fmt: skip
    assert result.exit_code == 2
    assert "LOW:HIGH" in result.output


def test_demo_scans_and_exports_into_a_folder(tmp_path: Path) -> None:
    result = runner.invoke(app, ["demo", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "custom-labels" / "Dog" / "dog.jpg").exists()
    assert (tmp_path / "out" / "custom-labels" / "Cat" / "chelsea.jpg").exists()
    coco = json.loads((tmp_path / "out" / "coco" / "annotations" / "instances_train.json").read_text())
    assert [c["name"] for c in coco["categories"]][:3] == ["Person", "Dog", "Cat"]
    assert len(list(iter_records(str(tmp_path / "out" / "manifest.jsonl")))) == 9


def test_a_run_leaves_labelsift_s_log_levels_to_the_caller(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # a program (or test) that runs the app in-process still gets labelsift's info and debug records
    CliRunner().invoke(app, ["merge", str(tmp_path / "missing.jsonl"), "-o", str(tmp_path / "out.jsonl")])
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("labelsift.manifest.lines").debug("seen after a run")
    assert "seen after a run" in caplog.text


def test_a_run_leaves_the_caller_s_log_levels_alone(tmp_path: Path) -> None:
    root, ours = logging.getLogger(), logging.getLogger("labelsift")
    before = (root.level, ours.level)
    root.setLevel(logging.INFO)  # the embedding program's choice
    try:
        CliRunner().invoke(app, ["merge", str(tmp_path / "missing.jsonl"), "-o", str(tmp_path / "out.jsonl")])
        assert (root.level, ours.level) == (logging.INFO, before[1])
    finally:
        root.setLevel(before[0])


def test_debug_shows_the_traceback_whatever_level_the_caller_set(tmp_path: Path) -> None:
    ours = logging.getLogger("labelsift")
    before = ours.level
    ours.setLevel(logging.WARNING)
    try:
        args = ["merge", str(tmp_path / "missing.jsonl"), "-o", str(tmp_path / "out.jsonl")]
        debug = CliRunner().invoke(app, ["--debug", *args])
        plain = CliRunner().invoke(app, args)
    finally:
        ours.setLevel(before)
    assert debug.exit_code == plain.exit_code == 3
    assert "Traceback" in debug.output and "Traceback" not in plain.output


def test_importing_every_cli_module_runs_nothing() -> None:
    import subprocess
    import sys

    code = (
        "import importlib, pkgutil, labelsift.cli as cli; "
        "[importlib.import_module('labelsift.cli.' + m.name) for m in pkgutil.iter_modules(cli.__path__)]; "
        "print('imported')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == "imported\n", done.stdout + done.stderr

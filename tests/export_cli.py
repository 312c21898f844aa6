"""The export tests' command line: `cli` and what it printed, receipts, and the fixtures of three
small photos and a manifest of them (a bird in each) that most export tests start from.

A test module that uses a fixture imports it by name (`from export_cli import manifest as manifest`);
`wide_console` is autouse there once imported.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from manifest_builders import box, label, make_jpeg, record, write_manifest
from typer.testing import CliRunner, Result

from labelsift.cli import app
from labelsift.models import ImageRecord
from labelsift.storage import Storage

runner = CliRunner()
RECEIPT = ".labelsift-receipt.jsonl"


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Long paths on one line, so that the tests can look for them."""
    import labelsift.cli

    for console in (labelsift.cli.out, labelsift.cli.err):
        monkeypatch.setattr(console, "_width", 10_000)


def cli(*args: str) -> Result:
    return runner.invoke(app, list(args))


def said(result: Result) -> str:
    return " ".join(result.output.split())


def scanned(path: Path, *labels: object, **fields: object) -> ImageRecord:
    """A record as a scan of the local file `path` writes it (with its etag)."""
    made = record(str(path), *labels, **fields)  # type: ignore[arg-type]
    return made.model_copy(update={"etag": Storage().stat(str(path)).etag, "size": path.stat().st_size})


def bird(path: Path) -> ImageRecord:
    return scanned(path, label("Bird", 90, box(0.1, 0.1, 0.5, 0.5)))


@pytest.fixture
def photos(tmp_path: Path) -> list[Path]:
    return [make_jpeg(tmp_path / "photos" / f"{i}.jpg", 200, 100) for i in range(3)]


@pytest.fixture
def manifest(tmp_path: Path, photos: list[Path]) -> str:
    return write_manifest(tmp_path / "m.jsonl", [bird(p) for p in photos])

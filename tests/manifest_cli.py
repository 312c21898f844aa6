"""The manifest tests' command line: `cli` in process or `subprocess_cli` as a real process, what
either printed, the arguments of a Rekognition scan for birds, and a scan held running in a
subprocess (so that it holds the manifest's lock)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner, Result

from labelsift.cli import app

runner = CliRunner()


def cli(*args: str) -> Result:
    return runner.invoke(app, list(args))


def said(result: Result | subprocess.CompletedProcess[str]) -> str:
    text = result.output if isinstance(result, Result) else result.stdout + result.stderr
    return " ".join(text.split())


def scan_args(source: Path | str, manifest: Path | str, *extra: str) -> list[str]:
    return ["scan", str(source), "-o", str(manifest), "-d", "rekognition", "-l", "Bird", *extra]


def subprocess_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "labelsift.cli", *args]


def wait_for_lines(path: Path, count: int, process: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if path.exists() and path.read_bytes().count(b"\n") >= count:
            return
        time.sleep(0.01)
    raise AssertionError(f"{path} never reached {count} lines")


def scan_holding(
    folder: Path, manifest: Path, lines: int = 1, *, quiet: bool = False
) -> subprocess.Popen[str]:
    """A one-worker scan of `folder` in a subprocess, returned once it has written `lines` records
    (so it holds the manifest's lock): the first of two commands at once on one manifest."""
    output = subprocess.DEVNULL if quiet else subprocess.PIPE
    process = subprocess.Popen(
        subprocess_cli(*scan_args(folder, manifest, "--workers", "1")),
        stdout=output,
        stderr=output,
        text=True,
    )
    wait_for_lines(manifest, lines, process)
    return process

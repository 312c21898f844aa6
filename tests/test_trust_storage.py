"""Issue #14, storage part: content identity of copies, no secret in output, listings that never
die of one entry, canonical local sources, and a hint when a source lists nothing.

Every test goes through the command line where the behaviour is user-visible, against the real
S3 server fixture, real files and real processes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from typer.testing import CliRunner, Result

from labelsift.cli import ExitCode, app
from labelsift.testing.fake_rekognition import FakeRekognition, make_image

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

runner = CliRunner()
SESSION_TOKEN = "IQoJb3JpZ2luX2VjSessionTokenNeverPrintMe0123456789abcdefSECRET"


def cli(*args: str) -> Result:
    return runner.invoke(app, list(args))


def images_folder(root: Path, count: int = 2, name: str = "images") -> Path:
    folder = root / name
    folder.mkdir()
    for i in range(count):
        (folder / f"{i}.jpg").write_bytes(make_image("bird", seed=i))
    return folder


# ---- finding 8: no secret anywhere -----------------------------------------------------------


def test_debug_logs_never_show_the_session_token_or_a_signature(
    fake_rekognition: FakeRekognition, tmp_path: Path
) -> None:
    folder = images_folder(tmp_path)
    env = {**os.environ, "AWS_SESSION_TOKEN": SESSION_TOKEN}
    manifest = tmp_path / "m.jsonl"
    command = [sys.executable, "-m", "labelsift.cli", "--debug", "scan", str(folder), "-o",
               str(manifest), "-d", "rekognition", "--workers", "2"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=180)
    shown = result.stdout + result.stderr
    assert result.returncode == ExitCode.OK, shown[-3000:]
    assert "x-amz-security-token" in shown.lower()  # the debug logs were on and name the header
    assert SESSION_TOKEN not in shown
    assert SESSION_TOKEN[:24] not in shown  # not even a wrapped or cut piece of it
    assert "Signature=" not in shown.replace("Signature=[redacted]", "")
    assert SESSION_TOKEN not in manifest.read_text()


PRESIGNED = (
    "https://{bucket}.s3.amazonaws.com/raw/0.jpg?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Credential=AKIAEXAMPLE%2F20261203%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20261203T000000Z"
    "&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature=" + "5e" * 32
)


def assert_refused_presigned(result: Result) -> None:
    text = " ".join(result.output.split())
    assert result.exit_code == ExitCode.USAGE, result.output
    assert "presigned" in text and "s3://bucket/key" in text, text
    assert "5e5e5e5e" not in text and "AKIAEXAMPLE" not in text and "X-Amz-Signature" not in text
    assert "Traceback" not in result.output


def test_every_command_refuses_a_presigned_url_the_same_way(tmp_path: Path) -> None:
    url = PRESIGNED.format(bucket="photos")
    folder = images_folder(tmp_path)
    assert_refused_presigned(cli("estimate", url))
    assert_refused_presigned(cli("merge", url, "-o", str(tmp_path / "all.jsonl")))
    assert_refused_presigned(cli("scan", url, "-o", str(tmp_path / "m.jsonl")))
    assert_refused_presigned(
        cli("filter", str(folder), url, "--label", "Bird", "-o", str(tmp_path / "f.jsonl"))
    )
    assert not (tmp_path / "f.jsonl").exists() and not (tmp_path / "all.jsonl").exists()

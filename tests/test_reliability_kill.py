"""Kill and resume: Ctrl-C stops cleanly; SIGKILL at any moment loses nothing and pays little twice.

The scan runs as a real subprocess (`python -m labelsift.cli scan ...`) against the S3 server and
the local Rekognition endpoint; the endpoint's call log is the bill.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from labelsift.cli import ExitCode
from labelsift.detectors.rekognition import RekognitionDetector
from labelsift.manifest import iter_lines, iter_records
from labelsift.models import ImageRecord
from labelsift.scan import ScanOptions, scan
from labelsift.select import Selection
from labelsift.storage import Storage
from labelsift_testing.fake_rekognition import FakeRekognition, make_image

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

SCENES = ["bird", "dog", "campfire", "car", "tree"]
WORKERS = 4
KILLS = 10
SEED = 6


def upload(client: S3Client, bucket: str, count: int) -> None:
    for i in range(count):
        body = make_image(SCENES[i % len(SCENES)], seed=i)
        client.put_object(Bucket=bucket, Key=f"raw/{i:03d}.jpg", Body=body)


def command(bucket: str, manifest: Path) -> list[str]:
    return [sys.executable, "-m", "labelsift.cli", "scan", f"s3://{bucket}/", "-o", str(manifest),
            "-d", "rekognition", "-l", "Bird", "--workers", str(WORKERS)]  # fmt: skip


def complete_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def essence(record: ImageRecord) -> tuple[object, ...]:
    labels = tuple((label.name, label.confidence, len(label.instances)) for label in record.labels)
    return record.status.value, record.etag, record.width, record.height, labels


def test_sigint_finishes_in_flight_flushes_prints_the_summary_and_exits_130(
    fake_rekognition_s3: FakeRekognition, s3_client: S3Client, bucket: str, tmp_path: Path
) -> None:
    count = 30
    upload(s3_client, bucket, count)
    fake_rekognition_s3.latency_s = 0.2
    manifest = tmp_path / "m.jsonl"
    process = subprocess.Popen(
        command(bucket, manifest), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ
    )
    deadline = time.monotonic() + 30
    while complete_lines(manifest) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == ExitCode.INTERRUPTED, stderr
    assert "scan summary" in stdout and "interrupted" in stdout
    assert "rerun the same command to resume" in " ".join(stderr.split())
    assert "Traceback" not in stdout + stderr
    data = manifest.read_bytes()
    assert data.endswith(b"\n")
    records = list(iter_records(str(manifest)))
    assert 5 <= len(records) < count
    # Every call the endpoint answered (in flight at Ctrl-C included) has its record: nothing lost.
    assert fake_rekognition_s3.billed == len(records)
    resumed = subprocess.run(command(bucket, manifest), capture_output=True, text=True, env=os.environ)
    assert resumed.returncode == ExitCode.OK, resumed.stderr
    sources = [r.source for r in iter_records(str(manifest))]
    assert len(sources) == len(set(sources)) == count
    assert fake_rekognition_s3.billed == count


def test_sigkill_at_ten_seeded_points_then_resume_matches_an_uninterrupted_run(
    fake_rekognition_s3: FakeRekognition, s3_client: S3Client, bucket: str, tmp_path: Path
) -> None:
    count = 48
    upload(s3_client, bucket, count)
    # The reference: one uninterrupted run (in process), then a clean bill for the killed runs.
    reference_path = tmp_path / "reference.jsonl"
    storage = Storage()
    options = ScanOptions(Selection(labels=("Bird",)), workers=WORKERS)
    scan(f"s3://{bucket}/", str(reference_path), RekognitionDetector(storage=storage), storage, options)
    reference = {r.source: essence(r) for r in iter_records(str(reference_path))}
    assert len(reference) == count
    fake_rekognition_s3.reset()
    fake_rekognition_s3.latency_s = 0.03

    manifest = tmp_path / "m.jsonl"
    points = sorted(random.Random(SEED).sample(range(1, count), KILLS))
    for n, point in enumerate(points):
        process = subprocess.Popen(
            command(bucket, manifest), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ
        )
        deadline = time.monotonic() + 30
        while complete_lines(manifest) < point and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
        process.wait()
        if n == KILLS // 2:  # what a kill in the middle of a write leaves: half a line
            with manifest.open("ab") as stream:
                stream.write(b'{"source": "s3://' + bucket.encode() + b"/raw/0")
    finished = subprocess.run(command(bucket, manifest), capture_output=True, text=True, env=os.environ)
    assert finished.returncode == ExitCode.OK, finished.stderr

    lines = list(iter_lines(str(manifest)))
    assert manifest.read_bytes().endswith(b"\n")
    assert len(lines) == count  # no duplicates, no torn line left
    final = {r.source: essence(r) for r in iter_records(str(manifest))}
    assert final == reference
    repeated = sum(calls - 1 for calls in fake_rekognition_s3.calls_by_image(billed_only=True).values())
    assert fake_rekognition_s3.billed == count + repeated
    assert repeated <= KILLS * WORKERS, (repeated, points)

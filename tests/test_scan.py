"""The scan stage end to end: real S3 (SeaweedFS) and the local Rekognition endpoint over HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from bucket_images import BIRDS, every_fifth_is_a_bird, upload
from typer.testing import CliRunner

from labelsift.cli import app
from labelsift.cost import PriceTable
from labelsift.detectors.rekognition import RekognitionDetector
from labelsift.manifest import iter_lines, iter_records
from labelsift.models import RunSummary, ScanStatus, StopReason
from labelsift.scan import ScanOptions, scan
from labelsift.storage import Storage
from labelsift_testing.fake_rekognition import FakeRekognition, make_image

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def run_scan(
    source: str, manifest: Path, options: ScanOptions, *, max_attempts: int = 5
) -> tuple[RunSummary, list[str]]:
    storage = Storage()
    detector = RekognitionDetector(storage=storage, max_attempts=max_attempts)
    hits: list[str] = []
    summary = scan(
        source, str(manifest), detector, storage, options, on_hit=lambda info: hits.append(info.uri)
    )
    return summary, hits


def test_target_stops_after_the_hits_asked_for_spending_only_the_requests_in_flight(
    fake_rekognition_s3: FakeRekognition, s3_client: S3Client, bucket: str, tmp_path: Path
) -> None:
    uris = upload(s3_client, bucket, ["bird"] * 60)
    summary, hits = run_scan(
        f"s3://{bucket}/raw/", tmp_path / "m.jsonl", ScanOptions(BIRDS, target=20, workers=4)
    )
    assert summary.stopped is StopReason.TARGET
    assert hits == uris[:20]
    assert summary.hits == 20
    assert 20 <= fake_rekognition_s3.billed <= 20 + 4
    assert len(list(iter_records(str(tmp_path / "m.jsonl")))) == fake_rekognition_s3.billed


@pytest.mark.parametrize(
    ("options", "stopped", "considered"),
    [
        (ScanOptions(BIRDS, target=7), StopReason.TARGET, 31),
        (ScanOptions(BIRDS, max_images=37), StopReason.MAX_IMAGES, 37),
        (ScanOptions(BIRDS, budget=0.025), StopReason.BUDGET, 25),
    ],
    ids=["target", "max-images", "budget"],
)
def test_stopping_rules_stop_at_the_same_place_whatever_the_worker_count(
    fake_rekognition_s3: FakeRekognition,
    s3_client: S3Client,
    bucket: str,
    tmp_path: Path,
    options: ScanOptions,
    stopped: StopReason,
    considered: int,
) -> None:
    uris = upload(s3_client, bucket, every_fifth_is_a_bird(60))
    expected_hits = [uri for i, uri in enumerate(uris[:considered]) if i % 5 == 0]
    for workers in (1, 3, 8):
        fake_rekognition_s3.reset()
        manifest = tmp_path / f"w{workers}.jsonl"
        run = ScanOptions(**{**options.__dict__, "workers": workers})
        summary, hits = run_scan(f"s3://{bucket}/raw/", manifest, run)
        assert (summary.stopped, hits, summary.hits) == (stopped, expected_hits, len(expected_hits)), workers
        if options.max_images is not None or options.budget is not None:
            assert fake_rekognition_s3.billed == considered
        assert fake_rekognition_s3.billed <= considered + workers
        if options.budget is not None:
            assert summary.cost_usd <= options.budget


def test_patience_stops_after_n_misses_in_a_row(
    fake_rekognition_s3: FakeRekognition, s3_client: S3Client, bucket: str, tmp_path: Path
) -> None:
    scenes = ["bird", "dog"] * 10 + ["campfire"] * 15 + ["bird"] * 10
    upload(s3_client, bucket, scenes)
    for workers in (1, 6):
        summary, hits = run_scan(
            f"s3://{bucket}/",
            tmp_path / f"p{workers}.jsonl",
            ScanOptions(BIRDS, patience=10, workers=workers),
        )
        assert summary.stopped is StopReason.PATIENCE
        assert len(hits) == 10
        assert summary.hits == 10


def test_budget_respects_the_free_tier(
    fake_rekognition_s3: FakeRekognition, s3_client: S3Client, bucket: str, tmp_path: Path
) -> None:
    upload(s3_client, bucket, ["dog"] * 12)
    prices = PriceTable(free_images_left=10)
    summary, _ = run_scan(
        f"s3://{bucket}/", tmp_path / "m.jsonl", ScanOptions(BIRDS, budget=0.001, prices=prices)
    )
    assert summary.billed == 11
    assert summary.cost_usd == pytest.approx(0.001)
    assert summary.stopped is StopReason.BUDGET


def test_rerun_resumes_without_paying_twice_and_retry_errors_retries_only_failures(
    fake_rekognition_s3: FakeRekognition, s3_client: S3Client, bucket: str, tmp_path: Path
) -> None:
    upload(s3_client, bucket, every_fifth_is_a_bird(30))
    manifest = tmp_path / "m.jsonl"
    # The detector retries an image the service rejects once, as prepared bytes: two faults, one image.
    fake_rekognition_s3.inject("InvalidParameterException", "InvalidParameterException")
    first, _ = run_scan(f"s3://{bucket}/", manifest, ScanOptions(BIRDS, workers=1))
    assert (first.scanned, first.errors) == (30, 1)
    fake_rekognition_s3.reset()
    again, hits = run_scan(f"s3://{bucket}/", manifest, ScanOptions(BIRDS))
    assert (again.already_done, again.scanned, fake_rekognition_s3.billed) == (30, 0, 0)
    assert len(hits) == 5  # the first image, a bird, failed
    retried, hits = run_scan(f"s3://{bucket}/", manifest, ScanOptions(BIRDS, retry_errors=True))
    assert (retried.scanned, retried.errors, fake_rekognition_s3.billed) == (1, 0, 1)
    assert len(hits) == 6
    records = list(iter_records(str(manifest)))
    assert len(records) == 30
    assert all(record.status is ScanStatus.LABELED for record in records)


def test_a_changed_object_is_scanned_again(
    fake_rekognition_s3: FakeRekognition, s3_client: S3Client, bucket: str, tmp_path: Path
) -> None:
    upload(s3_client, bucket, ["dog", "dog", "dog"])
    manifest = tmp_path / "m.jsonl"
    run_scan(f"s3://{bucket}/", manifest, ScanOptions(BIRDS))
    s3_client.put_object(Bucket=bucket, Key="raw/0001.jpg", Body=make_image("bird", confidence=90.0, seed=99))
    fake_rekognition_s3.reset()
    summary, hits = run_scan(f"s3://{bucket}/", manifest, ScanOptions(BIRDS))
    assert (summary.scanned, fake_rekognition_s3.billed) == (1, 1)
    assert hits == [f"s3://{bucket}/raw/0001.jpg"]
    records = list(iter_records(str(manifest)))
    assert sorted(r.source for r in records) == [f"s3://{bucket}/raw/{i:04d}.jpg" for i in range(3)]
    assert records[-1].source == f"s3://{bucket}/raw/0001.jpg"  # the new record superseded the old one


def test_throttling_storm_still_labels_every_image(
    fake_rekognition_s3: FakeRekognition, s3_client: S3Client, bucket: str, tmp_path: Path
) -> None:
    upload(s3_client, bucket, every_fifth_is_a_bird(50))
    fake_rekognition_s3.throttle_rate = 0.2
    summary, _ = run_scan(
        f"s3://{bucket}/", tmp_path / "m.jsonl", ScanOptions(BIRDS, workers=8), max_attempts=10
    )
    assert fake_rekognition_s3.throttled > 0
    assert (summary.labeled, summary.errors) == (50, 0)


def test_filter_copies_exactly_the_hits_into_dest_folder_key(
    fake_rekognition_s3: FakeRekognition,
    s3_client: S3Client,
    make_bucket: Callable[[], str],
    tmp_path: Path,
) -> None:
    raw, clean = make_bucket(), make_bucket()
    uris = upload(s3_client, raw, every_fifth_is_a_bird(300), prefix="birds/")
    manifest = tmp_path / "m.jsonl"
    result = CliRunner().invoke(
        app,
        [
            "filter",
            f"s3://{raw}/birds/",
            f"s3://{clean}/train",
            "--label",
            "bird",
            "--name",
            "robin",
            "--detector",
            "rekognition",
            "--manifest",
            str(manifest),
            "--workers",
            "16",
        ],
    )
    assert result.exit_code == 0, result.output
    paginator = s3_client.get_paginator("list_objects_v2")
    copied = sorted(o["Key"] for page in paginator.paginate(Bucket=clean) for o in page.get("Contents", []))
    expected = sorted(f"train/robin/birds/{i:04d}.jpg" for i in range(300) if i % 5 == 0)
    assert copied == expected
    assert sorted(r.source for r in iter_records(str(manifest))) == sorted(uris)
    assert len(list(iter_lines(str(manifest)))) == 300
    rerun = CliRunner().invoke(
        app,
        ["filter", f"s3://{raw}/birds/", f"s3://{clean}/train", "-l", "bird", "--name", "robin",
         "-d", "rekognition", "--manifest", str(manifest)],
    )  # fmt: skip
    assert rerun.exit_code == 0, rerun.output
    assert "copied 0 new hits" in rerun.output


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def test_sigkill_at_any_point_then_resume_gives_one_record_per_image(
    fake_rekognition_s3: FakeRekognition, s3_client: S3Client, bucket: str, tmp_path: Path
) -> None:
    count, workers = 90, 4
    upload(s3_client, bucket, every_fifth_is_a_bird(count))
    fake_rekognition_s3.latency_s = 0.05
    manifest = tmp_path / "m.jsonl"
    command = [sys.executable, "-m", "labelsift.cli", "scan", f"s3://{bucket}/", "-o", str(manifest),
               "-d", "rekognition", "-l", "Bird", "--workers", str(workers)]  # fmt: skip
    for kill_after in (10, 35, 60):
        process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ
        )
        deadline = time.monotonic() + 60
        while _lines(manifest) < kill_after and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait()
    finished = subprocess.run(command, capture_output=True, text=True, env=os.environ, timeout=120)
    assert finished.returncode == 0, finished.stderr
    sources = [record.source for record in iter_records(str(manifest))]
    assert len(sources) == len(set(sources)) == count
    assert len(list(iter_lines(str(manifest)))) == count
    paid_twice = sum(calls - 1 for calls in fake_rekognition_s3.calls_by_image(billed_only=True).values())
    assert paid_twice <= 3 * workers


def test_listing_error_for_a_missing_bucket_is_one_clear_paragraph(
    fake_rekognition_s3: FakeRekognition, tmp_path: Path
) -> None:
    result = CliRunner().invoke(
        app, ["scan", "s3://no-such-bucket-labelsift/", "-o", str(tmp_path / "m.jsonl"), "-d", "rekognition"]
    )
    assert result.exit_code == 3
    assert "no-such-bucket-labelsift" in result.output
    assert "Traceback" not in result.output

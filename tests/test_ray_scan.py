"""`labelsift scan --engine ray` on the session's local Ray cluster (fixtures_ray): real SeaweedFS,
the local Rekognition endpoint over HTTP, the offline model. Few tests, each doing several runs, so
the cluster's start-up is paid once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from fault_proxy import FaultProxy, Rule
from test_scan import BIRDS, every_fifth_is_a_bird, upload

from labelsift.cost import PriceTable
from labelsift.detectors.factory import DetectorSettings, build_detector
from labelsift.distributed.actor import DetectorSpec
from labelsift.distributed.driver import RayOptions, RayRun, ray_scan
from labelsift.distributed.shards import SHARD_PREFIX, shard_name
from labelsift.errors import CannotProceed
from labelsift.manifest import iter_records
from labelsift.models import ImageRecord, RunSummary, StopReason
from labelsift.scan import ScanOptions, scan
from labelsift.select import Selection
from labelsift.storage import Storage
from labelsift.testing.fake_rekognition import FakeRekognition

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.usefixtures("ray_cluster")


def shard_records(storage: Storage, dest: str) -> list[ImageRecord]:
    """Every record of every shard under `dest` (read here until merge reads a shard folder)."""
    found = [info.uri for info in storage.list(dest, images_only=False) if info.key.startswith(SHARD_PREFIX)]
    records: list[ImageRecord] = []
    for shard in found:
        lines = list(iter_records(shard))
        assert shard.rsplit("/", 1)[-1] == shard_name((r.source, r.etag) for r in lines)  # named by content
        records += lines
    return records


def comparable(records: list[ImageRecord]) -> dict[str, dict[str, Any]]:
    """source -> record without the time it was made; asserts one record per source."""
    counts = Counter(record.source for record in records)
    assert [source for source, n in counts.items() if n > 1] == []
    return {record.source: record.model_dump(mode="json", exclude={"scanned_at"}) for record in records}


def run_ray(
    source: str,
    dest: str,
    detector: str,
    options: ScanOptions,
    *,
    actors: int = 2,
    rate: float | None = None,
    env: dict[str, str] | None = None,
    stop: threading.Event | None = None,
    batch_size: int = 8,
) -> RunSummary:
    settings = DetectorSettings(max_attempts=2, rate_limit=rate)
    built = build_detector(detector, Storage(), settings)  # type: ignore[arg-type]
    run = RayRun(
        source=source,
        dest=dest,
        spec=DetectorSpec(detector, settings),  # type: ignore[arg-type]
        detector_info=built.info,
        billable=built.billable,
        options=options,
        ray_options=RayOptions(actors=actors, batch_size=batch_size, worker_env=env or {}),
    )
    return ray_scan(run, stop=stop)


def plain(source: str, manifest: Path, detector: str, options: ScanOptions) -> RunSummary:
    storage = Storage()
    built = build_detector(detector, storage, DetectorSettings(max_attempts=2))  # type: ignore[arg-type]
    return scan(source, str(manifest), built, storage, options)


def test_ray_records_equal_the_plain_scan_and_a_rerun_writes_nothing_new(
    fake_rekognition_s3: FakeRekognition, s3_client: S3Client, bucket: str, tmp_path: Path
) -> None:
    source = f"s3://{bucket}/raw/"
    upload(s3_client, bucket, every_fifth_is_a_bird(24))
    s3_client.put_object(Bucket=bucket, Key="raw/empty.jpg")  # a skip code travels too
    s3_client.put_object(Bucket=bucket, Key="raw/text.jpg", Body=b"not an image at all")
    storage = Storage()
    for detector in ("local", "rekognition"):
        expected = plain(source, tmp_path / f"{detector}.jsonl", detector, ScanOptions(BIRDS))
        dest = str(tmp_path / f"{detector}-shards") if detector == "local" else f"s3://{bucket}/shards/"
        fake_rekognition_s3.reset()
        summary = run_ray(source, dest, detector, ScanOptions(BIRDS))
        assert comparable(shard_records(storage, dest)) == comparable(
            list(iter_records(str(tmp_path / f"{detector}.jsonl")))
        )
        assert (summary.scanned, summary.hits, summary.skipped) == (26, expected.hits, 2)
        assert summary.billed == (24 if detector == "rekognition" else 0)
        assert fake_rekognition_s3.billed == summary.billed
        names = sorted(info.uri for info in storage.list(dest, images_only=False))
        again = run_ray(source, dest, detector, ScanOptions(BIRDS))
        assert (again.already_done, again.scanned, again.hits) == (26, 0, expected.hits)
        assert sorted(info.uri for info in storage.list(dest, images_only=False)) == names
    assert fake_rekognition_s3.billed == 24  # the rerun asked nothing

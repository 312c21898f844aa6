"""`labelsift scan --engine ray` on the session's local Ray cluster (fixtures_ray): real SeaweedFS,
the local Rekognition endpoint over HTTP, the offline model. Few tests, each doing several runs, so
the cluster's start-up is paid once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from bucket_images import BIRDS, bucket_with_copies, every_fifth_is_a_bird, upload
from fault_proxy import FaultProxy
from ray_records import comparable, plain, shard_records

from labelsift.cost import PriceTable
from labelsift.detectors.factory import DetectorSettings
from labelsift.distributed.driver import RayOptions, RayRun, ray_scan
from labelsift.errors import CannotProceed, UsageError
from labelsift.manifest import iter_records
from labelsift.models import RunSummary, StopReason
from labelsift.scan import ScanAborted, ScanOptions
from labelsift.storage import Storage, StorageError
from labelsift_testing.fake_rekognition import FakeRekognition
from labelsift_testing.s3_server import SeaweedS3Server

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.usefixtures("ray_cluster")


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
    gpus: float = 0.0,
    window: int = 20_000,
    storage: Storage | None = None,
) -> RunSummary:
    settings = DetectorSettings(max_attempts=2, rate_limit=rate)
    ray_options = RayOptions(
        actors=actors, batch_size=batch_size, worker_env=env or {}, gpus_per_actor=gpus, window=window
    )
    run = RayRun.for_detector(source, dest, detector, settings, options, ray_options)
    if storage is not None:  # the driver's own (listing, resume, the copies' shards)
        run.storage = storage
    return ray_scan(run, stop=stop)


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


def test_a_batch_whose_shard_write_fails_once_is_retried_with_no_duplicate_and_no_second_call(
    fake_rekognition_s3: FakeRekognition, s3_server: SeaweedS3Server, s3_client: S3Client, bucket: str
) -> None:
    upload(s3_client, bucket, every_fifth_is_a_bird(16))
    dest = f"s3://{bucket}/shards/"
    with FaultProxy(s3_server.endpoint_url) as proxy:
        # a client error botocore does not retry: the batch itself raises, and Ray runs it again
        rule = proxy.add(method="PUT", key=r"/shards/shard-", status=400, code="InvalidRequest", times=1)
        summary = run_ray(
            f"s3://{bucket}/raw/",
            dest,
            "rekognition",
            ScanOptions(BIRDS),
            env={"AWS_ENDPOINT_URL_S3": proxy.endpoint_url},
        )
    assert rule.fired == 1
    assert len(comparable(shard_records(Storage(), dest))) == 16
    assert (summary.scanned, summary.billed, fake_rekognition_s3.billed) == (16, 16, 16)
    assert set(fake_rekognition_s3.calls_by_image().values()) == {1}  # the retry asked nothing again


def test_max_images_target_and_budget_hold_across_actors(
    fake_rekognition_s3: FakeRekognition, s3_client: S3Client, bucket: str, tmp_path: Path
) -> None:
    source = f"s3://{bucket}/raw/"
    uris = upload(s3_client, bucket, every_fifth_is_a_bird(40))
    storage = Storage()
    fake_rekognition_s3.latency_s = 0.05

    capped = run_ray(
        source, str(tmp_path / "max"), "rekognition", ScanOptions(BIRDS, max_images=10, workers=2)
    )
    assert (capped.stopped, capped.listed, capped.scanned) == (StopReason.MAX_IMAGES, 10, 10)
    assert sorted(comparable(shard_records(storage, str(tmp_path / "max")))) == uris[:10]  # in source order

    fake_rekognition_s3.reset()
    fake_rekognition_s3.latency_s = 0.05
    target = run_ray(source, str(tmp_path / "target"), "rekognition", ScanOptions(BIRDS, target=2, workers=2))
    written = shard_records(storage, str(tmp_path / "target"))
    assert target.stopped is StopReason.TARGET and target.hits >= 2
    # only what was in flight when the second hit came: 2 actors x 2 threads, nothing else started
    assert target.billed == fake_rekognition_s3.billed == len(written) < 20
    assert target.after_stop <= 4

    fake_rekognition_s3.reset()
    prices = PriceTable(free_images_left=10)
    budget = run_ray(
        source, str(tmp_path / "budget"), "rekognition", ScanOptions(BIRDS, budget=0.001, prices=prices)
    )
    assert (budget.stopped, budget.billed, fake_rekognition_s3.billed) == (StopReason.BUDGET, 11, 11)
    assert budget.cost_usd == pytest.approx(0.001)
    assert len(shard_records(storage, str(tmp_path / "budget"))) == 11


def test_one_shared_rate_keeps_four_actors_under_the_account_quota(
    fake_rekognition_s3: FakeRekognition, s3_client: S3Client, bucket: str, tmp_path: Path
) -> None:
    source = f"s3://{bucket}/raw/"
    upload(s3_client, bucket, every_fifth_is_a_bird(48))
    fake_rekognition_s3.tps_quota = 8.0  # low enough that 4 free actors pass it even on a busy machine
    unlimited = run_ray(
        source, str(tmp_path / "free"), "rekognition", ScanOptions(BIRDS, workers=8), actors=4
    )
    assert fake_rekognition_s3.quota_rejections > 0  # the same four actors, without the shared rate
    fake_rekognition_s3.reset()
    fake_rekognition_s3.tps_quota = 8.0  # low enough that 4 free actors pass it even on a busy machine
    started = time.monotonic()
    shared = run_ray(
        source, str(tmp_path / "rate"), "rekognition", ScanOptions(BIRDS, workers=8), actors=4, rate=7.0
    )
    assert (fake_rekognition_s3.quota_rejections, fake_rekognition_s3.throttled) == (0, 0)
    assert (shared.scanned, shared.errors, fake_rekognition_s3.billed) == (48, 0, 48)
    assert time.monotonic() - started >= 47 / 7.0
    assert unlimited.scanned == 48


def test_patience_is_refused_and_gpus_the_cluster_lacks_are_named(
    s3_client: S3Client, bucket: str, tmp_path: Path
) -> None:
    upload(s3_client, bucket, ["dog"] * 2)
    with pytest.raises(UsageError, match="--patience is not supported with --engine ray"):
        run_ray(f"s3://{bucket}/raw/", str(tmp_path / "p"), "local", ScanOptions(BIRDS, patience=5))
    with pytest.raises(CannotProceed, match="--gpus-per-actor 1 asks for GPUs, but the Ray cluster has 0"):
        run_ray(f"s3://{bucket}/raw/", str(tmp_path / "g"), "local", ScanOptions(BIRDS), gpus=1.0)
    assert not (tmp_path / "p").exists()


def test_ctrl_c_keeps_every_finished_batch_and_the_rerun_pays_for_each_image_once(
    fake_rekognition_s3: FakeRekognition, s3_client: S3Client, bucket: str, ray_cluster: str, tmp_path: Path
) -> None:
    source, dest = f"s3://{bucket}/raw/", f"s3://{bucket}/shards/"
    upload(s3_client, bucket, every_fifth_is_a_bird(64))
    fake_rekognition_s3.latency_s = 0.25
    command = [
        sys.executable, "-m", "labelsift.cli", "scan", source, "-o", dest, "--engine", "ray",
        "--ray-address", ray_cluster, "--detector", "rekognition", "--workers", "2", "--label", "Bird",
    ]  # fmt: skip
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while fake_rekognition_s3.billed < 12 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 130, output
    assert "interrupted" in output
    first = shard_records(Storage(), dest)
    assert 12 <= len(first) < 64
    assert fake_rekognition_s3.billed == len(first)  # every image paid for is written
    fake_rekognition_s3.latency_s = 0.0
    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert len(comparable(shard_records(Storage(), dest))) == 64
    assert fake_rekognition_s3.calls_total == 64
    assert set(fake_rekognition_s3.calls_by_image().values()) == {1}


def test_duplicate_objects_are_billed_once_across_actors_and_windows(
    fake_rekognition_s3: FakeRekognition, s3_client: S3Client, bucket: str, tmp_path: Path
) -> None:
    """Five distinct images, each under three keys spread through the listing: Rekognition is
    asked five times, the other ten records name their first (`same_as`), as the plain scan's do;
    a window of 4 puts firsts and their copies in different pool runs."""
    keys = bucket_with_copies(s3_client, bucket)
    source = f"s3://{bucket}/pile/"
    expected = plain(source, tmp_path / "plain.jsonl", "rekognition", ScanOptions(BIRDS))
    assert (expected.billed, expected.duplicates) == (5, 10)
    fake_rekognition_s3.reset()
    dest = str(tmp_path / "shards")
    summary = run_ray(source, dest, "rekognition", ScanOptions(BIRDS), batch_size=2, window=4)
    assert fake_rekognition_s3.billed == 5
    assert set(fake_rekognition_s3.calls_by_image().values()) == {1}
    assert (summary.scanned, summary.billed, summary.duplicates, summary.hits) == (5, 5, 10, expected.hits)
    records = shard_records(Storage(), dest)
    want = list(iter_records(str(tmp_path / "plain.jsonl")))
    assert comparable(records) == comparable(want)  # same labels, same `same_as`, one record per key
    assert len(records) == len(keys)
    again = run_ray(source, dest, "rekognition", ScanOptions(BIRDS), batch_size=2, window=4)
    assert (again.already_done, again.scanned, again.duplicates, fake_rekognition_s3.billed) == (15, 0, 0, 5)


class DriverWritesFail(Storage):
    """The driver's storage, refusing every write (the actors write with their own)."""

    def write(self, uri: str, data: bytes) -> None:
        raise StorageError("AccessDenied", uri, f"{uri}: access denied (PutObject).")


def test_a_copies_shard_the_driver_cannot_write_stops_the_run_and_the_rerun_pays_nothing_again(
    fake_rekognition_s3: FakeRekognition, s3_client: S3Client, bucket: str, tmp_path: Path
) -> None:
    keys = bucket_with_copies(s3_client, bucket)
    source, dest = f"s3://{bucket}/pile/", str(tmp_path / "shards")
    with pytest.raises(ScanAborted, match=r"access denied") as stopped:
        run_ray(source, dest, "rekognition", ScanOptions(BIRDS), batch_size=2, storage=DriverWritesFail())
    assert "not written; a rerun writes them without paying again" in str(stopped.value)
    paid = fake_rekognition_s3.billed
    assert paid == len(comparable(shard_records(Storage(), dest)))  # every image paid for is written
    again = run_ray(source, dest, "rekognition", ScanOptions(BIRDS), batch_size=2)
    assert len(comparable(shard_records(Storage(), dest))) == len(keys)
    assert fake_rekognition_s3.billed == 5 and again.duplicates == len(keys) - paid - again.scanned

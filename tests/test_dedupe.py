"""Every image paid for once: identical objects are labelled once per run, their record reused.

Real S3 (SeaweedFS) and the local Rekognition endpoint; its call counter proves what was paid."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from bucket_images import SCENES, bucket_with_copies
from typer.testing import CliRunner

from labelsift.cli import app
from labelsift.dedupe import Duplicates, duplicate_record
from labelsift.detectors.rekognition import RekognitionDetector
from labelsift.manifest import iter_records
from labelsift.models import ImageRecord, RunSummary, ScanStatus
from labelsift.scan import ScanOptions, scan
from labelsift.select import Selection
from labelsift.storage import ObjectInfo, Storage
from labelsift_testing.fake_rekognition import FakeRekognition, make_image

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def _run(source: str, manifest: Path, **options: object) -> RunSummary:
    storage = Storage()
    detector = RekognitionDetector(storage=storage, max_attempts=int(str(options.pop("attempts", 5))))
    return scan(source, str(manifest), detector, storage, ScanOptions(**options))  # type: ignore[arg-type]


def _records(manifest: Path) -> dict[str, ImageRecord]:
    return {r.source: r for r in iter_records(str(manifest))}


def test_copies_in_s3_are_billed_once_and_reuse_the_labels(
    fake_rekognition_s3: FakeRekognition, s3_client: S3Client, bucket: str, tmp_path: Path
) -> None:
    keys = bucket_with_copies(s3_client, bucket)
    manifest = tmp_path / "m.jsonl"
    summary = _run(f"s3://{bucket}/pile/", manifest, selection=Selection(("bird",)), workers=8)
    assert fake_rekognition_s3.billed == len(SCENES)
    assert fake_rekognition_s3.calls_total == len(SCENES)
    assert summary.billed == len(SCENES) and summary.duplicates == len(keys) - len(SCENES)
    assert summary.labeled == len(keys) and summary.hits == 3
    records = _records(manifest)
    assert set(records) == {f"s3://{bucket}/{k}" for k in keys}
    firsts = {s: r for s, r in records.items() if r.same_as is None}
    assert len(firsts) == len(SCENES)
    for source, record in records.items():
        assert record.status is ScanStatus.LABELED
        if record.same_as is not None:
            first = firsts[record.same_as]
            assert record.labels == first.labels and record.width == first.width
            assert record.etag == first.etag and record.size == first.size and record.source == source
    # the line of a first has no same_as at all; a duplicate's names its first
    lines = manifest.read_text().splitlines()
    assert sum('"same_as"' in line for line in lines) == len(keys) - len(SCENES)
    # a rerun resumes: nothing is sent again
    again = _run(f"s3://{bucket}/pile/", manifest, workers=8)
    assert again.scanned == 0 and fake_rekognition_s3.calls_total == len(SCENES)


def test_a_run_stopped_halfway_then_rerun_pays_each_image_once(
    fake_rekognition_s3: FakeRekognition, s3_client: S3Client, bucket: str, tmp_path: Path
) -> None:
    keys = bucket_with_copies(s3_client, bucket)
    manifest = tmp_path / "m.jsonl"
    first = _run(f"s3://{bucket}/pile/", manifest, max_images=6, workers=4)
    assert first.scanned == 6 and fake_rekognition_s3.calls_total == 5  # keys 0-00…0-04, then 1-00 reused
    rest = _run(f"s3://{bucket}/pile/", manifest, workers=4)
    assert rest.scanned == len(keys) - 6 and rest.billed == 0 and rest.duplicates == len(keys) - 6
    assert fake_rekognition_s3.calls_total == len(SCENES)
    assert len(_records(manifest)) == len(keys)


def test_a_copy_whose_original_failed_is_labelled_itself(
    fake_rekognition_s3: FakeRekognition, s3_client: S3Client, bucket: str, tmp_path: Path
) -> None:
    body = make_image("bird", confidence=90.0, seed=1)
    for key in ("a/0.jpg", "a/1.jpg", "a/2.jpg"):
        s3_client.put_object(Bucket=bucket, Key=key, Body=body)
    fake_rekognition_s3.inject("InternalServerError")  # the first call fails, past every retry
    manifest = tmp_path / "m.jsonl"
    summary = _run(f"s3://{bucket}/a/", manifest, workers=1, attempts=1)
    records = _records(manifest)
    original = records[f"s3://{bucket}/a/0.jpg"]
    assert original.status is ScanStatus.ERROR
    relabelled = records[f"s3://{bucket}/a/1.jpg"]
    assert relabelled.status is ScanStatus.LABELED and relabelled.same_as is None
    assert records[f"s3://{bucket}/a/2.jpg"].same_as == relabelled.source
    assert fake_rekognition_s3.calls_total == 2 and summary.billed == 1 and summary.duplicates == 1
    retried = _run(f"s3://{bucket}/a/", manifest, retry_errors=True)
    assert retried.scanned == 1 and retried.billed == 0 and retried.duplicates == 1
    assert _records(manifest)[original.source].same_as == relabelled.source
    assert fake_rekognition_s3.calls_total == 2


def test_local_copies_found_by_content_hash_not_by_size(
    fake_rekognition: FakeRekognition, tmp_path: Path
) -> None:
    folder = tmp_path / "pile"
    (folder / "deep").mkdir(parents=True)
    bird = make_image("bird", confidence=90.0, seed=3)
    (folder / "a.jpg").write_bytes(bird)
    shutil.copy(folder / "a.jpg", folder / "deep" / "copy of a.jpg")
    same_size = bytearray(bird)
    same_size[-3] ^= 0xFF  # same length, other bytes (inside the JPEG's last scan data)
    (folder / "b.jpg").write_bytes(bytes(same_size))
    (folder / "dog.jpg").write_bytes(make_image("dog", confidence=90.0, seed=4))
    manifest = tmp_path / "m.jsonl"
    summary = _run(str(folder), manifest, workers=4)
    records = _records(manifest)
    assert len(records) == 4
    copies = [r for r in records.values() if r.same_as is not None]
    assert [(Path(r.source).name, Path(r.same_as or "").name) for r in copies] == [("copy of a.jpg", "a.jpg")]
    assert summary.duplicates == 1 and fake_rekognition.calls_total == 3


def test_multipart_etags_match_only_the_same_part_count_and_size(
    fake_rekognition_s3: FakeRekognition, s3_client: S3Client, bucket: str, tmp_path: Path
) -> None:
    seen = Duplicates()
    a = ObjectInfo("s3://b/a.jpg", "a.jpg", 100, "abc-2")
    assert seen.claim(a) is None
    assert seen.claim(ObjectInfo("s3://b/b.jpg", "b.jpg", 100, "abc-2")) == "s3://b/a.jpg"
    assert seen.claim(ObjectInfo("s3://b/c.jpg", "c.jpg", 100, "abc-3")) is None
    assert seen.claim(ObjectInfo("s3://b/d.jpg", "d.jpg", 101, "abc-2")) is None
    assert seen.claim(ObjectInfo("s3://other/e.jpg", "e.jpg", 100, "abc-2")) == "s3://b/a.jpg"
    seen.close()
    # real multipart uploads in the server: two with the same parts share an ETag, the one-part
    # upload of the same bytes has another (it is labelled too, never merged by mistake)
    body = make_image("bird", confidence=90.0, seed=9) + b"\0" * (6 << 20)
    for key in ("m/0.jpg", "m/1.jpg"):
        upload = s3_client.create_multipart_upload(Bucket=bucket, Key=key)
        parts = []
        for number, start in enumerate((0, 5 << 20), start=1):
            part = s3_client.upload_part(
                Bucket=bucket, Key=key, UploadId=upload["UploadId"], PartNumber=number,
                Body=body[start : start + (5 << 20)] if number == 1 else body[start:],
            )  # fmt: skip
            parts.append({"PartNumber": number, "ETag": part["ETag"]})
        s3_client.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload["UploadId"], MultipartUpload={"Parts": parts}
        )
    s3_client.put_object(Bucket=bucket, Key="m/2.jpg", Body=body)
    summary = _run(f"s3://{bucket}/m/", tmp_path / "m.jsonl", workers=2)
    records = _records(tmp_path / "m.jsonl")
    assert records[f"s3://{bucket}/m/0.jpg"].etag.endswith("-2")  # type: ignore[union-attr]
    assert records[f"s3://{bucket}/m/1.jpg"].same_as == f"s3://{bucket}/m/0.jpg"
    assert records[f"s3://{bucket}/m/2.jpg"].same_as is None
    assert summary.duplicates == 1 and fake_rekognition_s3.calls_total == 2


def test_duplicate_record_is_the_firsts_labels_under_its_own_name() -> None:
    first = ImageRecord.model_validate(
        {"source": "s3://b/a.jpg", "etag": "e", "size": 9, "width": 10, "height": 20, "status": "labeled",
         "detector": {"name": "rekognition"}, "labels": [{"name": "Bird", "confidence": 90}],
         "review": [{"label": "Bird", "accepted": True}]}
    )  # fmt: skip
    copy = duplicate_record(first, ObjectInfo("s3://c/x y.jpg", "x y.jpg", 9, "e", version_id="v1"))
    assert (copy.source, copy.same_as, copy.version_id, copy.review) == (
        "s3://c/x y.jpg",
        first.source,
        "v1",
        [],
    )
    assert copy.labels == first.labels and copy.width == 10
    assert '"same_as":"s3://b/a.jpg"' in copy.model_dump_json()
    assert "same_as" not in first.model_dump_json()


def test_estimate_counts_duplicates_and_the_money_saved(
    aws_env: dict[str, str], s3_client: S3Client, make_bucket: Callable[[], str]
) -> None:
    bucket = make_bucket()
    keys = bucket_with_copies(s3_client, bucket, copies=4)
    result = CliRunner().invoke(app, ["estimate", f"s3://{bucket}/"])
    assert result.exit_code == 0, result.output
    duplicates = len(keys) - len(SCENES)
    assert f"{len(keys)} images" in result.output
    assert f"{duplicates} duplicates" in result.output
    assert f"${duplicates * 0.001:,.2f} saved" in result.output
    assert f"rekognition: ${len(SCENES) * 0.001:,.2f} for a full scan" in result.output


def test_no_dedupe_labels_every_copy_itself(tmp_path: Path) -> None:
    folder = tmp_path / "pile"
    folder.mkdir()
    body = make_image("dog", confidence=90.0, seed=3)
    for name in ("a.jpg", "b.jpg"):
        (folder / name).write_bytes(body)
    for flag, copies in (("--dedupe", 1), ("--no-dedupe", 0)):
        manifest = tmp_path / f"{flag}.jsonl"
        command = ["scan", str(folder), "-o", str(manifest), "--detector", "local", flag]
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 0, result.output
        records = _records(manifest)
        assert len(records) == 2
        assert sum(r.same_as is not None for r in records.values()) == copies

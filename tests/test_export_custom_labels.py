from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

from manifest_builders import box, label, make_jpeg, record, write_manifest
from PIL import Image

from labelsift.exporters.custom_labels import export_custom_labels
from labelsift.select import Selection
from labelsift.storage import Storage

if TYPE_CHECKING:
    from collections.abc import Callable

    from mypy_boto3_s3 import S3Client


def _jpeg(width: int = 100, height: int = 80) -> bytes:
    data = io.BytesIO()
    Image.new("RGB", (width, height), (10, 200, 30)).save(data, "JPEG")
    return data.getvalue()


def _keys(client: S3Client, bucket: str) -> set[str]:
    """The keys of the bucket, without the exports' receipts."""
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    keys = {item["Key"] for page in pages for item in page.get("Contents", [])}
    return {k for k in keys if not k.endswith(".labelsift-receipt.jsonl")}


def _source_bucket(client: S3Client, bucket: str, manifest: Path) -> str:
    etags = {}
    for key in ("raw/birds/1.jpg", "raw/2.jpg", "raw/3.jpg", "raw/tiny.jpg", "raw/x.gif"):
        etags[f"s3://{bucket}/{key}"] = client.put_object(Bucket=bucket, Key=key, Body=_jpeg())["ETag"].strip(
            '"'
        )
    scanned = [
        record(f"s3://{bucket}/raw/birds/1.jpg", label("Bird", 95, parents=("Animal",))),
        record(f"s3://{bucket}/raw/2.jpg", label("Bird", 90), label("Dog", 92)),
        record(f"s3://{bucket}/raw/3.jpg", label("Dog", 30)),
        record(f"s3://{bucket}/raw/tiny.jpg", label("Bird", 99), width=32, height=32),
        record(f"s3://{bucket}/raw/x.gif", label("Bird", 99), fmt="GIF"),
    ]
    records = [r.model_copy(update={"etag": etags[r.source]}) for r in scanned]
    return write_manifest(manifest, records)


def test_copies_to_label_folders_server_side_once(
    tmp_path: Path, bucket: str, make_bucket: Callable[[], str], storage: Storage, s3_client: S3Client
) -> None:
    manifest = _source_bucket(s3_client, bucket, tmp_path / "m.jsonl")
    dest_bucket = make_bucket()
    dest = f"s3://{dest_bucket}/dataset"
    selection = Selection(("Bird", "Dog"))
    summary = export_custom_labels(manifest, dest, selection, storage=storage)
    expected = {
        f"dataset/Bird/{bucket}/raw/birds/1.jpg",
        f"dataset/Bird/{bucket}/raw/2.jpg",
        f"dataset/Dog/{bucket}/raw/2.jpg",  # an image matching two labels goes in both
    }
    assert _keys(s3_client, dest_bucket) == expected
    assert summary.copied == 3 and summary.already_there == 0
    assert summary.skipped == {"dimensions": 1, "format": 1}
    assert summary.per_label["Bird"].images == {"all": 2} and summary.per_label["Dog"].images == {"all": 1}

    again = export_custom_labels(manifest, dest, selection, storage=storage)
    assert again.copied == 0 and again.already_there == 3
    assert _keys(s3_client, dest_bucket) == expected

    # an object labelsift did not write (changed since) where a copy would go stops the export,
    # with --overwrite too (it replaces only what a receipt lists)
    import pytest

    from labelsift.exporters.owned import NameClash

    s3_client.put_object(
        Bucket=dest_bucket, Key=f"dataset/Dog/{bucket}/raw/2.jpg", Body=b"not the same object"
    )
    for overwrite in (False, True):
        with pytest.raises(NameClash, match=f"dataset/Dog/{bucket}/raw/2.jpg"):
            export_custom_labels(manifest, dest, selection, storage=storage, overwrite=overwrite)
    body = s3_client.get_object(Bucket=dest_bucket, Key=f"dataset/Dog/{bucket}/raw/2.jpg")["Body"].read()
    assert body == b"not the same object"


def test_dry_run_names_and_threshold(
    tmp_path: Path, bucket: str, make_bucket: Callable[[], str], storage: Storage, s3_client: S3Client
) -> None:
    manifest = _source_bucket(s3_client, bucket, tmp_path / "m.jsonl")
    dest_bucket = make_bucket()
    plan = export_custom_labels(
        manifest, f"s3://{dest_bucket}/ds", Selection(("Animal",)), storage=storage, dry_run=True
    )
    assert _keys(s3_client, dest_bucket) == set()
    assert [(p.source, p.destination) for p in plan.plan] == [
        (f"s3://{bucket}/raw/birds/1.jpg", f"s3://{dest_bucket}/ds/Animal/{bucket}/raw/birds/1.jpg")
    ]
    export_custom_labels(
        manifest,
        f"s3://{dest_bucket}/ds",
        Selection(("Dog",), threshold=25),
        storage=storage,
        names={"dog": "dogs"},
    )
    assert _keys(s3_client, dest_bucket) == {f"ds/dogs/{bucket}/raw/2.jpg", f"ds/dogs/{bucket}/raw/3.jpg"}


def test_local_sources_keep_their_path_under_the_source_root(tmp_path: Path) -> None:
    a = make_jpeg(tmp_path / "photos" / "2024" / "a.jpg", 100, 100)
    b = make_jpeg(tmp_path / "photos" / "2025" / "a.jpg", 100, 100)
    manifest = write_manifest(
        tmp_path / "m.jsonl",
        [record(str(a), label("Bird", 90, box(0, 0, 1, 1))), record(str(b), label("Bird", 90))],
    )
    out = tmp_path / "out"
    summary = export_custom_labels(
        manifest, str(out), Selection(("bird",)), storage=Storage(), source_root=str(tmp_path / "photos")
    )
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == [".labelsift-receipt.jsonl", "bird/2024/a.jpg", "bird/2025/a.jpg"]
    assert summary.copied == 2
    # without a source root: the absolute path under `_local/`, which depends on the source alone
    default = tmp_path / "default"
    export_custom_labels(manifest, str(default), Selection(("bird",)), storage=Storage())
    assert (default / "bird" / "_local" / str(a).lstrip("/")).is_file()


def test_annotation_exports_write_to_s3(
    tmp_path: Path, bucket: str, storage: Storage, s3_client: S3Client
) -> None:
    import json

    from labelsift.exporters.coco import export_coco
    from labelsift.exporters.groundtruth import export_groundtruth
    from labelsift.exporters.yolo import export_yolo

    s3_client.put_object(Bucket=bucket, Key="raw/a.jpg", Body=_jpeg(200, 100))
    manifest = write_manifest(
        tmp_path / "m.jsonl", [record(f"s3://{bucket}/raw/a.jpg", label("Bird", 90, box(0.1, 0.2, 0.3, 0.4)))]
    )
    selection = Selection(("Bird",))
    export_groundtruth(manifest, f"s3://{bucket}/gt/output.manifest", selection)
    export_coco(manifest, f"s3://{bucket}/coco", selection, storage=storage, copy_images=True, val_fraction=0)
    export_yolo(manifest, f"s3://{bucket}/yolo", selection, storage=storage, val_fraction=0)
    keys = _keys(s3_client, bucket)
    assert {"gt/output.manifest", "coco/annotations/instances_train.json", "yolo/data.yaml"} <= keys
    assert sum(k.startswith("coco/images/train/raw_a-") for k in keys) == 1
    assert sum(k.startswith("yolo/images/train/raw_a-") for k in keys) == 1
    gt = json.loads(s3_client.get_object(Bucket=bucket, Key="gt/output.manifest")["Body"].read())
    assert gt["bounding-box"]["annotations"] == [
        {"class_id": 0, "left": 20, "top": 20, "width": 60, "height": 40}
    ]
    coco = json.loads(
        s3_client.get_object(Bucket=bucket, Key="coco/annotations/instances_train.json")["Body"].read()
    )
    assert coco["annotations"][0]["bbox"] == [20.0, 20.0, 60.0, 40.0]


def test_an_s3_rerun_replaces_an_earlier_export_only_when_told(
    tmp_path: Path, bucket: str, storage: Storage, s3_client: S3Client
) -> None:
    import pytest

    from labelsift.exporters.groundtruth import export_groundtruth
    from labelsift.exporters.yolo import export_yolo
    from labelsift.storage import StorageError

    for name in ("a", "b"):
        s3_client.put_object(Bucket=bucket, Key=f"raw/{name}.jpg", Body=_jpeg(200, 100))
    manifest = write_manifest(
        tmp_path / "m.jsonl",
        [
            record(f"s3://{bucket}/raw/a.jpg", label("Bird", 90, box(0.1, 0.2, 0.3, 0.4))),
            record(f"s3://{bucket}/raw/b.jpg", label("Bird", 60, box(0.1, 0.2, 0.3, 0.4))),
        ],
    )
    dest = f"s3://{bucket}/yolo"
    export_yolo(manifest, dest, Selection(("Bird",)), storage=storage, val_fraction=0)
    first = _keys(s3_client, bucket)
    assert sum(k.startswith("yolo/labels/train/raw_b-") for k in first) == 1

    with pytest.raises(StorageError, match="already holds a YOLO export"):
        export_yolo(manifest, dest, Selection(("Bird",), threshold=80), storage=storage, val_fraction=0)
    assert _keys(s3_client, bucket) == first

    again = export_yolo(
        manifest, dest, Selection(("Bird",), threshold=80), storage=storage, val_fraction=0, overwrite=True
    )
    keys = {k for k in _keys(s3_client, bucket) if k.startswith("yolo/")}
    assert again.replaced == 1 + 1  # b's label file and image (a's and data.yaml are rewritten)
    assert {k.split("/")[1] for k in keys} == {"images", "labels", "data.yaml"}
    assert not any("raw_b-" in k for k in keys)
    assert sum("raw_a-" in k for k in keys) == 2  # a's image and label file

    gt = f"s3://{bucket}/gt/output.manifest"
    export_groundtruth(manifest, gt, Selection(("Bird",)))
    with pytest.raises(StorageError, match="already holds a Ground Truth export"):
        export_groundtruth(manifest, gt, Selection(("Bird",), threshold=80))
    export_groundtruth(manifest, gt, Selection(("Bird",), threshold=80), overwrite=True)
    lines = s3_client.get_object(Bucket=bucket, Key="gt/output.manifest")["Body"].read().splitlines()
    assert len(lines) == 1

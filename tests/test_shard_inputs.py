"""A folder or an `s3://` prefix of shards read as one manifest: merge, exports and the report."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from manifest_builders import box, label, make_jpeg, record
from typer.testing import CliRunner

from labelsift.cli import app
from labelsift.manifest import iter_records, merge, to_line, write_records
from labelsift.manifest.inputs import NoShards, expand_manifest_inputs, one_manifest
from labelsift.models import ImageRecord
from labelsift.report import build_report
from labelsift.storage import Storage

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _records(images: Path, count: int) -> list[ImageRecord]:
    out = []
    for i in range(count):
        source = make_jpeg(images / f"{i:03d}.jpg", 200, 100)
        found = label("Bird" if i % 2 else "Dog", 60 + i % 40, box(0.1, 0.1, 0.5, 0.5))
        out.append(record(str(source), found).model_copy(update={"scanned_at": NOW + timedelta(seconds=i)}))
    return out


def _shards(tmp_path: Path) -> tuple[Path, list[ImageRecord]]:
    """Three shards in a folder (one gzip, one in a subfolder) plus files that are not shards; the
    record of image 0 appears twice, the newer one in the shard that sorts first."""
    records = _records(tmp_path / "images", 12)
    folder = tmp_path / "shards"
    (folder / "sub").mkdir(parents=True)
    newer = records[0].model_copy(
        update={
            "labels": [label("Cat", 99.0, box(0.2, 0.2, 0.2, 0.2))],
            "scanned_at": NOW + timedelta(hours=1),
        }
    )
    write_records(str(folder / "a-batch.jsonl"), [newer, *records[8:]])
    write_records(str(folder / "b-batch.jsonl.gz"), records[:4])
    write_records(str(folder / "sub" / "c-batch.jsonl"), records[4:8])
    (folder / "notes.txt").write_text("not a shard\n")
    (folder / ".labelsift-partial.jsonl").write_text("{torn")  # a temporary name: not a shard
    return folder, [newer, *records[1:]]


def _effective(uri: str) -> dict[str, ImageRecord]:
    return {r.source: r for r in iter_records(uri)}


def test_expand_a_folder_names_its_shards_sorted(tmp_path: Path) -> None:
    folder, _ = _shards(tmp_path)
    assert expand_manifest_inputs(str(folder)) == [
        str(folder / "a-batch.jsonl"),
        str(folder / "b-batch.jsonl.gz"),
        str(folder / "sub" / "c-batch.jsonl"),
    ]
    assert expand_manifest_inputs(str(folder / "a-batch.jsonl")) == [str(folder / "a-batch.jsonl")]
    assert expand_manifest_inputs(str(tmp_path / "typo.jsonl")) == [str(tmp_path / "typo.jsonl")]
    (tmp_path / "empty").mkdir()
    with pytest.raises(NoShards, match="holding no manifest shard"):
        expand_manifest_inputs(str(tmp_path / "empty"))


def test_merge_of_a_folder_is_the_merge_of_its_shards(tmp_path: Path) -> None:
    folder, expected = _shards(tmp_path)
    result = CliRunner().invoke(app, ["merge", str(folder), "-o", str(tmp_path / "all.jsonl")])
    assert result.exit_code == 0, result.output
    assert "12 records" in result.output and "1 superseded" in result.output
    merged = _effective(str(tmp_path / "all.jsonl"))
    assert merged == {r.source: r for r in expected}
    assert merged[expected[0].source].labels[0].name == "Cat"  # the newest record, not the last shard's
    explicit = tmp_path / "explicit.jsonl"
    merge(expand_manifest_inputs(str(folder)), str(explicit))
    assert explicit.read_text() == (tmp_path / "all.jsonl").read_text()
    empty = tmp_path / "empty"
    empty.mkdir()
    refused = CliRunner().invoke(app, ["merge", str(empty), "-o", str(tmp_path / "none.jsonl")])
    assert refused.exit_code == 3 and "holding no manifest shard" in " ".join(refused.output.split())
    assert not (tmp_path / "none.jsonl").exists()
    inside = CliRunner().invoke(app, ["merge", str(folder), "-o", str(folder / "all.jsonl")])
    assert inside.exit_code == 2 and "read as shards" in " ".join(inside.output.split())


def test_exports_and_report_read_a_folder_as_one_manifest(tmp_path: Path) -> None:
    folder, expected = _shards(tmp_path)
    merged = tmp_path / "merged.jsonl"  # what `labelsift merge FOLDER -o merged.jsonl` writes
    merge([str(folder)], str(merged))
    assert _effective(str(merged)) == {r.source: r for r in expected}
    outputs = {}
    for name, manifest in (("folder", str(folder)), ("file", str(merged))):
        for fmt in ("coco", "yolo"):
            dest = tmp_path / f"{fmt}-{name}"
            args = ["export", fmt, manifest, str(dest), "-l", "Bird", "-l", "Cat", "--workers", "1"]
            result = CliRunner().invoke(app, args)
            assert result.exit_code == 0, result.output
        cl = tmp_path / f"cl-{name}"
        result = CliRunner().invoke(app, ["export", "custom-labels", manifest, str(cl), "-l", "Bird"])
        assert result.exit_code == 0, result.output
        coco = []
        for split in ("train", "val"):
            data = json.loads(
                (tmp_path / f"coco-{name}" / "annotations" / f"instances_{split}.json").read_text()
            )
            data.pop("info", None)
            coco.append(data)
        labels = sorted(
            p.relative_to(tmp_path / f"yolo-{name}").as_posix()
            for p in (tmp_path / f"yolo-{name}").rglob("*.txt")
        )
        copies = sorted(p.relative_to(cl).as_posix() for p in cl.rglob("*.jpg"))
        outputs[name] = (coco, labels, copies)
        report = build_report(manifest, ["Bird"], samples_per_band=0)
        assert report.tally.records == len(expected) and report.tally.manifest == manifest
    assert outputs["folder"] == outputs["file"]
    assert outputs["folder"][0][0]["annotations"] and outputs["folder"][2]  # something was exported


def test_an_s3_prefix_of_shards(
    aws_env: dict[str, str], s3_client: S3Client, make_bucket: Callable[[], str], tmp_path: Path
) -> None:
    bucket = make_bucket()
    records = _records(tmp_path / "images", 6)
    s3_client.put_object(
        Bucket=bucket, Key="run/shard-1.jsonl", Body="".join(map(to_line, records[:3])).encode()
    )
    s3_client.put_object(
        Bucket=bucket,
        Key="run/x/shard-2.jsonl.gz",
        Body=gzip.compress("".join(map(to_line, records[3:])).encode()),
    )
    s3_client.put_object(Bucket=bucket, Key="run/_SUCCESS", Body=b"")
    s3_client.put_object(Bucket=bucket, Key="runs-other/shard.jsonl", Body=to_line(records[0]).encode())
    expected = [f"s3://{bucket}/run/shard-1.jsonl", f"s3://{bucket}/run/x/shard-2.jsonl.gz"]
    assert expand_manifest_inputs(f"s3://{bucket}/run/") == expected
    assert expand_manifest_inputs(f"s3://{bucket}/run") == expected
    with pytest.raises(NoShards):
        expand_manifest_inputs(f"s3://{bucket}/nothing/")
    assert expand_manifest_inputs(f"s3://{bucket}/nothing") == [f"s3://{bucket}/nothing"]
    result = CliRunner().invoke(app, ["merge", f"s3://{bucket}/run/", "-o", str(tmp_path / "all.jsonl.gz")])
    assert result.exit_code == 0, result.output
    assert _effective(str(tmp_path / "all.jsonl.gz")) == {r.source: r for r in records}
    to_s3 = CliRunner().invoke(app, ["merge", f"s3://{bucket}/run/", "-o", f"s3://{bucket}/run/all.jsonl"])
    assert to_s3.exit_code == 2, to_s3.output
    with one_manifest(f"s3://{bucket}/run/", Storage()) as readable:
        assert _effective(readable) == {r.source: r for r in records}
        assert Path(readable).exists()
    assert not Path(readable).exists()  # the temporary merge is gone
    empty = CliRunner().invoke(
        app, ["export", "coco", f"s3://{bucket}/nothing/", str(tmp_path / "c"), "-l", "Bird"]
    )
    assert empty.exit_code == 3 and "holding no manifest shard" in " ".join(empty.output.split())

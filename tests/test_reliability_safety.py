"""Safety: destinations are never overwritten without --overwrite; secret-bearing URLs never recorded."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from typer.testing import CliRunner

from labelsift.cli import ExitCode, app
from labelsift.scan import UnsafeSource, check_source
from labelsift_testing.fake_rekognition import FakeRekognition, make_image

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

runner = CliRunner()
SIGNATURE = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
PRESIGNED = [
    f"https://bkt.s3.amazonaws.com/a.jpg?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F20261129"
    f"&X-Amz-Security-Token=FwoGZXIvYXdzEXAMPLE&X-Amz-Signature={SIGNATURE}",
    f"s3://bkt/a.jpg?X-Amz-Signature={SIGNATURE}&X-Amz-Credential=AKIA",
    f"https://bkt.s3.amazonaws.com/a.jpg?AWSAccessKeyId=AKIA&Signature={SIGNATURE}&Expires=1",
]


@pytest.mark.parametrize("source", PRESIGNED)
def test_a_presigned_url_is_refused_without_echoing_its_signature(source: str, tmp_path: Path) -> None:
    manifest = tmp_path / "m.jsonl"
    result = runner.invoke(app, ["scan", source, "-o", str(manifest)])
    assert result.exit_code == ExitCode.USAGE, result.output
    assert "presigned" in result.output and "Traceback" not in result.output
    assert SIGNATURE not in result.output and "FwoGZXIvYXdzEXAMPLE" not in result.output
    assert not manifest.exists()


def test_keys_with_a_question_mark_and_other_schemes() -> None:
    assert check_source("s3://bkt/names/what?.jpg") == "s3://bkt/names/what?.jpg"
    assert check_source("photos/what?.jpg") == "photos/what?.jpg"
    with pytest.raises(UnsafeSource, match="not https:// URLs"):
        check_source("https://example.com/a.jpg")


def test_filter_and_exports_never_replace_a_different_object_without_overwrite(
    fake_rekognition_s3: FakeRekognition,
    s3_client: S3Client,
    make_bucket: Callable[[], str],
    tmp_path: Path,
) -> None:
    raw, clean = make_bucket(), make_bucket()
    s3_client.put_object(Bucket=raw, Key="a.jpg", Body=make_image("bird", seed=1))
    theirs = b"someone else's file, not ours"
    s3_client.put_object(Bucket=clean, Key="Bird/a.jpg", Body=theirs)
    s3_client.put_object(Bucket=clean, Key=f"Bird/{raw}/a.jpg", Body=theirs)  # where the export copies
    local_dest = tmp_path / "dest"
    (local_dest / "Bird" / raw).mkdir(parents=True)
    (local_dest / "Bird" / raw / "a.jpg").write_bytes(theirs)
    manifest = tmp_path / "m.jsonl"

    def run(*args: str) -> str:
        result = runner.invoke(app, list(args))
        assert result.exit_code == ExitCode.OK, result.output
        return " ".join(result.output.split())

    refused = runner.invoke(app, ["filter", f"s3://{raw}/", f"s3://{clean}/", "-l", "Bird",
                                  "-d", "rekognition", "--manifest", str(manifest)])  # fmt: skip
    assert refused.exit_code == ExitCode.CANNOT_PROCEED, refused.output
    assert "--overwrite" in refused.output and "Traceback" not in refused.output
    # an export never replaces a file it did not write, with --overwrite neither (exit 3, named)
    for dest in (f"s3://{clean}/", str(local_dest)):
        for extra in ([], ["--overwrite"]):
            clash = runner.invoke(app, ["export", "custom-labels", str(manifest), dest, "-l", "Bird", *extra])
            assert clash.exit_code == ExitCode.CANNOT_PROCEED, clash.output
            assert "a.jpg is in the way" in " ".join(clash.output.split())
    assert s3_client.get_object(Bucket=clean, Key=f"Bird/{raw}/a.jpg")["Body"].read() == theirs
    assert (local_dest / "Bird" / raw / "a.jpg").read_bytes() == theirs
    run("filter", f"s3://{raw}/", f"s3://{clean}/", "-l", "Bird", "-d", "rekognition",
        "--manifest", str(manifest), "--overwrite")  # fmt: skip
    assert s3_client.get_object(Bucket=clean, Key="Bird/a.jpg")["Body"].read() != theirs


@pytest.mark.parametrize(
    ("fmt", "marker"),
    [("coco", "annotations/instances_train.json"), ("yolo", "data.yaml"), ("voc", "labels.txt"),
     ("groundtruth", ""), ("review", "")],
)  # fmt: skip
def test_an_earlier_export_is_replaced_only_with_overwrite(tmp_path: Path, fmt: str, marker: str) -> None:
    from manifest_builders import box, label, make_jpeg, record, write_manifest

    image = str(make_jpeg(tmp_path / "src" / "a.jpg", 200, 100))
    if fmt == "groundtruth":  # Ground Truth reads images from S3 only
        image = "s3://bucket/a.jpg"
    manifest = write_manifest(
        tmp_path / "m.jsonl", [record(image, label("Bird", 70, box(0.1, 0.1, 0.5, 0.5)))]
    )
    dest = tmp_path / "out" if marker else tmp_path / "out.manifest"
    extra = ["--band", "60:80", "--allow-local"] if fmt == "review" else []
    args = ["export", fmt, manifest, str(dest), "-l", "Bird", *extra]
    assert runner.invoke(app, args).exit_code == ExitCode.OK
    written = dest / marker if marker else dest
    before = written.read_bytes()

    refused = runner.invoke(app, args)
    assert refused.exit_code == ExitCode.CANNOT_PROCEED, refused.output
    assert "--overwrite" in refused.output and "Traceback" not in refused.output
    assert written.read_bytes() == before

    again = runner.invoke(app, [*args, "--overwrite"])
    assert again.exit_code == ExitCode.OK, again.output
    assert written.exists()
    receipt = dest / ".labelsift-receipt.jsonl" if marker else Path(f"{dest}.labelsift-receipt.jsonl")
    assert receipt.exists()

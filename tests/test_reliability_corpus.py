"""The bad-input corpus through `labelsift scan` and the exporters, end to end.

- Rekognition: the corpus in a bucket on the real S3 server, read through the fault proxy (which
  stages what SeaweedFS cannot: `InvalidObjectState` for the GLACIER object, a delete and a
  replacement between listing and labelling), labelled by the local Rekognition endpoint.
- Local model: the same corpus copied to a folder.

Each case must end as `corpus.CASES` says (status, reason code), the run must exit 0, every manifest
line must validate against `schemas/image-record.schema.json`, and the exports (custom-labels to a
folder and to S3, COCO, YOLO) must exit 0 and never write outside their destination.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import jsonschema
import pytest
from corpus import CASES, REPLACEMENT_SCENE, UNSTORABLE_KEYS, Case, replacement_image, write_folder
from fault_proxy import FaultProxy
from typer.testing import CliRunner

from labelsift.cli import app
from labelsift.manifest import iter_lines, iter_records
from labelsift.models import ImageRecord, ScanStatus
from labelsift_testing.fake_rekognition import FakeRekognition
from labelsift_testing.s3_server import SeaweedS3Server

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((ROOT / "schemas" / "image-record.schema.json").read_text())
runner = CliRunner()


def validate_manifest(manifest: Path) -> list[dict[str, object]]:
    """Every line is JSON, valid against the committed schema and the model; returns the lines."""
    lines = []
    for _, text in iter_lines(str(manifest)):
        value = json.loads(text)
        jsonschema.validate(value, SCHEMA)
        ImageRecord.model_validate(value)
        lines.append(value)
    assert manifest.read_bytes().endswith(b"\n")
    return lines


def files_under(root: Path) -> set[Path]:
    return {Path(folder, name) for folder, _, names in os.walk(root) for name in names}


def assert_inside(written: set[Path], dest: Path) -> None:
    base = dest.resolve()
    for path in written:
        resolved = path.resolve()
        assert resolved == base or base in resolved.parents, f"{path} is outside {dest}"


def invoke(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def export_everywhere(manifest: Path, label: str, out: Path, s3_dest: str | None, unsafe: int = 0) -> None:
    """custom-labels (folder and S3), COCO and YOLO; nothing written outside each folder."""
    before = files_under(out.parent)
    dests = {name: out / name for name in ("custom-labels", "coco", "yolo")}
    shown = " ".join(
        invoke("export", "custom-labels", str(manifest), str(dests["custom-labels"]), "-l", label).split()
    )
    if unsafe:
        assert f"unsafe_key {unsafe}" in shown, shown
    invoke("export", "coco", str(manifest), str(dests["coco"]), "-l", label, "--copy-images")
    invoke("export", "yolo", str(manifest), str(dests["yolo"]), "-l", label)
    if s3_dest is not None:
        invoke("export", "custom-labels", str(manifest), s3_dest, "-l", label)
    written = files_under(out.parent) - before
    for dest in dests.values():
        assert files_under(dest), f"nothing exported to {dest}"
    assert written == set().union(*(files_under(dest) for dest in dests.values()))
    for dest in dests.values():
        assert_inside(files_under(dest), dest)


def outcomes(records: list[ImageRecord], key_of: Callable[[str], str]) -> dict[str, ImageRecord]:
    return {key_of(record.source): record for record in records}


def mismatches(cases: list[Case], by_key: dict[str, ImageRecord], detector: str) -> list[str]:
    """Every case whose record differs from the table (all of them at once, to read in one go)."""
    wrong = []
    for case in cases:
        record = by_key.get(case.key)
        if record is None:
            wrong.append(f"{case.key}: no record")
            continue
        expected = case.rekognition if detector == "rekognition" else case.local
        got = (record.status.value, record.error.code if record.error else None)
        if got != expected:
            wrong.append(f"{case.key}: {got} != {expected} ({record.error})")
        if record.error is not None and len(record.error.message) < 20:
            wrong.append(f"{case.key}: message too short: {record.error.message!r}")
        if case.displayed is not None and (record.width, record.height) != case.displayed:
            wrong.append(f"{case.key}: displayed {(record.width, record.height)} != {case.displayed}")
    return wrong


@pytest.fixture
def proxy(
    s3_server: SeaweedS3Server, aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[FaultProxy]:
    """labelsift's S3 traffic goes through the fault proxy; the Rekognition endpoint reads S3 directly."""
    with FaultProxy(s3_server.endpoint_url) as running:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", running.endpoint_url)
        yield running


def upload_corpus(client: S3Client, bucket: str) -> None:
    for case in CASES:
        extra = {"StorageClass": case.storage_class} if case.storage_class else {}
        client.put_object(Bucket=bucket, Key=case.key, Body=case.make(), **extra)  # type: ignore[arg-type]


def stage_s3_faults(proxy: FaultProxy, client: S3Client, bucket: str) -> None:
    """What SeaweedFS cannot do itself, staged at the HTTP boundary (see docs/reliability.md)."""
    glacier = [case.key for case in CASES if case.storage_class == "GLACIER"]
    for key in glacier:
        proxy.add(
            method="GET",
            key=f"^{bucket}/{key}$",
            status=403,
            code="InvalidObjectState",
            message="The operation is not valid for the object's storage class",
        )

    def delete() -> None:
        client.delete_object(Bucket=bucket, Key="race/vanished.jpg")

    def replace() -> None:
        client.put_object(Bucket=bucket, Key="race/changed.jpg", Body=replacement_image())

    proxy.add(method="GET", key=f"^{bucket}/race/vanished.jpg$", times=1, before=delete)
    proxy.add(method="GET", key=f"^{bucket}/race/changed.jpg$", times=1, before=replace)


def test_corpus_with_rekognition_on_s3_then_every_export(
    fake_rekognition_s3: FakeRekognition,
    proxy: FaultProxy,
    s3_client: S3Client,
    make_bucket: Callable[[], str],
    tmp_path: Path,
) -> None:
    bucket, dest_bucket = make_bucket(), make_bucket()
    upload_corpus(s3_client, bucket)
    stage_s3_faults(proxy, s3_client, bucket)
    manifest = tmp_path / "work" / "m.jsonl"
    output = invoke("scan", f"s3://{bucket}/", "-o", str(manifest), "-d", "rekognition", "-l", "Bird",
                    "--workers", "4")  # fmt: skip
    assert "scan summary" in output
    lines = validate_manifest(manifest)
    records = list(iter_records(str(manifest)))
    assert len(lines) == len(records) == len(CASES)
    by_key = outcomes(records, lambda source: source.split("/", 3)[3])
    assert mismatches(list(CASES), by_key, "rekognition") == []
    changed = by_key["race/changed.jpg"]
    assert changed.etag == s3_client.head_object(Bucket=bucket, Key="race/changed.jpg")["ETag"].strip('"')
    assert REPLACEMENT_SCENE.capitalize() in {label.name for label in changed.labels}
    # Nothing refused before a call was paid for, and no image was sent twice.
    billed = fake_rekognition_s3.calls_by_image(billed_only=True)
    assert all(calls == 1 for calls in billed.values()), billed
    assert fake_rekognition_s3.billed == sum(1 for r in records if r.status is ScanStatus.LABELED)
    # A rerun pays nothing and changes nothing.
    proxy.clear()
    fake_rekognition_s3.reset()
    invoke("scan", f"s3://{bucket}/", "-o", str(manifest), "-d", "rekognition", "-l", "Bird")
    assert fake_rekognition_s3.billed == 0
    # Stage the keys the server cannot store, as a manifest a real bucket would have produced.
    bird = by_key["names/with space.jpg"]
    with manifest.open("a", encoding="utf-8") as stream:
        for key in UNSTORABLE_KEYS:
            stream.write(bird.model_copy(update={"source": f"s3://{bucket}/{key}"}).model_dump_json() + "\n")
    validate_manifest(manifest)
    export_everywhere(
        manifest, "Bird", tmp_path / "exports", f"s3://{dest_bucket}/custom", unsafe=len(UNSTORABLE_KEYS)
    )
    copied = {o["Key"] for o in s3_client.list_objects_v2(Bucket=dest_bucket).get("Contents", [])}
    for case in CASES:
        if case.rekognition == ("labeled", None) and case.key.startswith("names/"):
            assert f"custom/Bird/{bucket}/{case.key}" in copied, sorted(copied)  # <label>/<bucket>/<key>


def test_corpus_with_the_local_model_on_a_folder_then_every_export(tmp_path: Path) -> None:
    folder = tmp_path / "corpus"
    write_folder(folder)
    manifest = tmp_path / "work" / "m.jsonl"
    invoke("scan", str(folder), "-o", str(manifest), "--workers", "2")
    lines = validate_manifest(manifest)
    records = list(iter_records(str(manifest)))
    local_cases = [case for case in CASES if not case.s3_only]
    assert len(lines) == len(records) == len(local_cases)
    by_key = outcomes(records, lambda source: Path(source).relative_to(folder).as_posix())
    assert mismatches(local_cases, by_key, "local") == []
    seen = [label.name for r in records for label in r.labels if label.instances]
    assert seen, "the local model found no boxes at all"
    top = max(set(seen), key=seen.count)
    export_everywhere(manifest, top, tmp_path / "exports", None)

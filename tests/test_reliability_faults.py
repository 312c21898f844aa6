"""One test per fault class: what the user sees, the exit code, and that nothing leaks or is lost.

Rekognition faults come from the local endpoint's own fault injection (real HTTP, botocore's real
retries with shortened sleeps). S3 faults come from `fault_proxy.FaultProxy`, a real HTTP hop in
front of SeaweedFS, because SeaweedFS cannot be told to throttle or fail.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from fault_proxy import FaultProxy
from fixtures_s3 import READ_AND_LIST, READ_ONLY
from typer.testing import CliRunner, Result

from labelsift.cli import ExitCode, app
from labelsift.detectors.rekognition import RekognitionDetector
from labelsift.manifest import ManifestError, iter_records, write_records
from labelsift.models import DetectorInfo, ImageRecord, Instance, Label, ScanStatus
from labelsift.scan import ScanOptions, scan
from labelsift.storage import Storage
from labelsift_testing.fake_rekognition import FakeRekognition, make_image
from labelsift_testing.s3_server import SeaweedS3Server

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

runner = CliRunner()
WRONG_SECRET = "wrong-Secret-Zq9x7"


def cli(*args: str) -> Result:
    return runner.invoke(app, list(args))


def assert_one_paragraph(result: Result, code: ExitCode, *names: str) -> str:
    """The documented exit code; an `error:` paragraph naming each of `names`; no traceback."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    text = " ".join(result.output.split())
    assert "error:" in text
    for name in names:
        assert name in text, (name, text)
    return text


def upload(client: S3Client, bucket: str, count: int, prefix: str = "raw/") -> list[str]:
    for i in range(count):
        client.put_object(Bucket=bucket, Key=f"{prefix}{i:03d}.jpg", Body=make_image("bird", seed=i))
    return [f"s3://{bucket}/{prefix}{i:03d}.jpg" for i in range(count)]


def images_folder(tmp_path: Path, count: int = 3) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(count):
        (folder / f"{i}.jpg").write_bytes(make_image("dog", seed=i))
    return folder


@pytest.fixture
def proxy(
    s3_server: SeaweedS3Server, aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[FaultProxy]:
    with FaultProxy(s3_server.endpoint_url) as running:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", running.endpoint_url)
        yield running


# ---- Rekognition ---------------------------------------------------------------------------


def test_throttling_storm_records_errors_and_retry_errors_finishes_without_paying_twice(
    fake_rekognition_s3: FakeRekognition, s3_client: S3Client, bucket: str, tmp_path: Path
) -> None:
    uris = upload(s3_client, bucket, 12)
    manifest = tmp_path / "m.jsonl"
    scan_args = ["scan", f"s3://{bucket}/", "-o", str(manifest), "-d", "rekognition", "--max-attempts", "2"]
    fake_rekognition_s3.throttle_rate = 1.0
    storm = cli(*scan_args, "--workers", "4")
    assert storm.exit_code == ExitCode.OK, storm.output
    records = list(iter_records(str(manifest)))
    assert {(r.status, r.error.code if r.error else None) for r in records} == {
        (ScanStatus.ERROR, "ThrottlingException")
    }
    assert all(
        r.error and r.source in r.error.message and "--retry-errors" in r.error.message for r in records
    )
    shown = " ".join(storm.output.split())
    assert "ThrottlingException: 12 images" in shown and "--retry-errors" in shown
    assert fake_rekognition_s3.billed == 0
    fake_rekognition_s3.reset()
    calm = cli(*scan_args, "--retry-errors")
    assert calm.exit_code == ExitCode.OK, calm.output
    assert {r.source for r in iter_records(str(manifest)) if r.status is ScanStatus.LABELED} == set(uris)
    assert fake_rekognition_s3.billed == 12
    assert set(fake_rekognition_s3.calls_by_image(billed_only=True).values()) == {1}


def test_5xx_is_retried_and_a_persistent_one_is_an_error_per_image(
    fake_rekognition_s3: FakeRekognition, s3_client: S3Client, bucket: str, tmp_path: Path
) -> None:
    upload(s3_client, bucket, 6)
    fake_rekognition_s3.inject("InternalServerError", "InternalServerError")
    transient = cli("scan", f"s3://{bucket}/", "-o", str(tmp_path / "a.jsonl"), "-d", "rekognition")
    assert transient.exit_code == ExitCode.OK, transient.output
    assert all(r.status is ScanStatus.LABELED for r in iter_records(str(tmp_path / "a.jsonl")))
    fake_rekognition_s3.reset()
    fake_rekognition_s3.error_rate = 1.0
    manifest = tmp_path / "b.jsonl"
    result = cli("scan", f"s3://{bucket}/", "-o", str(manifest), "-d", "rekognition", "--max-attempts", "2")
    assert result.exit_code == ExitCode.OK, result.output
    codes = {r.error.code for r in iter_records(str(manifest)) if r.error}
    assert codes == {"InternalServerError"}
    assert "InternalServerError: 6 images" in " ".join(result.output.split())


def test_read_timeout_is_an_error_counted_as_possibly_billed(
    fake_rekognition: FakeRekognition, tmp_path: Path
) -> None:
    folder = images_folder(tmp_path, 2)
    fake_rekognition.latency_s = 0.6
    detector = RekognitionDetector(storage=Storage(), max_attempts=1, read_timeout=0.2)
    manifest = tmp_path / "m.jsonl"
    summary = scan(str(folder), str(manifest), detector, Storage(), ScanOptions(workers=2))
    records = list(iter_records(str(manifest)))
    assert {r.error.code for r in records if r.error} == {"Timeout"}
    assert all(r.error and "--retry-errors" in r.error.message for r in records)
    assert (summary.errors, summary.billed) == (2, 2)  # the service may have answered after we gave up
    time.sleep(0.8)  # let the endpoint finish its late answers here, not in the next test's output


@pytest.fixture
def resetting_endpoint() -> Iterator[str]:
    """A TCP server that accepts every connection and closes it at once (a connection reset)."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            connection.recv(65536)
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(5)
    server.close()


def test_connection_reset_by_rekognition_is_an_error_per_image(
    fake_rekognition: FakeRekognition,
    resetting_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_REKOGNITION", resetting_endpoint)
    folder = images_folder(tmp_path, 2)
    manifest = tmp_path / "m.jsonl"
    result = cli("scan", str(folder), "-o", str(manifest), "-d", "rekognition", "--max-attempts", "2")
    assert result.exit_code == ExitCode.OK, result.output
    records = list(iter_records(str(manifest)))
    assert {r.error.code for r in records if r.error} == {"ConnectionClosed"}
    assert "--retry-errors" in " ".join(result.output.split())


def test_an_unreachable_endpoint_stops_the_run_after_n_errors_in_a_row(
    fake_rekognition: FakeRekognition,
    resetting_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    folder = images_folder(tmp_path, 40)
    manifest = tmp_path / "m.jsonl"
    scan_args = ["scan", str(folder), "-o", str(manifest), "-d", "rekognition", "--workers", "2"]
    monkeypatch.setenv("AWS_ENDPOINT_URL_REKOGNITION", resetting_endpoint)
    down = cli(*scan_args, "--max-attempts", "1", "--max-errors-in-row", "5")
    text = assert_one_paragraph(down, ExitCode.CANNOT_PROCEED, "5 images in a row failed", "ConnectionClosed")
    assert "--retry-errors" in text
    failed = list(iter_records(str(manifest)))
    assert 5 <= len(failed) <= 5 + 2  # the five, and at most the requests in flight
    assert {r.status for r in failed} == {ScanStatus.ERROR}

    monkeypatch.setenv("AWS_ENDPOINT_URL_REKOGNITION", fake_rekognition.endpoint_url)
    back = cli(*scan_args, "--retry-errors")
    assert back.exit_code == ExitCode.OK, back.output
    assert {r.status for r in iter_records(str(manifest))} == {ScanStatus.LABELED}
    assert len(list(iter_records(str(manifest)))) == 40


def test_wrong_or_expired_credentials_for_rekognition_stop_the_run(
    fake_rekognition: FakeRekognition, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    folder = images_folder(tmp_path, 4)
    manifest = tmp_path / "m.jsonl"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", WRONG_SECRET)
    wrong = cli("scan", str(folder), "-o", str(manifest), "-d", "rekognition")
    text = assert_one_paragraph(wrong, ExitCode.CANNOT_PROCEED, "InvalidSignatureException", "credentials")
    assert WRONG_SECRET not in text and WRONG_SECRET not in manifest.read_text()
    assert fake_rekognition.billed == 0
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    fake_rekognition.expire_credentials("testing")
    expired = cli("scan", str(folder), "-o", str(manifest), "-d", "rekognition")
    assert_one_paragraph(expired, ExitCode.CANNOT_PROCEED, "ExpiredTokenException", "refresh")
    fake_rekognition.add_credentials("testing", "testing")
    assert not list(iter_records(str(manifest)))  # a fatal fault records nothing per image


def test_the_secret_key_never_shows_even_with_debug_logs(
    fake_rekognition: FakeRekognition, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = "s3cr3t-Never-Print-Me-0123456789"
    fake_rekognition.add_credentials("AKIDLEAKCHECK", secret)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDLEAKCHECK")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    folder = images_folder(tmp_path, 2)
    manifest = tmp_path / "m.jsonl"
    command = [sys.executable, "-m", "labelsift.cli", "--debug", "scan", str(folder), "-o", str(manifest),
               "-d", "rekognition"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env=os.environ, timeout=120)
    assert result.returncode == ExitCode.OK, result.stderr
    assert "x-amz-date" in result.stderr.lower() or "authorization" in result.stderr.lower()  # logs were on
    assert "AKIDLEAKCHECK" in result.stderr  # the access key id may show; the secret never
    assert secret not in result.stdout + result.stderr and secret not in manifest.read_text()


# ---- S3 ------------------------------------------------------------------------------------


def test_s3_slowdown_on_list_is_retried_and_a_persistent_one_stops_with_exit_3(
    fake_rekognition_s3: FakeRekognition, proxy: FaultProxy, s3_client: S3Client, bucket: str, tmp_path: Path
) -> None:
    upload(s3_client, bucket, 3)
    manifest = tmp_path / "m.jsonl"
    proxy.add(method="GET", query="list-type=2", times=2)
    retried = cli("scan", f"s3://{bucket}/", "-o", str(manifest), "-d", "rekognition")
    assert retried.exit_code == ExitCode.OK, retried.output
    assert len(list(iter_records(str(manifest)))) == 3
    proxy.clear()
    proxy.add(method="GET", query="list-type=2")
    stuck = cli("scan", f"s3://{bucket}/", "-o", str(tmp_path / "n.jsonl"), "-d", "rekognition")
    assert_one_paragraph(stuck, ExitCode.CANNOT_PROCEED, f"s3://{bucket}/", "throttling", "workers")


def test_s3_5xx_on_read_is_an_error_per_image_and_retry_errors_recovers(
    fake_rekognition_s3: FakeRekognition, proxy: FaultProxy, s3_client: S3Client, bucket: str, tmp_path: Path
) -> None:
    uris = upload(s3_client, bucket, 4)
    manifest = tmp_path / "m.jsonl"
    proxy.add(method="GET", key=f"^{bucket}/raw/", status=500, code="InternalError", message="We failed")
    result = cli("scan", f"s3://{bucket}/", "-o", str(manifest), "-d", "rekognition")
    assert result.exit_code == ExitCode.OK, result.output
    records = list(iter_records(str(manifest)))
    assert {(r.status, r.error.code if r.error else None) for r in records} == {
        (ScanStatus.ERROR, "Unavailable")
    }
    assert all(r.error and r.source in r.error.message for r in records)
    proxy.clear()
    again = cli("scan", f"s3://{bucket}/", "-o", str(manifest), "-d", "rekognition", "--retry-errors")
    assert again.exit_code == ExitCode.OK, again.output
    assert {r.source for r in iter_records(str(manifest)) if r.status is ScanStatus.LABELED} == set(uris)


def bird_manifest(path: Path, uris: list[str]) -> Path:
    box = Instance(left=0.1, top=0.1, width=0.5, height=0.5, confidence=95.0)
    write_records(
        str(path),
        (
            ImageRecord(
                source=uri,
                etag="e",
                size=1000,
                width=320,
                height=240,
                format="JPEG",
                status=ScanStatus.LABELED,
                detector=DetectorInfo(name="rekognition"),
                labels=[Label(name="Bird", confidence=95.0, instances=[box])],
            )
            for uri in uris
        ),
    )
    return path


def test_s3_slowdown_on_copy_skips_those_images_with_the_reason(
    fast_retries: float,
    proxy: FaultProxy,
    s3_client: S3Client,
    make_bucket: Callable[[], str],
    tmp_path: Path,
) -> None:
    source, dest = make_bucket(), make_bucket()
    uris = upload(s3_client, source, 3)
    manifest = bird_manifest(tmp_path / "m.jsonl", uris)
    proxy.add(method="PUT", key=f"^{dest}/")
    result = cli("export", "custom-labels", str(manifest), f"s3://{dest}/set", "-l", "Bird")
    assert result.exit_code == ExitCode.OK, result.output
    text = " ".join(result.output.split())
    assert "SlowDown 3" in text and uris[0] in text
    assert not s3_client.list_objects_v2(Bucket=dest).get("Contents")
    proxy.clear()
    again = cli("export", "custom-labels", str(manifest), f"s3://{dest}/set", "-l", "Bird")
    assert again.exit_code == ExitCode.OK, again.output
    assert len(s3_client.list_objects_v2(Bucket=dest)["Contents"]) == 3 + 1  # and the receipt


def test_wrong_secret_against_the_s3_server_is_invalid_credentials(
    fake_rekognition_s3: FakeRekognition,
    s3_client: S3Client,
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    upload(s3_client, bucket, 2)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", WRONG_SECRET)
    manifest = tmp_path / "m.jsonl"
    result = cli("scan", f"s3://{bucket}/", "-o", str(manifest), "-d", "rekognition")
    text = assert_one_paragraph(result, ExitCode.CANNOT_PROCEED, f"s3://{bucket}", "AWS_SECRET_ACCESS_KEY")
    assert WRONG_SECRET not in text
    assert not manifest.exists() or WRONG_SECRET not in manifest.read_text()
    debug = cli("--debug", "scan", f"s3://{bucket}/", "-o", str(manifest), "-d", "rekognition")
    assert debug.exit_code == ExitCode.CANNOT_PROCEED  # --debug adds a traceback, never changes the code
    assert "Traceback" in debug.output and "StorageError" in debug.output
    assert WRONG_SECRET not in debug.output


def test_a_missing_bucket_as_source_or_destination_is_exit_3(
    fake_rekognition_s3: FakeRekognition, s3_client: S3Client, bucket: str, tmp_path: Path
) -> None:
    missing = "no-such-bucket-labelsift"
    scan_result = cli("scan", f"s3://{missing}/x/", "-o", str(tmp_path / "m.jsonl"), "-d", "rekognition")
    assert_one_paragraph(scan_result, ExitCode.CANNOT_PROCEED, missing, "does not exist")
    manifest = bird_manifest(tmp_path / "b.jsonl", upload(s3_client, bucket, 2))
    export = cli("export", "custom-labels", str(manifest), f"s3://{missing}/set", "-l", "Bird")
    assert_one_paragraph(export, ExitCode.CANNOT_PROCEED, missing, "does not exist")


def test_access_denied_on_the_destination_stops_the_export_with_exit_3(
    fast_retries: float,
    s3_client: S3Client,
    make_bucket: Callable[[], str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    source, dest = make_bucket(), make_bucket()
    manifest = bird_manifest(tmp_path / "m.jsonl", upload(s3_client, source, 3))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", READ_ONLY.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", READ_ONLY.secret_key)
    result = cli("export", "custom-labels", str(manifest), f"s3://{dest}/set", "-l", "Bird")
    # it stops at its first look at the destination (what is there, before writing anything)
    text = assert_one_paragraph(result, ExitCode.CANNOT_PROCEED, f"s3://{dest}/set", "access denied")
    assert READ_ONLY.secret_key not in text
    assert not s3_client.list_objects_v2(Bucket=dest).get("Contents")


def test_a_denied_delete_stops_an_overwrite_before_it_writes(
    fast_retries: float, s3_client: S3Client, bucket: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    manifest = bird_manifest(tmp_path / "m.jsonl", upload(s3_client, bucket, 2))
    dest = f"s3://{bucket}/yolo"
    assert cli("export", "yolo", str(manifest), dest, "-l", "Bird").exit_code == ExitCode.OK
    before = {item["Key"] for item in s3_client.list_objects_v2(Bucket=bucket, Prefix="yolo/")["Contents"]}
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", READ_AND_LIST.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", READ_AND_LIST.secret_key)
    result = cli("export", "yolo", str(manifest), dest, "-l", "Bird", "--overwrite")
    # it stops at its first write (the images are reused: the same versions); nothing was deleted first
    text = assert_one_paragraph(result, ExitCode.CANNOT_PROCEED, f"{dest}/labels/", "access denied")
    assert READ_AND_LIST.secret_key not in text
    after = {item["Key"] for item in s3_client.list_objects_v2(Bucket=bucket, Prefix="yolo/")["Contents"]}
    assert after == before  # the earlier export is whole


@pytest.mark.parametrize(
    "command",
    [
        ["export", "coco", "{missing}", "{out}"],
        ["export", "groundtruth", "{missing}", "{out}/gt.manifest"],
        ["export", "custom-labels", "{missing}", "{out}"],
        ["export", "review", "{missing}", "{out}/queue.manifest"],
    ],
)
def test_an_export_from_a_missing_manifest_says_so(tmp_path: Path, command: list[str]) -> None:
    missing = str(tmp_path / "typo.jsonl")  # read as empty, it would export nothing and exit 0
    args = [part.format(missing=missing, out=tmp_path / "out") for part in command]
    result = cli(*args, "--label", "Bird")
    assert_one_paragraph(result, ExitCode.CANNOT_PROCEED, "typo.jsonl", "no such file")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.json"))


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_manifest_line_that_is_not_utf8_is_named(tmp_path: Path, workers: str) -> None:
    """Saved in Latin-1 by an editor: the line is named (exit 4). With workers, a worker's byte
    span holds it (the exporter reads the first 2,000 records itself)."""
    manifest = bird_manifest(tmp_path / "m.jsonl", [f"s3://raw/{i:05d}.jpg" for i in range(2_500)])
    lines = manifest.read_bytes().split(b"\n")
    lines[2_299] = lines[2_299].replace(b'"Bird"', b'"Bird \xe9t\xe9"')
    manifest.write_bytes(b"\n".join(lines))
    result = cli("export", "coco", str(manifest), str(tmp_path / "out"), "-l", "Bird", "--workers", workers,
                 "--no-copy-images")  # fmt: skip
    assert_one_paragraph(result, ExitCode.BAD_MANIFEST, "m.jsonl, line 2300", "not UTF-8", "0xE9")
    with pytest.raises(ManifestError, match="line 2300: not UTF-8"):
        list(iter_records(str(manifest)))


def test_ctrl_c_in_a_custom_labels_export_says_rerun_and_the_rerun_copies_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    uris = []
    for i in range(4):
        (photos / f"{i}.jpg").write_bytes(make_image("bird", seed=i))
        uris.append(str(photos / f"{i}.jpg"))
    manifest = str(bird_manifest(tmp_path / "m.jsonl", uris))
    dest = tmp_path / "out"
    real_copy = Storage.copy
    copies: list[str] = []

    def copy_until_ctrl_c(self: Storage, src: str, dst: str, *, overwrite: bool = False) -> bool:
        copies.append(src)
        if len(copies) == 3:
            raise KeyboardInterrupt
        return real_copy(self, src, dst, overwrite=overwrite)

    monkeypatch.setattr(Storage, "copy", copy_until_ctrl_c)
    stopped = cli("export", "custom-labels", manifest, str(dest), "-l", "Bird")
    assert stopped.exit_code == ExitCode.INTERRUPTED, stopped.output
    text = " ".join(stopped.output.split())
    assert "rerun the same command" in text and "--overwrite" not in text
    assert list(dest.rglob("*.jpg")) == []  # a local export appears whole or not at all
    monkeypatch.setattr(Storage, "copy", real_copy)
    again = cli("export", "custom-labels", manifest, str(dest), "-l", "Bird")
    assert again.exit_code == ExitCode.OK, again.output
    assert sorted(p.name for p in dest.rglob("*.jpg")) == ["0.jpg", "1.jpg", "2.jpg", "3.jpg"]

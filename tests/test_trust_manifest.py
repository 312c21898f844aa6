"""Issue #14, manifests: compressed manifests grow whole, merge never destroys its input, one writer
per manifest, manifest URIs parsed once, and manifest faults end with their documented code.

Every test goes through the command line (typer's runner in process, or `python -m labelsift.cli`
as a real subprocess where two processes or a signal are involved) with real files, real gzip, the
real S3 server and the local Rekognition endpoint (its call log is the bill).
"""

from __future__ import annotations

import gzip
import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from manifest_cli import cli, said, scan_args, scan_holding, subprocess_cli
from typer.testing import Result

from labelsift.cli import ExitCode
from labelsift.manifest import iter_raw, iter_records, write_records
from labelsift.models import DetectorInfo, ImageRecord, Label, ScanStatus, VerdictEntry
from labelsift_testing.fake_rekognition import FakeRekognition, make_image

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

DETECTOR = DetectorInfo(name="rekognition", model_version="3.0")


def check(result: Result, code: ExitCode, *names: str) -> str:
    """The documented exit code, no traceback, and every one of `names` in the message."""
    text = said(result)
    assert result.exit_code == code, text
    assert "Traceback" not in text and "unexpected" not in text, text
    unwrapped = "".join(text.split())  # the console wraps long paths anywhere
    for name in names:
        assert "".join(name.split()) in unwrapped, (name, text)
    return text


def images(folder: Path, count: int, scene: str = "bird", first: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(first, first + count):
        (folder / f"{i:03d}.jpg").write_bytes(make_image(scene, seed=i))
    return folder


def record(i: int, *, label: str = "Bird") -> ImageRecord:
    return ImageRecord(
        source=f"s3://raw/birds/{i:06d}.jpg",
        etag=f"e{i}",
        size=1000,
        width=640,
        height=480,
        format="JPEG",
        status=ScanStatus.LABELED,
        detector=DETECTOR,
        labels=[Label(name=label, confidence=90.0)],
    )


def gzip_ok(path: Path) -> bool:
    return subprocess.run(["gzip", "-t", str(path)], capture_output=True).returncode == 0


# ---- finding 1: compressed manifests are first class ---------------------------------------


def test_scanning_into_a_merged_gz_manifest_appends_gzip_and_every_reader_still_reads_it(
    fake_rekognition: FakeRekognition, tmp_path: Path
) -> None:
    first = images(tmp_path / "a", 3)
    assert cli(*scan_args(first, tmp_path / "m.jsonl")).exit_code == 0
    merged = tmp_path / "all.jsonl.gz"
    assert cli("merge", str(tmp_path / "m.jsonl"), "-o", str(merged)).exit_code == 0  # the README's
    second = images(tmp_path / "b", 2, first=10)
    result = cli(*scan_args(second, merged))
    assert result.exit_code == 0, said(result)
    assert "torn" not in said(result)
    assert gzip_ok(merged)
    assert len(gzip.decompress(merged.read_bytes()).splitlines()) == 5
    exported = cli("export", "coco", str(merged), str(tmp_path / "coco"), "-l", "Bird")
    assert exported.exit_code == 0, said(exported)
    splits = (tmp_path / "coco" / "annotations").glob("instances_*.json")
    assert sum(len(json.loads(path.read_text())["images"]) for path in splits) == 5
    # a rerun resumes from the .gz: nothing is sent again
    billed = fake_rekognition.billed
    assert cli(*scan_args(second, merged)).exit_code == 0
    assert fake_rekognition.billed == billed == 5


def test_import_review_verdicts_on_a_gz_manifest_keep_it_gzip(tmp_path: Path) -> None:
    manifest = tmp_path / "m.jsonl.gz"
    write_records(str(manifest), [record(i) for i in range(3)])
    answers = tmp_path / "output.manifest"
    lines = [
        {
            "source-ref": f"s3://raw/birds/{i:06d}.jpg",
            "bird": 0,
            "bird-metadata": {"type": "groundtruth/image-classification", "class-name": "yes"},
        }
        for i in range(3)
    ]
    answers.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = cli("import-review", str(manifest), str(answers), "--label", "Bird")
    assert result.exit_code == 0, said(result)
    assert gzip_ok(manifest)
    verdicts = [e for e in iter_raw(str(manifest)) if isinstance(e, VerdictEntry)]
    assert len(verdicts) == 3 and all(v.verdict.accepted for v in verdicts)


def test_a_torn_gzip_member_is_exit_4_for_readers_and_cut_whole_by_the_next_scan(
    fake_rekognition: FakeRekognition, tmp_path: Path
) -> None:
    folder = images(tmp_path / "src", 4)
    manifest = tmp_path / "m.jsonl.gz"
    assert cli(*scan_args(folder, manifest, "--max-images", "3")).exit_code == 0
    whole = manifest.read_bytes()
    last = gzip.decompress(whole).splitlines()[-1]
    torn = gzip.compress(b'{"source":"' + str(folder / "003.jpg").encode() + b'","etag":"x"}\n')
    manifest.write_bytes(whole + torn[: len(torn) // 2])  # a kill in the middle of an append
    # readers: a bad-manifest error that names the last whole record, not "unexpected EOFError"
    result = cli("export", "coco", str(manifest), str(tmp_path / "coco"), "-l", "Bird")
    text = check(result, ExitCode.BAD_MANIFEST, str(manifest), "after line 3", json.loads(last)["source"])
    assert "torn gzip member" in text and "Rerun that scan" in text
    # the next scan cuts the torn member at its boundary (never inside compressed bytes) and goes on
    result = cli(*scan_args(folder, manifest))
    assert result.exit_code == 0, said(result)
    assert gzip_ok(manifest)
    assert manifest.read_bytes().startswith(whole)
    assert len({r.source for r in iter_records(str(manifest))}) == 4
    assert fake_rekognition.billed == 4


def test_import_review_refuses_answers_that_are_the_manifest_itself(tmp_path: Path) -> None:
    manifest = tmp_path / "m.jsonl"
    write_records(str(manifest), [record(1)])
    before = manifest.read_bytes()
    check(cli("import-review", str(manifest), str(manifest)), ExitCode.USAGE, "one of the inputs")
    assert manifest.read_bytes() == before


def test_a_gz_manifest_cut_short_is_refused_by_readers_and_writers_and_left_as_it_was(
    fake_rekognition: FakeRekognition, tmp_path: Path
) -> None:
    manifest = tmp_path / "downloaded.jsonl.gz"
    write_records(str(manifest), [record(i) for i in range(2000)])
    cut = manifest.read_bytes()[: manifest.stat().st_size // 2]  # a download that stopped halfway
    manifest.write_bytes(cut)
    for args in (
        ["export", "coco", str(manifest), str(tmp_path / "coco"), "-l", "Bird"],
        ["export", "custom-labels", str(manifest), str(tmp_path / "cl"), "-l", "Bird"],
        ["merge", str(manifest), "-o", str(tmp_path / "fixed.jsonl")],
        scan_args(images(tmp_path / "src", 1), manifest),
    ):
        check(cli(*args), ExitCode.BAD_MANIFEST, str(manifest), "ends early after line", "gzip -dc")
    assert manifest.read_bytes() == cut  # nothing cut off, nothing appended
    assert fake_rekognition.calls_total == 0
    assert not (tmp_path / "fixed.jsonl").exists()


def test_a_gz_manifest_that_is_not_gzip_or_has_plain_text_appended_is_refused_and_kept(
    fake_rekognition: FakeRekognition, tmp_path: Path
) -> None:
    plain = tmp_path / "plain.jsonl.gz"
    plain.write_text(record(1).model_dump_json() + "\n")
    spoiled = tmp_path / "spoiled.jsonl.gz"  # what appending used to do: plain JSON on gzip bytes
    write_records(str(spoiled), [record(i) for i in range(200)])
    spoiled.write_bytes(spoiled.read_bytes() + record(7).model_dump_json().encode() + b"\n")
    folder = images(tmp_path / "src", 1)
    for manifest, words in ((plain, ["not gzip", "plain.jsonl"]), (spoiled, ["damaged", "gzip -dc"])):
        before = manifest.read_bytes()
        for args in (
            ["export", "coco", str(manifest), str(tmp_path / "coco"), "-l", "Bird"],
            scan_args(folder, manifest),
        ):
            check(cli(*args), ExitCode.BAD_MANIFEST, str(manifest), *words)
        assert manifest.read_bytes() == before
    assert fake_rekognition.calls_total == 0


def test_appending_to_other_compressions_is_refused_cleanly(
    fake_rekognition: FakeRekognition, tmp_path: Path
) -> None:
    manifest = tmp_path / "m.jsonl.bz2"
    write_records(str(manifest), [record(1)])
    before = manifest.read_bytes()
    check(cli(*scan_args(images(tmp_path / "src", 1), manifest)), ExitCode.USAGE, ".bz2", ".jsonl.gz")
    assert manifest.read_bytes() == before


# ---- finding 2: merge never destroys its input ----------------------------------------------


def test_merge_refuses_an_output_that_is_one_of_its_inputs_before_reading_anything(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    write_records(str(a), [record(i) for i in range(3)])
    write_records(str(b), [record(i) for i in range(3, 5)])
    before = a.read_bytes()
    (tmp_path / "link.jsonl").symlink_to(a)
    os.link(a, tmp_path / "hard.jsonl")
    for output in (a, tmp_path / "link.jsonl", tmp_path / "hard.jsonl"):
        result = cli("merge", str(a), str(b), "-o", str(output), "--overwrite")
        check(result, ExitCode.USAGE, str(output), "one of the inputs")
        assert a.read_bytes() == before


def test_merge_needs_overwrite_to_replace_an_existing_file(tmp_path: Path) -> None:
    a = tmp_path / "a.jsonl"
    write_records(str(a), [record(i) for i in range(3)])
    existing = tmp_path / "all.jsonl"
    existing.write_text("my own notes\n")
    check(cli("merge", str(a), "-o", str(existing)), ExitCode.CANNOT_PROCEED, str(existing), "--overwrite")
    assert existing.read_text() == "my own notes\n"
    result = cli("merge", str(a), "-o", str(existing), "--overwrite")
    assert result.exit_code == 0, said(result)
    assert [r.source for r in iter_records(str(existing))] == [record(i).source for i in range(3)]
    assert not list(tmp_path.glob(".*partial")) and not list(tmp_path.glob("*.lock"))


def test_a_failed_merge_leaves_the_earlier_output_untouched(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.jsonl", tmp_path / "bad.jsonl"
    write_records(str(good), [record(i) for i in range(3000)])
    bad.write_text(record(9999).model_dump_json() + "\n{not json\n")
    fresh = tmp_path / "new.jsonl"
    check(cli("merge", str(good), str(bad), "-o", str(fresh)), ExitCode.BAD_MANIFEST, "line 2")
    assert not fresh.exists()  # not 3,000 records that look like a whole manifest
    existing = tmp_path / "all.jsonl.gz"
    write_records(str(existing), [record(1)])
    before = existing.read_bytes()
    result = cli("merge", str(good), str(bad), "-o", str(existing), "--overwrite")
    check(result, ExitCode.BAD_MANIFEST, "line 2")
    assert existing.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["all.jsonl.gz", "bad.jsonl", "good.jsonl"]


def test_ctrl_c_in_the_middle_of_a_merge_leaves_the_earlier_output_untouched(tmp_path: Path) -> None:
    shard = tmp_path / "big.jsonl"
    line = record(0).model_dump_json()
    with shard.open("w") as stream:
        for i in range(300_000):
            stream.write(line.replace("000000.jpg", f"{i:06d}.jpg") + "\n")
    output = tmp_path / "all.jsonl"
    write_records(str(output), [record(1)])
    before = output.read_bytes()
    process = subprocess.Popen(
        subprocess_cli("merge", str(shard), "-o", str(output), "--overwrite"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip

    def writing() -> bool:  # a temporary file beside it, or (written in place) the output changed
        return len(list(tmp_path.iterdir())) > 2 or output.read_bytes() != before

    deadline = time.monotonic() + 60
    while not writing() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert writing(), "the merge never started writing"
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == ExitCode.INTERRUPTED, stdout + stderr
    assert output.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["all.jsonl", "big.jsonl"]


def test_merge_to_s3_uploads_whole_and_a_failed_one_uploads_nothing(
    aws_env: dict[str, str], s3_client: S3Client, bucket: str, tmp_path: Path
) -> None:
    a = tmp_path / "a.jsonl"
    write_records(str(a), [record(i) for i in range(3)])
    bad = tmp_path / "bad.jsonl"
    bad.write_text(record(7).model_dump_json() + "\n{not json\n")
    target = f"s3://{bucket}/published/all.jsonl.gz"
    check(cli("merge", str(a), str(bad), "-o", target), ExitCode.BAD_MANIFEST, "line 2")
    assert "Contents" not in s3_client.list_objects_v2(Bucket=bucket)
    result = cli("merge", str(a), "-o", target)
    assert result.exit_code == 0, said(result)
    body = s3_client.get_object(Bucket=bucket, Key="published/all.jsonl.gz")["Body"].read()
    assert len(gzip.decompress(body).splitlines()) == 3
    check(cli("merge", str(a), "-o", target), ExitCode.CANNOT_PROCEED, target, "--overwrite")
    check(cli("merge", target, str(a), "-o", target, "--overwrite"), ExitCode.USAGE, "one of the inputs")
    missing = f"s3://{bucket}/published/typo.jsonl"
    text = check(cli("merge", missing, "-o", str(tmp_path / "x.jsonl")), ExitCode.CANNOT_PROCEED, missing)
    assert "no such manifest" in text and "None" not in text
    back = tmp_path / "back.jsonl"
    assert cli("merge", target, "-o", str(back)).exit_code == 0
    assert len(list(iter_records(str(back)))) == 3


# ---- finding 5: one writer per manifest -----------------------------------------------------


def test_a_second_scan_on_a_manifest_in_use_stops_at_once_naming_the_holder(
    fake_rekognition: FakeRekognition, tmp_path: Path
) -> None:
    folder = images(tmp_path / "src", 12)
    manifest = tmp_path / "c.jsonl"
    fake_rekognition.latency_s = 0.6
    first = scan_holding(folder, manifest)
    try:
        started = time.monotonic()
        second = subprocess.run(
            subprocess_cli(*scan_args(folder, manifest)), capture_output=True, text=True, timeout=60
        )
        assert second.returncode == ExitCode.CANNOT_PROCEED, said(second)
        text = said(second)
        assert "in use" in text and f"pid {first.pid}" in text and "labelsift scan" in text, text
        assert "Traceback" not in text
        assert time.monotonic() - started < 15
        (tmp_path / "link.jsonl").symlink_to(manifest)  # another name for the same manifest
        check(cli(*scan_args(folder, tmp_path / "link.jsonl")), ExitCode.CANNOT_PROCEED, "in use")
        # nor may a merge replace it meanwhile (the scan would go on writing a file nobody sees)
        other = tmp_path / "other.jsonl"
        write_records(str(other), [record(1)])
        merged = subprocess.run(
            subprocess_cli("merge", str(other), "-o", str(manifest), "--overwrite"),
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert merged.returncode == ExitCode.CANNOT_PROCEED, said(merged)
        assert f"pid {first.pid}" in said(merged)
    finally:
        first.wait(timeout=120)
    assert first.returncode == 0
    assert fake_rekognition.billed == 12  # the second scan paid for nothing
    assert max(fake_rekognition.calls_by_image(billed_only=True).values()) == 1
    assert len([r.source for r in iter_records(str(manifest))]) == 12
    assert not (tmp_path / "c.jsonl.lock").exists()


def test_two_scans_started_at_the_same_instant_pay_once(
    fake_rekognition: FakeRekognition, tmp_path: Path
) -> None:
    folder = images(tmp_path / "src", 8)
    manifest = tmp_path / "c.jsonl"
    fake_rekognition.latency_s = 0.05
    command = subprocess_cli(*scan_args(folder, manifest, "--workers", "4"))
    processes = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    results = [(p.wait(timeout=120), said_process(p)) for p in processes]
    codes = sorted(code for code, _ in results)
    assert codes == [0, ExitCode.CANNOT_PROCEED], results
    assert fake_rekognition.billed == 8  # nothing paid twice
    assert max(fake_rekognition.calls_by_image(billed_only=True).values()) == 1
    assert len(list(iter_records(str(manifest)))) == 8


def said_process(process: subprocess.Popen[str]) -> str:
    stdout, stderr = process.communicate()
    return " ".join((stdout + stderr).split())


def test_a_sigkilled_scan_leaves_no_lock_behind(fake_rekognition: FakeRekognition, tmp_path: Path) -> None:
    folder = images(tmp_path / "src", 10)
    manifest = tmp_path / "c.jsonl"
    fake_rekognition.latency_s = 0.2
    first = scan_holding(folder, manifest, 2, quiet=True)
    first.send_signal(signal.SIGKILL)
    first.wait()
    fake_rekognition.latency_s = 0.0
    result = cli(*scan_args(folder, manifest))
    assert result.exit_code == 0, said(result)
    assert len(list(iter_records(str(manifest)))) == 10


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_review_holds_the_manifest_and_appends_gzip_verdicts(
    fake_rekognition: FakeRekognition, tmp_path: Path
) -> None:
    manifest = tmp_path / "m.jsonl.gz"
    uncertain = record(1).model_copy(update={"labels": [Label(name="Bird", confidence=60.0)]})
    write_records(str(manifest), [uncertain, record(2)])
    review = subprocess.Popen(
        subprocess_cli("review", str(manifest), "-l", "Bird", "--port", str(free_port())),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert review.stdout is not None
        url = None
        while url is None and (line := review.stdout.readline()):
            url = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert url is not None, review.stderr.read() if review.stderr else ""
        request = urllib.request.Request(
            url.group(0) + "api/verdict",
            data=json.dumps({"id": 0, "accepted": False}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert answer.status == 200
        scan = cli(*scan_args(images(tmp_path / "src", 1), manifest))
        check(scan, ExitCode.CANNOT_PROCEED, "in use", f"pid {review.pid}", "labelsift review")
        assert fake_rekognition.calls_total == 0
    finally:
        review.send_signal(signal.SIGINT)
        review.communicate(timeout=30)
    assert gzip_ok(manifest)
    verdicts = [e for e in iter_raw(str(manifest)) if isinstance(e, VerdictEntry)]
    assert [(v.source, v.verdict.accepted) for v in verdicts] == [(uncertain.source, False)]
    assert not (tmp_path / "m.jsonl.gz.lock").exists()


# ---- finding 6: an S3 manifest for a command that appends -----------------------------------


@pytest.mark.parametrize(
    "command",
    [
        lambda m, src: scan_args(src, m),
        lambda m, src: ["filter", str(src), "out", "-l", "Bird", "-o", m],
        lambda m, src: ["review", m, "-l", "Bird"],
        lambda m, src: ["import-review", m, "answers.manifest"],
    ],
    ids=["scan", "filter", "review", "import-review"],
)
def test_an_s3_manifest_for_an_appending_command_is_exit_2_and_writes_no_local_s3_folder(
    command: Callable[[str, Path], list[str]],
    fake_rekognition: FakeRekognition,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    folder = images(tmp_path / "src", 1)
    result = cli(*command("s3://bucket/m.jsonl", folder))
    check(result, ExitCode.USAGE, "s3://bucket/m.jsonl", "labelsift merge")
    assert "None" not in said(result)
    assert not (tmp_path / "s3:").exists()
    assert fake_rekognition.calls_total == 0


# ---- finding 12: manifest faults get their documented code ----------------------------------


def test_a_manifest_that_is_a_folder_is_exit_3_naming_it(tmp_path: Path) -> None:
    folder = tmp_path / "m.jsonl"
    folder.mkdir()
    for args in (
        ["export", "coco", str(folder), str(tmp_path / "coco"), "-l", "Bird"],
        ["export", "yolo", str(folder), str(tmp_path / "yolo"), "-l", "Bird", "--workers", "2"],
        ["export", "custom-labels", str(folder), str(tmp_path / "cl"), "-l", "Bird"],
        ["merge", str(folder), "-o", str(tmp_path / "all.jsonl")],
        ["review", str(folder), "-l", "Bird"],
    ):
        check(cli(*args), ExitCode.CANNOT_PROCEED, str(folder), "folder")


def test_an_https_manifest_is_exit_2_without_an_install_hint(tmp_path: Path) -> None:
    url = "https://example.com/m.jsonl"
    for args in (
        ["export", "coco", url, str(tmp_path / "coco"), "-l", "Bird"],
        ["merge", url, "-o", str(tmp_path / "all.jsonl")],
    ):
        text = check(cli(*args), ExitCode.USAGE, url, "s3://bucket/key")
        assert "pip install" not in text


def test_an_unreachable_s3_endpoint_for_a_manifest_is_exit_3_naming_bucket_and_endpoint(
    aws_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    uri = "s3://some-bucket/m.jsonl"
    for args in (
        ["export", "coco", uri, str(tmp_path / "coco"), "-l", "Bird"],
        ["merge", uri, "-o", str(tmp_path / "all.jsonl")],
    ):
        check(cli(*args), ExitCode.CANNOT_PROCEED, "s3://some-bucket", "AWS_ENDPOINT_URL_S3")


def test_a_non_json_line_stops_custom_labels_with_its_line_number(tmp_path: Path) -> None:
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(record(1).model_dump_json() + "\n" + "{this is not json\n")
    result = cli("export", "custom-labels", str(manifest), str(tmp_path / "cl"), "-l", "Bird")
    check(result, ExitCode.BAD_MANIFEST, str(manifest), "line 2", "not JSON")


def zstd_missing() -> bool:
    try:
        import backports.zstd  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        return True
    return False


@pytest.mark.skipif(not zstd_missing(), reason="this Python reads .zst")
def test_a_compression_this_python_cannot_read_or_write_is_exit_2(tmp_path: Path) -> None:
    manifest = tmp_path / "m.jsonl.zst"
    manifest.write_bytes(b"\x28\xb5\x2f\xfd" + b"\0" * 16)
    check(cli("merge", str(manifest), "-o", str(tmp_path / "x.jsonl")), ExitCode.USAGE, ".zst", "Decompress")
    good = tmp_path / "good.jsonl"
    write_records(str(good), [record(1)])
    check(cli("merge", str(good), "-o", str(tmp_path / "out.jsonl.zst")), ExitCode.USAGE, ".zst")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.jsonl", "m.jsonl.zst"]

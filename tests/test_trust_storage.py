"""Issue #14, storage part: content identity of copies, no secret in output, listings that never
die of one entry, canonical local sources, and a hint when a source lists nothing.

Every test goes through the command line where the behaviour is user-visible, against the real
S3 server fixture, real files and real processes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from manifest_builders import label, record, write_manifest
from typer.testing import CliRunner, Result

from labelsift.cli import ExitCode, app
from labelsift.manifest import iter_records
from labelsift.redact import REDACTED, redact
from labelsift.storage import Storage, StorageError
from labelsift.uri import NotCanonical, parse, parse_recorded
from labelsift_testing.fake_rekognition import FakeRekognition, make_image

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

runner = CliRunner()
MiB = 1024**2
SESSION_TOKEN = "IQoJb3JpZ2luX2VjSessionTokenNeverPrintMe0123456789abcdefSECRET"


def cli(*args: str) -> Result:
    return runner.invoke(app, list(args))


def images_folder(root: Path, count: int = 2, name: str = "images") -> Path:
    folder = root / name
    folder.mkdir()
    for i in range(count):
        (folder / f"{i}.jpg").write_bytes(make_image("bird", seed=i))
    return folder


# ---- finding 8: no secret anywhere -----------------------------------------------------------


def test_debug_logs_never_show_the_session_token_or_a_signature(
    fake_rekognition: FakeRekognition, tmp_path: Path
) -> None:
    folder = images_folder(tmp_path)
    env = {**os.environ, "AWS_SESSION_TOKEN": SESSION_TOKEN}
    manifest = tmp_path / "m.jsonl"
    command = [sys.executable, "-m", "labelsift.cli", "--debug", "scan", str(folder), "-o",
               str(manifest), "-d", "rekognition", "--workers", "2"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=180)
    shown = result.stdout + result.stderr
    assert result.returncode == ExitCode.OK, shown[-3000:]
    assert "x-amz-security-token" in shown.lower()  # the debug logs were on and name the header
    assert SESSION_TOKEN not in shown
    assert SESSION_TOKEN[:24] not in shown  # not even a wrapped or cut piece of it
    assert "Signature=" not in shown.replace("Signature=[redacted]", "")
    assert SESSION_TOKEN not in manifest.read_text()


PRESIGNED = (
    "https://{bucket}.s3.amazonaws.com/raw/0.jpg?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Credential=AKIAEXAMPLE%2F20261203%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20261203T000000Z"
    "&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature=" + "5e" * 32
)


def assert_refused_presigned(result: Result) -> None:
    text = " ".join(result.output.split())
    assert result.exit_code == ExitCode.USAGE, result.output
    assert "presigned" in text and "s3://bucket/key" in text, text
    assert "5e5e5e5e" not in text and "AKIAEXAMPLE" not in text and "X-Amz-Signature" not in text
    assert "Traceback" not in result.output


def test_every_command_refuses_a_presigned_url_the_same_way(tmp_path: Path) -> None:
    url = PRESIGNED.format(bucket="photos")
    folder = images_folder(tmp_path)
    assert_refused_presigned(cli("estimate", url))
    assert_refused_presigned(cli("merge", url, "-o", str(tmp_path / "all.jsonl")))
    assert_refused_presigned(cli("scan", url, "-o", str(tmp_path / "m.jsonl")))
    assert_refused_presigned(
        cli("filter", str(folder), url, "--label", "Bird", "-o", str(tmp_path / "f.jsonl"))
    )
    assert not (tmp_path / "f.jsonl").exists() and not (tmp_path / "all.jsonl").exists()


# ---- finding 4: a copy is skipped only when the destination provably holds the same content ---


def same_size_pair() -> tuple[bytes, bytes]:
    """Two different JPEGs of exactly the same byte size (the shorter padded after its end marker,
    which decoders ignore)."""
    first, second = make_image("bird", seed=1), make_image("bird", seed=2)
    size = max(len(first), len(second))
    first, second = first.ljust(size, b"\0"), second.ljust(size, b"\0")
    assert first != second and len(first) == len(second)
    return first, second


def read_back(s3_client: S3Client, target: str) -> bytes:
    if target.startswith("s3://"):
        bucket, _, key = target[len("s3://") :].partition("/")
        return s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
    return Path(target).read_bytes()


@pytest.mark.parametrize("kind", ["s3-s3", "s3-local", "local-local", "local-s3"])
def test_a_replaced_image_of_the_same_size_is_copied_again(
    fake_rekognition_s3: FakeRekognition,
    s3_client: S3Client,
    make_bucket: Callable[[], str],
    tmp_path: Path,
    kind: str,
) -> None:
    source_kind, dest_kind = kind.split("-")
    old, new = same_size_pair()
    if source_kind == "s3":
        source_bucket = make_bucket()
        source = f"s3://{source_bucket}/raw/"
        put = lambda data: s3_client.put_object(Bucket=source_bucket, Key="raw/eagle.jpg", Body=data)  # noqa: E731
        copied_as = f"Bird/{source_bucket}/raw/eagle.jpg"  # Custom Labels keys: <label>/<bucket>/<key>
    else:
        folder = tmp_path / "raw"
        folder.mkdir()
        source = str(folder)
        put = lambda data: (folder / "eagle.jpg").write_bytes(data)  # noqa: E731
        copied_as = f"Bird/_local/{str(folder / 'eagle.jpg').lstrip('/')}"  # <label>/_local/<path>
    dest = f"s3://{make_bucket()}/set" if dest_kind == "s3" else str(tmp_path / "set")
    manifest = str(tmp_path / "m.jsonl")
    scan_args = ("scan", source, "-o", manifest, "-d", "rekognition")
    export_args = ("export", "custom-labels", manifest, dest, "--label", "Bird")

    put(old)
    assert cli(*scan_args).exit_code == ExitCode.OK
    first = cli(*export_args)
    assert first.exit_code == ExitCode.OK, first.output
    assert read_back(s3_client, f"{dest}/{copied_as}") == old
    again = cli(*export_args)  # the same content is provably there: not copied again
    assert again.exit_code == ExitCode.OK, again.output

    if source_kind == "local":
        os.utime(folder / "eagle.jpg", ns=(1, 1))  # a new mtime, so the rescan sees a new version
    put(new)
    rescan = cli(*scan_args)
    assert rescan.exit_code == ExitCode.OK, rescan.output
    # the copy there is labelsift's own (the receipt lists it) from the old etag: a rerun brings it up
    # to date; the same size never passes for the same content
    refreshed = cli(*export_args)
    assert refreshed.exit_code == ExitCode.OK, refreshed.output
    assert read_back(s3_client, f"{dest}/{copied_as}") == new, refreshed.output
    forced = cli(*export_args, "--overwrite")
    assert forced.exit_code == ExitCode.OK, forced.output
    assert read_back(s3_client, f"{dest}/{copied_as}") == new, forced.output


def test_multipart_copies_are_proved_the_same_and_not_copied_again(
    aws_env: dict[str, str], make_bucket: Callable[[], str], tmp_path: Path
) -> None:
    """A multipart object's ETag depends on its part size, and a server-side multipart copy gets
    an ETag of its own: identity still holds (recorded source ETag, recomputed multipart MD5)."""
    storage = Storage(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    source, dest = f"s3://{make_bucket()}", f"s3://{make_bucket()}"
    data = os.urandom(11 * MiB)
    (tmp_path / "big.bin").write_bytes(data)
    assert storage.copy(str(tmp_path / "big.bin"), f"{source}/big.bin")  # uploaded in 3 parts
    assert (storage.stat(f"{source}/big.bin").etag or "").endswith("-3")
    assert storage.copy(str(tmp_path / "big.bin"), f"{source}/big.bin") is False
    assert storage.copy(f"{source}/big.bin", f"{dest}/big.bin")
    assert storage.copy(f"{source}/big.bin", f"{dest}/big.bin") is False
    assert storage.copy(f"{source}/big.bin", str(tmp_path / "back.bin"))
    assert storage.copy(f"{source}/big.bin", str(tmp_path / "back.bin")) is False
    assert (tmp_path / "back.bin").read_bytes() == data

    changed = bytearray(data)
    changed[6 * MiB] ^= 0xFF  # one byte of the second part, same size
    (tmp_path / "big.bin").write_bytes(bytes(changed))
    with pytest.raises(StorageError) as caught:
        storage.copy(str(tmp_path / "big.bin"), f"{source}/big.bin")
    assert caught.value.code == "Exists" and "same size but different content" in str(caught.value)
    assert storage.copy(str(tmp_path / "big.bin"), f"{source}/big.bin", overwrite=True)
    assert storage.copy(f"{source}/big.bin", f"{dest}/big.bin", overwrite=True)  # ETag changed
    assert storage.read(f"{dest}/big.bin") == bytes(changed)


# ---- finding 10: listings never die of one entry ---------------------------------------------


def hostile_folder(root: Path) -> Path:
    """Two good images beside a symlink loop, a broken link, a FIFO, a symlinked folder pointing
    out of the folder, and files in formats labelsift does not read."""
    folder = images_folder(root, 2, name="mixed")
    (folder / "loop1.jpg").symlink_to(folder / "loop2.jpg")
    (folder / "loop2.jpg").symlink_to(folder / "loop1.jpg")
    (folder / "dangling.jpg").symlink_to(folder / "gone.jpg")
    os.mkfifo(folder / "pipe.jpg")  # opening it would block the scan forever
    outside = images_folder(root, 1, name="outside")
    (folder / "elsewhere").symlink_to(outside, target_is_directory=True)
    for name in ("a.heic", "b.HEIC", "drawing.svg"):
        (folder / name).write_bytes(b"not decoded here")
    return folder


def test_a_scan_lists_past_loops_links_fifos_and_other_formats_and_counts_them(tmp_path: Path) -> None:
    folder = hostile_folder(tmp_path)
    manifest = tmp_path / "m.jsonl"
    result = cli("scan", str(folder), "-o", str(manifest), "--workers", "2")
    text = " ".join(result.output.split())
    assert result.exit_code == ExitCode.OK, result.output
    assert sorted(r.source for r in iter_records(str(manifest))) == [
        str(folder / "0.jpg"),
        str(folder / "1.jpg"),
    ]
    assert "5 entries not listed" in text, text
    assert "2 symlink loop (loop1.jpg, loop2.jpg)" in text
    assert "1 broken link (dangling.jpg)" in text and "1 not a regular file (pipe.jpg)" in text
    assert "1 symlinked folder, not followed (elsewhere)" in text
    assert "3 files of formats labelsift does not read (.heic 2, .svg 1)" in text
    assert "convert those images to JPEG or PNG" in text

    estimate = cli("estimate", str(folder))
    shown = " ".join(estimate.output.split())
    assert estimate.exit_code == ExitCode.OK, estimate.output
    assert "2 images" in shown and "5 entries not listed" in shown and ".heic 2, .svg 1" in shown


def run_as_nobody(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The command line in a process that gave up root (tests run as root, whom no permission bit
    stops): everything is imported first, then the process becomes `nobody` and runs."""
    code = (
        "import os, sys; import labelsift.cli as cli; import labelsift.detectors.local; "
        "os.setgid(65534); os.setuid(65534); sys.argv = ['labelsift', *sys.argv[1:]]; cli.run()"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


@pytest.fixture
def nobody_root() -> Iterator[Path]:
    """A folder `nobody` can reach and write in (pytest's own tmp folders are root's alone)."""
    root = Path(tempfile.mkdtemp(prefix="labelsift-nobody-"))
    root.chmod(0o777)
    yield root
    shutil.rmtree(root)


def test_an_unreadable_sub_folder_is_counted_and_the_rest_is_listed(nobody_root: Path) -> None:
    root = nobody_root
    folder = images_folder(root, 2, name="photos")
    private = images_folder(folder, 1, name="private")
    private.chmod(0o700)  # root's: nobody cannot list it
    folder.chmod(0o755)

    estimate = run_as_nobody("estimate", str(folder), cwd=root)
    shown = " ".join((estimate.stdout + estimate.stderr).split())
    assert estimate.returncode == ExitCode.OK, shown
    assert "2 images" in shown and "1 entry not listed: 1 permission denied (private/)" in shown

    scan = run_as_nobody("scan", str(folder), "-o", str(root / "m.jsonl"), "--workers", "2", cwd=root)
    shown = " ".join((scan.stdout + scan.stderr).split())
    assert scan.returncode == ExitCode.OK, shown
    assert "1 entry not listed: 1 permission denied (private/)" in shown
    assert len(list(iter_records(str(root / "m.jsonl")))) == 2


def test_s3_listing_counts_folder_markers_and_other_formats(
    s3_client: S3Client, bucket: str, tmp_path: Path
) -> None:
    s3_client.put_object(Bucket=bucket, Key="raw/")  # the console's "Create folder"
    s3_client.put_object(Bucket=bucket, Key="raw/0.jpg", Body=make_image("bird", seed=0))
    s3_client.put_object(Bucket=bucket, Key="raw/phone.heic", Body=b"heif")
    s3_client.put_object(Bucket=bucket, Key="raw/labels.json", Body=b"{}")
    result = cli("estimate", f"s3://{bucket}/raw/")
    text = " ".join(result.output.split())
    assert result.exit_code == ExitCode.OK, result.output
    assert "1 images" in text and "2 files of formats labelsift does not read" in text, text
    assert ".heic 1" in text and ".json 1" in text and "1 S3 folder markers" in text


# ---- finding 15: a source that lists nothing says why ----------------------------------------


def test_an_empty_prefix_says_so_and_names_the_nearest_prefixes(
    s3_client: S3Client, make_bucket: Callable[[], str], tmp_path: Path
) -> None:
    bucket = make_bucket()
    for key in ("photos/birds/0.jpg", "photos/cats/0.jpg"):
        s3_client.put_object(Bucket=bucket, Key=key, Body=make_image("bird", seed=0))
    typo = cli("estimate", f"s3://{bucket}/photos/brids/")
    text = " ".join(typo.output.split())
    assert typo.exit_code == ExitCode.OK, typo.output
    assert "0 images" in text and f"No object under s3://{bucket}/photos/brids/" in text, text
    assert f"did you mean s3://{bucket}/photos/birds/?" in text

    wrong_case = cli("scan", f"s3://{bucket}/Photos", "-o", str(tmp_path / "m.jsonl"))
    text = " ".join(wrong_case.output.split())
    assert wrong_case.exit_code == ExitCode.OK, wrong_case.output
    assert "case-sensitive" in text and f"did you mean s3://{bucket}/photos/?" in text, text

    cut_short = cli("estimate", f"s3://{bucket}/photos/bird")  # a prefix is a folder, not a start
    assert f"did you mean s3://{bucket}/photos/birds/?" in " ".join(cut_short.output.split())

    empty = cli("estimate", f"s3://{make_bucket()}/")
    assert "is empty" in " ".join(empty.output.split())
    (tmp_path / "nothing").mkdir()
    local = cli("scan", str(tmp_path / "nothing"), "-o", str(tmp_path / "n.jsonl"))
    assert local.exit_code == ExitCode.OK and "the folder holds no files" in " ".join(local.output.split())


# ---- finding 14 (source side): a manifest's local source must be canonical --------------------


def test_a_recorded_source_with_dot_dot_segments_is_never_copied(tmp_path: Path) -> None:
    secret = tmp_path / "private" / "secret.jpg"
    secret.parent.mkdir()
    secret.write_bytes(make_image("bird", seed=3))  # a readable file outside what was scanned
    folder = images_folder(tmp_path, 1, name="scanned")
    escape = f"{folder}/../private/secret.jpg"
    doubled = f"{folder}//0.jpg"
    manifest = write_manifest(
        tmp_path / "theirs.jsonl",
        [record(str(folder / "0.jpg"), label("Bird", 99)), record(escape, label("Bird", 99)),
         record(doubled, label("Bird", 99))],
    )  # fmt: skip
    dest = tmp_path / "set"
    result = cli("export", "custom-labels", manifest, str(dest), "--label", "Bird")
    text = " ".join(result.output.split())
    copied = sorted(p.name for p in dest.rglob("*") if p.is_file() and not p.name.startswith(".labelsift-"))
    assert copied == ["0.jpg"], (copied, text)  # the receipt aside
    assert secret.read_bytes() not in [p.read_bytes() for p in dest.rglob("*") if p.is_file()]
    assert "UnsafeSource" in text or "not canonical" in text or "normalised" in text, text
    with pytest.raises(NotCanonical):
        parse_recorded(escape)
    for fine in (str(folder / "0.jpg"), "s3://bucket/a/../b.jpg"):
        assert parse_recorded(fine)
    assert str(parse(f"/{folder}/0.jpg")) == str(folder / "0.jpg")  # POSIX's "//" root is "/" here
    for bad in ("relative/0.jpg", f"{folder}/./0.jpg", doubled, f"{folder}/0.jpg\0", "s3://bucket/"):
        with pytest.raises(NotCanonical):
            parse_recorded(bad)


def test_a_local_file_rewritten_with_its_old_size_and_mtime_is_still_compared_by_content(
    tmp_path: Path,
) -> None:
    storage = Storage()
    old, new = same_size_pair()
    src, dst = tmp_path / "src" / "a.jpg", tmp_path / "dst" / "a.jpg"
    src.parent.mkdir()
    src.write_bytes(old)
    assert storage.copy(str(src), str(dst)) is True
    assert storage.copy(str(src), str(dst)) is False  # proved the same
    before = src.stat()
    src.write_bytes(new)
    os.utime(src, ns=(before.st_atime_ns, before.st_mtime_ns))  # as `cp -p` or `rsync -t` leave it
    with pytest.raises(StorageError) as caught:
        storage.copy(str(src), str(dst))
    assert caught.value.code == "Exists"
    assert storage.copy(str(src), str(dst), overwrite=True) is True
    assert dst.read_bytes() == new


# ---- attack: filter's output is inside its input ---------------------------------------------


@pytest.mark.parametrize("where", ["same", "inside"])
def test_filter_refuses_a_destination_inside_its_source(tmp_path: Path, where: str) -> None:
    folder = images_folder(tmp_path, 2, name="photos")
    dest = folder if where == "same" else folder / "hits"
    manifest = tmp_path / "f.jsonl"
    result = cli("filter", str(folder), str(dest), "--label", "Bird", "-o", str(manifest))
    text = " ".join(result.output.split())
    assert result.exit_code == ExitCode.USAGE, result.output
    assert "inside the source" in text and str(folder) in text, text
    assert not manifest.exists()  # refused before anything was listed or paid for


def test_filter_refuses_an_s3_destination_under_its_source_prefix(
    s3_client: S3Client, bucket: str, tmp_path: Path
) -> None:
    s3_client.put_object(Bucket=bucket, Key="raw/0.jpg", Body=make_image("bird", seed=0))
    manifest = tmp_path / "f.jsonl"
    result = cli("filter", f"s3://{bucket}/raw", f"s3://{bucket}/raw/hits", "-l", "Bird", "-o", str(manifest))
    assert result.exit_code == ExitCode.USAGE, result.output
    assert "inside the source" in " ".join(result.output.split())
    beside = cli("filter", f"s3://{bucket}/raw", f"s3://{bucket}/rawhits", "-l", "Bird", "-o", str(manifest))
    assert beside.exit_code == ExitCode.OK, beside.output  # a sibling prefix is not inside


def test_redaction_covers_every_form_botocore_logs_a_credential_in() -> None:
    token, signature = "FwoGZXIvYXdzEBYaDExampleSessionToken+/=", "ab" * 32
    lines = [
        f"'X-Amz-Security-Token': b'{token}', 'Authorization': b'AWS4-HMAC-SHA256 "
        f"Credential=AKIDKEEP/20261203/us-east-1/s3/aws4_request, SignedHeaders=host, Signature={signature}'",
        f"CanonicalRequest:\nGET\n/\n\nhost:x\nx-amz-security-token:{token}\n",
        f"Signature:\n{signature}",
        f"GET /b/k?X-Amz-Credential=AKIDGONE%2F2026&X-Amz-Signature={signature}&X-Amz-Expires=60",
        "https://b.s3.amazonaws.com/k?AWSAccessKeyId=AKIDV2&Signature=dGhpcyBpcyBhIHNpZ25hdHVyZQ%3D%3D",
    ]
    for line in lines:
        cleaned = redact(line)
        assert token not in cleaned and signature not in cleaned and "AKIDGONE" not in cleaned, cleaned
        assert "dGhpcyBpcyBh" not in cleaned and REDACTED in cleaned
    assert "AKIDKEEP" in redact(lines[0])  # the access key id names the identity; it stays
    assert redact("SignatureDoesNotMatch: check the secret") == "SignatureDoesNotMatch: check the secret"
    assert redact(f"token is {token}", (token,)) == f"token is {REDACTED}"


@pytest.mark.parametrize("fmt", ["coco", "yolo", "voc", "custom-labels"])
def test_an_export_refuses_a_presigned_destination_instead_of_making_an_https_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    folder = images_folder(tmp_path, 1)
    manifest = write_manifest(tmp_path / "m.jsonl", [record(str(folder / "0.jpg"), label("Bird", 99))])
    monkeypatch.chdir(tmp_path)
    assert_refused_presigned(cli("export", fmt, manifest, PRESIGNED.format(bucket="out"), "--label", "Bird"))
    assert not (tmp_path / "https:").exists()


def test_a_recorded_source_that_is_a_fifo_or_a_device_is_skipped_not_read(tmp_path: Path) -> None:
    folder = images_folder(tmp_path, 1, name="scanned")
    os.mkfifo(folder / "pipe.jpg")  # opening it for reading would wait for a writer forever
    manifest = write_manifest(
        tmp_path / "theirs.jsonl",
        [
            record(source, label("Bird", 99))
            for source in (str(folder / "0.jpg"), str(folder / "pipe.jpg"), "/dev/zero")
        ],
    )
    dest = tmp_path / "set"
    command = [
        sys.executable,
        "-m",
        "labelsift.cli",
        "export",
        "custom-labels",
        manifest,
        str(dest),
        "-l",
        "Bird",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    text = " ".join(result.stdout.split())
    assert result.returncode == ExitCode.OK, result.stdout + result.stderr
    images = sorted(p.name for p in dest.rglob("*") if p.is_file() and not p.name.startswith(".labelsift-"))
    assert images == ["0.jpg"]  # the receipt aside
    assert "NotAFile 2" in text, text

"""Hostile inputs through the CLI: images whose metadata (not pixels) would fill memory, and
manifests or outputs that are not regular files. Each test failed on the code before its fix."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from PIL import Image, ImageFile
from typer.testing import CliRunner

from labelsift.cli import app
from labelsift.manifest import ManifestWriter, iter_records
from labelsift.models import DetectorInfo, ImageRecord, Label, ScanStatus
from labelsift_testing.fake_rekognition import FakeRekognition, make_image

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

runner = CliRunner()
BIG = 400 * 1024**2  # under the 1 GiB byte cap, so the file is opened; sparse, so it costs no disk
PEAK_BOUND_MB = 800

_MEASURED = """
import resource, subprocess, sys
done = subprocess.run(sys.argv[2:])
with open(sys.argv[1], "w") as out:
    out.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(done.returncode)
"""


def measured(command: list[str], tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], int]:
    peak_file = tmp_path / "peak-rss-kb"
    done = subprocess.run(
        [sys.executable, "-c", _MEASURED, str(peak_file), *command],
        capture_output=True, text=True, env=os.environ, timeout=240,
    )  # fmt: skip
    return done, int(peak_file.read_text()) // 1024


def _png(size: tuple[int, int] = (200, 200)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (10, 200, 30)).save(out, "PNG")
    return out.getvalue()


def _exif_ifd(count: int) -> bytes:
    """A little-endian TIFF header and one IFD with a LONG tag of `count` values (data follows)."""
    entry = struct.pack("<HHII", 0x9286, 4, count, 26)
    return b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1) + entry + struct.pack("<I", 0)


def write_png_with_chunk(path: Path, kind: bytes, *, after_pixels: bool) -> None:
    """A 200x200 PNG carrying a `kind` chunk of BIG bytes (mostly sparse zeros), before or after IDAT."""
    small = _png()
    at = small.index(b"IEND") - 4 if after_pixels else 33  # 33: signature + IHDR
    head = _exif_ifd((BIG - 26) // 4) if kind == b"eXIf" else b""
    with path.open("wb") as out:
        out.write(small[:at])
        out.write(struct.pack(">I", BIG) + kind + head)
        out.seek(BIG - len(head), os.SEEK_CUR)
        out.write(struct.pack(">I", 0))  # CRC (Pillow does not check an ancillary chunk's)
        out.write(small[at:])


def write_tiff_with_huge_tag(path: Path, size: int = BIG) -> None:
    """A valid 200x200 grey TIFF whose Copyright tag claims size // 4 LONG values (sparse zeros)."""
    side, count = 200, size // 4
    entries = [(256, 3, side), (257, 3, side), (258, 3, 8), (259, 3, 1), (262, 3, 1), (273, 4, 0),
               (277, 3, 1), (278, 3, side), (279, 4, side * side), (0x8298, 4, 0)]  # fmt: skip
    pixels_at = 8 + 2 + len(entries) * 12 + 4
    ifd = bytearray(b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", len(entries)))
    for tag, kind, value in entries:
        if tag == 273:
            value = pixels_at
        if tag == 0x8298:
            ifd += struct.pack("<HHII", tag, kind, count, pixels_at + side * side)
        elif kind == 3:
            ifd += struct.pack("<HHIHH", tag, kind, 1, value, 0)
        else:
            ifd += struct.pack("<HHII", tag, kind, 1, value)
    with path.open("wb") as out:
        out.write(bytes(ifd) + struct.pack("<I", 0) + bytes([128]) * side * side)
        out.seek(count * 4 - 1, os.SEEK_CUR)
        out.write(b"\0")


def write_gif_with_huge_comment(path: Path) -> None:
    """A 200x200 GIF with a comment extension of BIG bytes before its first frame."""
    out = io.BytesIO()
    Image.new("P", (200, 200), 1).save(out, "GIF")
    gif = out.getvalue()
    flags = gif[10]
    at = 13 + (3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0)
    block = (b"\xff" + b"A" * 255) * 4096
    with path.open("wb") as stream:
        stream.write(gif[:at] + b"\x21\xfe")
        for _ in range(BIG // len(block)):
            stream.write(block)
        stream.write(b"\x00" + gif[at:])


METADATA_BOMBS = {
    "tiff-tag.tif": write_tiff_with_huge_tag,
    "png-private-chunk.png": lambda path: write_png_with_chunk(path, b"prVt", after_pixels=False),
    "png-exif-after-pixels.png": lambda path: write_png_with_chunk(path, b"eXIf", after_pixels=True),
    "png-private-after-pixels.png": lambda path: write_png_with_chunk(path, b"prVt", after_pixels=True),
}


@pytest.mark.parametrize("name", sorted(METADATA_BOMBS))
def test_metadata_bombs_under_the_byte_cap_are_refused_before_pillow_holds_them(
    name: str, tmp_path: Path
) -> None:
    """Before: 1.3-1.7 GB for one 400 MB file (Pillow holds the tag/chunk; a TIFF LONG tag becomes
    a tuple of 8+ bytes per value); 8 such files under the default 16 workers: 7.4 GB."""
    folder = tmp_path / "images"
    folder.mkdir()
    METADATA_BOMBS[name](folder / name)
    (folder / "dog.jpg").write_bytes(make_image("dog"))
    manifest = tmp_path / "m.jsonl"
    done, peak_mb = measured(
        [sys.executable, "-m", "labelsift.cli", "scan", str(folder), "-o", str(manifest)], tmp_path
    )
    assert done.returncode == 0, done.stdout + done.stderr
    records = {record.source.rsplit("/", 1)[-1]: record for record in iter_records(str(manifest))}
    bomb = records[name]
    assert bomb.status is ScanStatus.SKIPPED, bomb
    assert bomb.error is not None and bomb.error.code == "ImageTooLarge", bomb.error
    assert name in bomb.error.message and "16.0 MiB" in bomb.error.message, bomb.error.message
    assert records["dog.jpg"].status is ScanStatus.LABELED
    assert peak_mb < PEAK_BOUND_MB, f"peak RSS {peak_mb} MB"


def test_a_gif_with_a_huge_comment_is_refused_and_ordinary_gif_webp_still_label(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    write_gif_with_huge_comment(folder / "comment.gif")
    picture = Image.open(io.BytesIO(make_image("dog", size=(640, 480)))).convert("RGB")
    picture.save(folder / "ok.gif")
    picture.save(folder / "ok.webp")
    picture.save(folder / "ok.tif")
    manifest = tmp_path / "m.jsonl"
    done, peak_mb = measured(
        [sys.executable, "-m", "labelsift.cli", "scan", str(folder), "-o", str(manifest)], tmp_path
    )
    assert done.returncode == 0, done.stdout + done.stderr
    records = {record.source.rsplit("/", 1)[-1]: record for record in iter_records(str(manifest))}
    assert records["comment.gif"].error is not None
    assert records["comment.gif"].error.code == "ImageTooLarge"
    for name in ("ok.gif", "ok.webp", "ok.tif"):
        assert records[name].status is ScanStatus.LABELED, records[name]
    assert peak_mb < PEAK_BOUND_MB, f"peak RSS {peak_mb} MB"


# ---- a manifest (or merge output) that is not a regular file: exit 3 naming it, never a hang -----


def _flat(text: str) -> str:
    return "".join(text.split())


@pytest.fixture
def manifest_file(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "dog.jpg").write_bytes(make_image("dog"))
    manifest = tmp_path / "m.jsonl"
    result = runner.invoke(app, ["scan", str(folder), "-o", str(manifest), "--workers", "1"])
    assert result.exit_code == 0, result.output
    return manifest


def _special(tmp_path: Path, kind: str) -> Path:
    if kind == "fifo":
        path = tmp_path / "fifo.jsonl"
        os.mkfifo(path)
        return path
    return Path(kind)  # /dev/null, /dev/zero: character devices


SPECIAL_CASES = {
    "scan-to-fifo": ("fifo", lambda m, s: ["scan", str(m.parent / "photos"), "-o", str(s)]),
    "scan-to-dev-null": ("/dev/null", lambda m, s: ["scan", str(m.parent / "photos"), "-o", str(s)]),
    "export-from-fifo": (
        "fifo", lambda m, s: ["export", "coco", str(s), str(m.parent / "o"), "--label", "Dog"]
    ),
    "export-from-dev-zero": (
        "/dev/zero", lambda m, s: ["export", "yolo", str(s), str(m.parent / "o"), "--label", "Dog"]
    ),
    "review-dev-null": ("/dev/null", lambda m, s: ["review", str(s), "--label", "Dog"]),
    "merge-from-dev-zero": ("/dev/zero", lambda m, s: ["merge", str(s), "-o", str(m.parent / "all.jsonl")]),
    "import-review-from-fifo": ("fifo", lambda m, s: ["import-review", str(m), str(s), "--label", "Dog"]),
    "import-review-from-dev-zero": (
        "/dev/zero", lambda m, s: ["import-review", str(m), str(s), "--label", "Dog"]
    ),
    "merge-over-fifo": ("fifo", lambda m, s: ["merge", str(m), "-o", str(s), "--overwrite"]),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(SPECIAL_CASES))
def test_a_manifest_that_is_not_a_regular_file_is_refused_at_once(
    case: str, manifest_file: Path, tmp_path: Path
) -> None:
    """Before: a FIFO hung scan and export for ever, /dev/zero made an export read one endless
    line into memory, `scan -o /dev/null` and `review /dev/null` were exit 1, and `merge -o FIFO
    --overwrite` replaced the FIFO (as root, `-o /dev/null --overwrite` would replace /dev/null)."""
    kind, args = SPECIAL_CASES[case]
    special = _special(tmp_path, kind)
    done = subprocess.run(
        [sys.executable, "-m", "labelsift.cli", *args(manifest_file, special)],
        capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 3, output
    assert "Traceback" not in output and "unexpected" not in output, output
    assert _flat(str(special)) in _flat(output) and "notamanifestfile" in _flat(output), output
    assert special.is_fifo() or special.is_char_device(), "left as it was"
    assert not Path(str(special) + ".lock").exists()


def test_a_ground_truth_output_that_is_a_folder_is_refused_not_a_bug(manifest_file: Path) -> None:
    """Before: `import-review m.jsonl FOLDER` was exit 1 "unexpected IsADirectoryError"."""
    result = runner.invoke(
        app, ["import-review", str(manifest_file), str(manifest_file.parent), "--label", "Dog"]
    )
    assert result.exit_code == 3, result.output
    assert "is a folder" in " ".join(result.output.split()) and "unexpected" not in result.output


def test_a_process_substitution_manifest_is_refused_not_a_bug(manifest_file: Path, tmp_path: Path) -> None:
    """Before: `export coco <(cat m.jsonl) out` was exit 1, "unexpected UnsupportedOperation"."""
    done = subprocess.run(
        ["bash", "-c", f'"{sys.executable}" -m labelsift.cli export coco <(cat "{manifest_file}") '
         f'"{tmp_path / "out"}" --label Dog'],
        capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert done.returncode == 3, done.stdout + done.stderr
    assert "FIFO" in done.stdout + done.stderr


# ---- names that are not UTF-8: a listing counts them, an argument is a usage error ----------------


def test_a_file_or_folder_name_that_is_not_utf8_is_counted_not_fatal(tmp_path: Path) -> None:
    """Before: one file named b'bad\\xff.jpg' stopped the whole scan, exit 1 (UnicodeEncodeError)."""
    root = os.fsencode(tmp_path / "photos")
    os.makedirs(root + b"/sub\xff")
    image = make_image("dog")
    for name in (
        b"/bad\xff\xfe.jpg",
        b"/sub\xff/in.jpg",
        b"/new\nline.jpg",
        b"/-leading.jpg",
        b"/back\\slash.jpg",
    ):
        with open(root + name, "wb") as out:
            out.write(image)
    manifest = tmp_path / "m.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "labelsift.cli", "scan", str(tmp_path / "photos"), "-o", str(manifest),
         "--workers", "2"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "2 name not UTF-8" in output and "bad\\xff\\xfe.jpg" in output and "sub\\xff/" in output, output
    names = sorted(record.source.rsplit("/", 1)[-1] for record in iter_records(str(manifest)))
    assert names == ["-leading.jpg", "back\\slash.jpg", "new\nline.jpg"]


NOT_UTF8_ARGS = {
    "scan-source": lambda t: ["scan", os.fsdecode(os.fsencode(t) + b"/r\xff"), "-o", str(t / "m.jsonl")],
    "scan-output": lambda t: ["scan", str(t), "-o", os.fsdecode(os.fsencode(t) + b"/m\xff.jsonl")],
    "estimate-source": lambda t: ["estimate", os.fsdecode(os.fsencode(t) + b"/r\xff")],
    "export-dest": lambda t: ["export", "coco", str(t / "m.jsonl"), os.fsdecode(os.fsencode(t) + b"/o\xff"),
                              "--label", "Dog"],
    "export-label": lambda t: ["export", "coco", str(t / "m.jsonl"), str(t / "o"), "--label", "Dog\udcff"],
    "export-name": lambda t: ["export", "yolo", str(t / "m.jsonl"), str(t / "o"), "--label", "Dog",
                              "--name", "Dog=\udcff"],
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(NOT_UTF8_ARGS))
def test_an_argument_that_is_not_utf8_is_a_usage_error(case: str, manifest_file: Path) -> None:
    """Before: exit 1 "unexpected UnicodeEncodeError" (or, for a scan's output, a manifest whose
    name no receipt can record)."""
    root = manifest_file.parent
    os.makedirs(os.fsencode(root) + b"/r\xff", exist_ok=True)
    with open(os.fsencode(root) + b"/r\xff/a.jpg", "wb") as out:
        out.write(make_image("dog"))
    result = runner.invoke(app, NOT_UTF8_ARGS[case](root))
    assert result.exit_code == 2, result.output
    assert "UTF-8" in result.output and "unexpected" not in result.output, result.output
    assert not os.path.exists(os.fsencode(root) + b"/o\xff")


# ---- presigned URLs in every argument: exit 2, the signature nowhere ------------------------------

SIGNED_HTTPS = "https://b.s3.amazonaws.com/k.manifest?X-Amz-Credential=AKID%2F1&X-Amz-Signature=deadbeef5151"
SIGNED_S3 = "s3://b/k.manifest?X-Amz-Signature=deadbeef5151"
PRESIGNED_ARGS = {
    "export-review-output": lambda m, u: ["export", "review", str(m), u, "--label", "Dog"],
    "export-groundtruth-output": lambda m, u: ["export", "groundtruth", str(m), u, "--label", "Dog"],
    "scan-prices": lambda m, u: ["scan", str(m.parent / "photos"), "-o", str(m), "--prices", u],
    "estimate-prices": lambda m, u: ["estimate", str(m.parent / "photos"), "--prices", u],
    "demo-folder": lambda m, u: ["demo", u],
}


@pytest.mark.parametrize("url", [SIGNED_HTTPS, SIGNED_S3], ids=["https", "s3"])
@pytest.mark.parametrize("case", sorted(PRESIGNED_ARGS))
def test_a_presigned_url_in_any_argument_is_refused_without_its_signature(
    case: str, url: str, manifest_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: `export review m.jsonl https://…?X-Amz-Signature=…` wrote a local file under
    `./https:/…` named with the signature and printed it (exit 0); `export groundtruth` to an S3
    presigned URL was exit 3; `--prices` and `demo` printed the signature in their error."""
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    result = runner.invoke(app, PRESIGNED_ARGS[case](manifest_file, url))
    assert result.exit_code == 2, result.output
    assert "deadbeef5151" not in result.output and "presigned" in result.output, result.output
    assert sorted(p.name for p in tmp_path.rglob("*")) == before, "nothing written"


# ---- filter: a DEST that cannot hold the hits is refused before anything is scanned --------------


@pytest.mark.parametrize(
    ("dest", "extra", "said"),
    [
        ("a-file", [], "is a file, not a folder"),
        ("a-file/sub", [], "is a file, not a folder"),
        ("out", ["--name", "."], "--name '.'"),
        ("out", ["--name", "a/../b"], "--name 'a/../b'"),
    ],
    ids=["dest-is-a-file", "dest-under-a-file", "name-dot", "name-dot-dot"],
)
def test_filter_refuses_a_dest_that_cannot_hold_the_hits_before_scanning(
    dest: str, extra: list[str], said: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: DEST a file scanned (and, with Rekognition, paid for) every image, then stopped at the
    first copy with exit 3 "Could not read …/a-file/Dog/dog.jpg: Not a directory"; `--name .` was
    exit 3 (a usage mistake is 2)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "dog.jpg").write_bytes(make_image("dog"))
    (tmp_path / "a-file").write_text("mine\n")
    manifest = tmp_path / "m.jsonl"
    result = runner.invoke(
        app,
        [
            "filter",
            str(tmp_path / "photos"),
            str(tmp_path / dest),
            "--label",
            "Dog",
            "-o",
            str(manifest),
            *extra,
        ],
    )
    assert result.exit_code == 2, result.output
    assert said in " ".join(result.output.split()), result.output
    assert not manifest.exists(), "nothing scanned"
    assert (tmp_path / "a-file").read_text() == "mine\n"


# ---- progressive JPEGs: drafting does not make them cheaper ------------------------------------


def progressive_jpeg_declaring(width: int, height: int) -> bytes:
    """A 640x480 progressive 4:4:4 JPEG (~250 KB) whose frame header (SOF2) declares width x height."""
    rng = np.random.default_rng(1)
    noise = Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8))
    out = io.BytesIO()
    block, ImageFile.MAXBLOCK = ImageFile.MAXBLOCK, 1 << 24  # progressive noise is encoded in one block
    try:
        noise.save(out, "JPEG", progressive=True, quality=90, subsampling=0)
    finally:
        ImageFile.MAXBLOCK = block
    data = out.getvalue()
    at = data.index(b"\xff\xc2")
    return data[: at + 5] + struct.pack(">HH", height, width) + data[at + 9 :]


def test_progressive_jpegs_are_budgeted_at_their_declared_size(tmp_path: Path) -> None:
    """libjpeg keeps a progressive JPEG's coefficients at full size whatever the draft scale. Before:
    each 13000x13000 one was counted as 2.6 MP (drafted to 1/8) and cost 1 GB; 3 of them and 3
    declaring 9900x9900 under the default workers peaked near 4 GB."""
    folder = tmp_path / "images"
    folder.mkdir()
    for index in range(3):
        (folder / f"huge{index}.jpg").write_bytes(progressive_jpeg_declaring(13000, 13000))
        (folder / f"big{index}.jpg").write_bytes(progressive_jpeg_declaring(9900, 9900))
    manifest = tmp_path / "m.jsonl"
    done, peak_mb = measured(
        [sys.executable, "-m", "labelsift.cli", "scan", str(folder), "-o", str(manifest)], tmp_path
    )
    assert done.returncode == 0, done.stdout + done.stderr
    records = {record.source.rsplit("/", 1)[-1]: record for record in iter_records(str(manifest))}
    for index in range(3):
        huge = records[f"huge{index}.jpg"]
        assert huge.error is not None and huge.error.code == "ImageTooLarge", huge
        assert "13000x13000" in huge.error.message
        assert records[f"big{index}.jpg"].status is ScanStatus.LABELED  # within the budget, one at a time
    assert peak_mb < 1100, f"peak RSS {peak_mb} MB"


# ---- --debug with a session token from the credentials file (not the environment) ---------------

FILE_TOKEN = "FwoGZXIvYXdzFileTokenNeverPrintMe/0123456789+abcdefghSECRET=="


def test_debug_never_shows_a_session_token_read_from_the_credentials_file(
    aws_env: dict[str, str], make_bucket: Callable[[], str], manifest_file: Path
) -> None:
    bucket = make_bucket()
    access, secret = aws_env["AWS_ACCESS_KEY_ID"], aws_env["AWS_SECRET_ACCESS_KEY"]
    Path(aws_env["AWS_SHARED_CREDENTIALS_FILE"]).write_text(
        f"[default]\naws_access_key_id = {access}\naws_secret_access_key = {secret}\n"
        f"aws_session_token = {FILE_TOKEN}\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    for args in (
        ["merge", str(manifest_file), "-o", f"s3://{bucket}/m.jsonl"],
        [
            "export",
            "coco",
            f"s3://{bucket}/m.jsonl",
            f"s3://{bucket}/coco",
            "--label",
            "Dog",
            "--copy-images",
        ],
        ["export", "coco", f"s3://{bucket}/missing.jsonl", f"s3://{bucket}/coco2", "--label", "Dog"],
    ):
        done = subprocess.run(
            [sys.executable, "-m", "labelsift.cli", "--debug", *args],
            capture_output=True, text=True, env=env, timeout=120,
        )  # fmt: skip
        shown = done.stdout + done.stderr
        assert "x-amz-security-token" in shown.lower(), shown[-2000:]  # the token was sent and logged
        assert FILE_TOKEN not in shown and FILE_TOKEN[:20] not in shown, args
        assert FILE_TOKEN.replace("/", "%2F")[:30] not in shown, args


@pytest.mark.parametrize("names", [["--name", "Dog=.."], ["--name", "Dog=."], ["--name", "Dog=x\\y"]])
def test_custom_labels_class_folder_that_is_not_a_plain_name_is_a_usage_error(
    names: list[str], manifest_file: Path
) -> None:
    """Before: exit 1, "unexpected ValueError: '..' is not a safe relative path" ('/' was exit 2)."""
    dest = manifest_file.parent / "cl"
    result = runner.invoke(
        app, ["export", "custom-labels", str(manifest_file), str(dest), "--label", "Dog", *names]
    )
    assert result.exit_code == 2, result.output
    assert "--name" in result.output and "unexpected" not in result.output, result.output
    assert not dest.exists()


@pytest.mark.parametrize("detector", ["rekognition", "local"])
def test_metadata_and_progressive_bombs_from_s3_are_refused_and_not_sent(
    fake_rekognition_s3: FakeRekognition,
    s3_client: S3Client,
    make_bucket: Callable[[], str],
    tmp_path: Path,
    detector: str,
) -> None:
    """The same limits on the S3 path: the probe reads the object spooled, then the open budget
    refuses it; nothing is sent to Rekognition (a TIFF is always transcoded, so it would be)."""
    bucket = make_bucket()
    tiff = tmp_path / "tag.tif"
    write_tiff_with_huge_tag(tiff, 64 * 1024**2)
    with tiff.open("rb") as body:
        s3_client.put_object(Bucket=bucket, Key="raw/tag.tif", Body=body)
    s3_client.put_object(Bucket=bucket, Key="raw/prog.jpg", Body=progressive_jpeg_declaring(13000, 13000))
    s3_client.put_object(Bucket=bucket, Key="raw/dog.jpg", Body=make_image("dog"))
    manifest = tmp_path / "m.jsonl"
    done, peak_mb = measured(
        [
            sys.executable,
            "-m",
            "labelsift.cli",
            "scan",
            f"s3://{bucket}/raw/",
            "-o",
            str(manifest),
            "-d",
            detector,
        ],
        tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    records = {record.source.rsplit("/", 1)[-1]: record for record in iter_records(str(manifest))}
    for name in ("tag.tif", "prog.jpg"):
        assert records[name].error is not None and records[name].error.code == "ImageTooLarge", records[name]
        assert f"s3://{bucket}/raw/{name}" in records[name].error.message
    assert records["dog.jpg"].status is ScanStatus.LABELED
    assert len(fake_rekognition_s3.records()) == (1 if detector == "rekognition" else 0)
    assert peak_mb < PEAK_BOUND_MB, f"peak RSS {peak_mb} MB"


_REVIEW = """
import http.client, sys
from labelsift.review import serve_review
from labelsift.storage import Storage
with serve_review(sys.argv[1], "Bird", (30.0, 80.0), storage=Storage()) as running:
    for index, item in enumerate(running.state.items):
        host, port = running.address
        connection = http.client.HTTPConnection(host, port, timeout=60)
        connection.request("GET", f"/img/{index}")
        response = connection.getresponse()
        body = response.read()
        shown = "" if response.status == 200 else body[:300].decode().replace("\\\\n", " ")
        print(item.source.rsplit("/", 1)[-1], response.status, shown)
"""


def test_review_thumbnails_of_metadata_and_progressive_bombs_are_refused(tmp_path: Path) -> None:
    """Before: the page decoded a progressive JPEG declaring 13000x13000 (1 GB) and opened a TIFF
    whose tag held 400 MB, for one thumbnail each."""
    write_tiff_with_huge_tag(tmp_path / "tag.tif")
    (tmp_path / "prog.jpg").write_bytes(progressive_jpeg_declaring(13000, 13000))
    (tmp_path / "dog.jpg").write_bytes(make_image("dog", size=(1600, 1200)))
    manifest = tmp_path / "m.jsonl"
    with ManifestWriter(manifest) as writer:
        for name, side in (("tag.tif", 200), ("prog.jpg", 13000), ("dog.jpg", 1600)):
            writer.append(
                ImageRecord(
                    source=str(tmp_path / name), width=side, height=side, status=ScanStatus.LABELED,
                    detector=DetectorInfo(name="test"), labels=[Label(name="Bird", confidence=55.0)],
                )
            )  # fmt: skip
    done, peak_mb = measured([sys.executable, "-c", _REVIEW, str(manifest)], tmp_path)
    assert done.returncode == 0, done.stderr
    answers = {line.split(" ", 1)[0]: line.split(" ", 2)[1:] for line in done.stdout.splitlines()}
    assert answers["dog.jpg"][0] == "200", done.stdout
    for name in ("tag.tif", "prog.jpg"):
        status, message = answers[name]
        assert status == "422" and name in message, done.stdout
    assert peak_mb < PEAK_BOUND_MB, f"peak RSS {peak_mb} MB"


def test_estimate_does_not_bill_objects_a_scan_never_sends(tmp_path: Path) -> None:
    """Before: 10 empty files and one of 2 GiB (sparse) were 11 billable images ($0.011); a scan
    skips them from the listing's size (`EmptyObject`, `TooLarge`) without a call."""
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "dog.jpg").write_bytes(make_image("dog"))
    for index in range(10):
        (folder / f"empty{index}.jpg").write_bytes(b"")
    with (folder / "huge.jpg").open("wb") as out:
        out.truncate(2 * 1024**3)
    result = runner.invoke(app, ["estimate", str(folder)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert text.startswith("1 images"), text
    assert "11 empty or over 1 GiB" in text and "$0.00 for a full scan" in text, text

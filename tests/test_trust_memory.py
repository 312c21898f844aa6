"""Issue #14, finding 7: memory per image is bounded before any pixel is decoded.

Each scan runs `python -m labelsift.cli` in a subprocess under a small wrapper that reports its
child's peak RSS (`resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`). The bounds are generous (an
ordinary scan with the local model peaks near 300 MB); before the pixel budget, the bomb PNG below
(657 KB, declaring 13000x13000 RGBA) peaked at 3.4 GB and the 3 GB file at 3.3 GB.
"""

from __future__ import annotations

import errno
import io
import json
import os
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from labelsift.imagelimits import BYTES_PER_PIXEL, DecodePool
from labelsift.imageprep import prepare_for_rekognition
from labelsift.manifest import ManifestWriter, iter_records
from labelsift.models import DetectorInfo, ImageRecord, Label, ScanStatus
from labelsift.storage import Storage, StorageError
from labelsift_testing.fake_rekognition import FakeRekognition, make_image

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

PEAK_BOUND_MB = 800
BOMB_SIDE = 13000

_MEASURED = """
import resource, subprocess, sys
done = subprocess.run(sys.argv[2:])
with open(sys.argv[1], "w") as out:
    out.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(done.returncode)
"""


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(side: int = BOMB_SIDE) -> bytes:
    """A valid PNG of `side`x`side` transparent RGBA pixels: ~657 KB that decode to 676 MB."""
    compressor = zlib.compressobj(9)
    rows = bytes(1 + side * 4) * 100
    parts = [compressor.compress(rows) for _ in range(side // 100)]
    parts.append(compressor.compress(bytes(1 + side * 4) * (side % 100)))
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", side, side, 8, 6, 0, 0, 0)
    chunks = _chunk(b"IHDR", header) + _chunk(b"IDAT", b"".join(parts)) + _chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


def jpeg_declaring(jpeg: bytes, width: int, height: int) -> bytes:
    """`jpeg` with its frame header (SOF0) rewritten to declare `width`x`height`: a few KB."""
    at = jpeg.index(b"\xff\xc0")
    return jpeg[: at + 5] + struct.pack(">HH", height, width) + jpeg[at + 9 :]


@pytest.fixture(scope="session")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    path.write_bytes(bomb_png())
    return path.read_bytes()


def measured(
    command: list[str], tmp_path: Path, timeout: float = 240
) -> tuple[subprocess.CompletedProcess[str], int]:
    """Run `command`; return it and its peak RSS in MB."""
    peak_file = tmp_path / "peak-rss-kb"
    done = subprocess.run(
        [sys.executable, "-c", _MEASURED, str(peak_file), *command],
        capture_output=True,
        text=True,
        env=os.environ,
        timeout=timeout,
    )
    return done, int(peak_file.read_text()) // 1024


def labelsift(*args: str) -> list[str]:
    return [sys.executable, "-m", "labelsift.cli", *args]


def by_name(manifest: Path) -> dict[str, ImageRecord]:
    return {record.source.rsplit("/", 1)[-1]: record for record in iter_records(str(manifest))}


def assert_too_large(record: ImageRecord, code: str, *names: str) -> None:
    assert record.status is ScanStatus.SKIPPED, record
    assert record.error is not None and record.error.code == code, record.error
    for name in names:
        assert name in record.error.message, (name, record.error.message)


def test_bomb_png_is_skipped_by_the_local_model_without_decoding(bomb: bytes, tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "bomb.png").write_bytes(bomb)
    (folder / "dog.jpg").write_bytes(make_image("dog"))
    (folder / "jpeg-bomb.jpg").write_bytes(jpeg_declaring(make_image("dog"), 20000, 20000))
    manifest = tmp_path / "m.jsonl"
    done, peak_mb = measured(labelsift("scan", str(folder), "-o", str(manifest)), tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    records = by_name(manifest)
    assert_too_large(records["bomb.png"], "ImageTooLarge", "bomb.png", "13000x13000", "MP")
    assert_too_large(records["jpeg-bomb.jpg"], "ImageTooLarge", "jpeg-bomb.jpg", "400 MP", "100 MP")
    assert records["dog.jpg"].status is ScanStatus.LABELED
    assert records["bomb.png"].width == BOMB_SIDE  # the header was still read and recorded
    assert "ImageTooLarge" in done.stdout + done.stderr
    assert peak_mb < PEAK_BOUND_MB, f"peak RSS {peak_mb} MB"


@pytest.mark.parametrize("detector", ["rekognition", "local"])
def test_bomb_png_from_s3_is_skipped_without_decoding(
    bomb: bytes,
    fake_rekognition_s3: FakeRekognition,
    s3_client: S3Client,
    bucket: str,
    tmp_path: Path,
    detector: str,
) -> None:
    s3_client.put_object(Bucket=bucket, Key="raw/bomb.png", Body=bomb)
    s3_client.put_object(Bucket=bucket, Key="raw/dog.jpg", Body=make_image("dog"))
    manifest = tmp_path / "m.jsonl"
    command = labelsift("scan", f"s3://{bucket}/raw/", "-o", str(manifest), "-d", detector)
    done, peak_mb = measured(command, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    records = by_name(manifest)
    assert_too_large(records["bomb.png"], "ImageTooLarge", f"s3://{bucket}/raw/bomb.png", "13000x13000", "MP")
    assert records["dog.jpg"].status is ScanStatus.LABELED
    # The bomb was never sent, so never paid for.
    assert len(fake_rekognition_s3.records()) == (1 if detector == "rekognition" else 0)
    assert peak_mb < PEAK_BOUND_MB, f"peak RSS {peak_mb} MB"


_REVIEW = """
import http.client, sys
from labelsift.review import serve_review
from labelsift.storage import Storage
with serve_review(sys.argv[1], "Bird", (30.0, 80.0), storage=Storage()) as running:
    names = [item.source.rsplit("/", 1)[-1] for item in running.state.items]
    for index, name in enumerate(names):
        host, port = running.address
        connection = http.client.HTTPConnection(host, port, timeout=60)
        connection.request("GET", f"/img/{index}")
        response = connection.getresponse()
        body = response.read()
        shown = "" if response.status == 200 else body[:300].decode().replace("\\n", " ")
        print(name, response.status, shown)
"""


def test_review_thumbnail_of_a_bomb_is_refused_without_decoding(bomb: bytes, tmp_path: Path) -> None:
    (tmp_path / "bomb.png").write_bytes(bomb)
    (tmp_path / "dog.jpg").write_bytes(make_image("dog", size=(1600, 1200)))
    manifest = tmp_path / "m.jsonl"
    with ManifestWriter(manifest) as writer:
        for name, side in (("bomb.png", BOMB_SIDE), ("dog.jpg", 1600)):
            writer.append(
                ImageRecord(
                    source=str(tmp_path / name),
                    width=side,
                    height=side,
                    status=ScanStatus.LABELED,
                    detector=DetectorInfo(name="test"),
                    labels=[Label(name="Bird", confidence=55.0 if name == "bomb.png" else 60.0)],
                )
            )
    done, peak_mb = measured([sys.executable, "-c", _REVIEW, str(manifest)], tmp_path)
    assert done.returncode == 0, done.stderr
    answers = {line.split(" ", 1)[0]: line.split(" ", 2)[1:] for line in done.stdout.splitlines()}
    assert answers["dog.jpg"][0] == "200"
    status, message = answers["bomb.png"]
    assert status == "422", done.stdout
    assert "13000x13000" in message and "bomb.png" in message, message
    assert peak_mb < PEAK_BOUND_MB, f"peak RSS {peak_mb} MB"


@pytest.mark.parametrize("detector", ["local", "rekognition"])
def test_a_huge_file_named_jpg_is_never_read_whole(
    tmp_path: Path, detector: str, request: pytest.FixtureRequest
) -> None:
    if detector == "rekognition":
        request.getfixturevalue("fake_rekognition")  # the local endpoint; local files go as bytes
    folder = tmp_path / "images"
    folder.mkdir()
    huge = folder / "huge.jpg"
    huge.write_bytes(make_image("dog"))  # a real JPEG header, so the probe accepts it ...
    os.truncate(huge, 3 * 1024**3)  # ... followed by 3 GB of (sparse) zeros
    (folder / "dog.jpg").write_bytes(make_image("dog", seed=1))
    manifest = tmp_path / "m.jsonl"
    done, peak_mb = measured(labelsift("scan", str(folder), "-o", str(manifest), "-d", detector), tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    records = by_name(manifest)
    assert_too_large(records["huge.jpg"], "TooLarge", "huge.jpg", "3.0 GiB")
    assert records["dog.jpg"].status is ScanStatus.LABELED
    assert peak_mb < PEAK_BOUND_MB, f"peak RSS {peak_mb} MB"


def test_many_bombs_with_default_workers_stay_bounded(bomb: bytes, tmp_path: Path) -> None:
    """16 workers, 16 bombs: every one refused from its header, memory as for one ordinary image."""
    folder = tmp_path / "images"
    folder.mkdir()
    for index in range(16):
        (folder / f"bomb{index:02d}.png").write_bytes(bomb)
    manifest = tmp_path / "m.jsonl"
    done, peak_mb = measured(labelsift("scan", str(folder), "-o", str(manifest)), tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    codes = {json.loads(line)["error"]["code"] for line in manifest.read_text().splitlines()}
    assert codes == {"ImageTooLarge"}
    assert peak_mb < PEAK_BOUND_MB, f"peak RSS {peak_mb} MB"


def test_the_decode_pool_holds_back_a_decode_until_there_is_room() -> None:
    """However many workers, decodes in flight never hold more than the pool."""
    pool = DecodePool(capacity=100 * BYTES_PER_PIXEL)
    entered = threading.Event()
    with pool.reserve(60):
        waiter = threading.Thread(target=lambda: _reserve_then(pool, 60, entered))
        waiter.start()
        assert not entered.wait(0.3)  # 60 + 60 pixels do not fit in 100
        assert pool.free == 40 * BYTES_PER_PIXEL
    waiter.join(5)
    assert entered.is_set() and pool.free == pool.capacity
    with pool.reserve(10**12):  # one image larger than the pool takes all of it, not forever
        assert pool.free == 0


def _reserve_then(pool: DecodePool, pixels: int, entered: threading.Event) -> None:
    with pool.reserve(pixels):
        entered.set()


def test_a_huge_jpeg_sent_as_bytes_is_decoded_at_a_reduced_scale() -> None:
    """A JPEG of a few KB declaring 12000x12000 (144 MP): decoded at 1/4, sent at 3000x3000."""
    declared = jpeg_declaring(make_image("dog"), 12000, 12000)
    prepared = prepare_for_rekognition(declared, "s3://b/huge.jpg")
    assert (prepared.width, prepared.height) == (3000, 3000)
    assert "downscaled from 12000x12000" in (prepared.reason or "")
    odd = prepare_for_rekognition(jpeg_declaring(make_image("dog"), 12001, 12003), "s3://b/odd.jpg")
    assert (odd.width, odd.height) == (3001, 3002)  # still 1/4, not 1/2 (6001x6002, 36 MP)


class _FullDisk(io.BytesIO):
    def write(self, data: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


def test_an_s3_object_that_cannot_be_spooled_is_a_storage_error(
    storage: Storage, s3_client: S3Client, bucket: str
) -> None:
    s3_client.put_object(Bucket=bucket, Key="a.jpg", Body=make_image("dog"))
    with pytest.raises(StorageError) as caught:
        storage.open_read(f"s3://{bucket}/a.jpg", limit=None, into=_FullDisk())
    assert caught.value.code == "SpoolFailed" and not caught.value.fatal
    assert f"s3://{bucket}/a.jpg" in caught.value.message and "TMPDIR" in caught.value.message
    with pytest.raises(StorageError) as caught:  # over the cap: refused from ContentLength, unread
        storage.open_read(f"s3://{bucket}/a.jpg", limit=100)
    assert caught.value.code == "TooLarge" and f"s3://{bucket}/a.jpg" in caught.value.message


def test_large_images_within_the_budget_are_decoded_one_pool_share_at_a_time(tmp_path: Path) -> None:
    """Three 9000x9000 RGBA PNGs (81 MP each, under the budget) with the default 16 workers: all
    labeled, but their decodes share one pool instead of all running at once."""
    folder = tmp_path / "images"
    folder.mkdir()
    big = bomb_png(9000)
    for index in range(3):
        (folder / f"big{index}.png").write_bytes(big)
    manifest = tmp_path / "m.jsonl"
    done, peak_mb = measured(labelsift("scan", str(folder), "-o", str(manifest)), tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert {record.status for record in by_name(manifest).values()} == {ScanStatus.LABELED}
    # One such decode holds ~650 MB (the RGBA pixels and one working copy) beside ~300 MB of models;
    # three at once, or freed pixels kept by each worker thread's malloc arena, would be ~2 GB.
    assert peak_mb < 1100, f"peak RSS {peak_mb} MB"


def test_a_jpeg_made_of_metadata_is_refused_before_it_is_opened(tmp_path: Path) -> None:
    """Pillow keeps every APPn segment in memory while opening: 21 MB of them per image, per worker."""
    folder = tmp_path / "images"
    folder.mkdir()
    real = make_image("dog")
    segment = b"\xff\xef" + struct.pack(">H", 65535) + bytes(65533)
    (folder / "metadata.jpg").write_bytes(real[:2] + segment * 320 + real[2:])
    (folder / "dog.jpg").write_bytes(real)
    manifest = tmp_path / "m.jsonl"
    done, _ = measured(labelsift("scan", str(folder), "-o", str(manifest)), tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    records = by_name(manifest)
    assert_too_large(records["metadata.jpg"], "ImageTooLarge", "metadata.jpg", "16.0 MiB of metadata")
    assert records["dog.jpg"].status is ScanStatus.LABELED

"""Peak memory of a scan over hostile images, beside a scan of ordinary images, in the same run.

    python bench/memory.py [--bombs 16] [--huge-gb 2] [--generated 40] [--no-rekognition]

Two folders are made in a temporary directory:
- ordinary: the demo photos and `--generated` 1920x1080 JPEGs made from them;
- hostile: the same images plus `--bombs` PNGs of 657 KB declaring 13000x13000 RGBA (676 MB
  once decoded), JPEGs declaring 20000x20000 and 12000x12000 (a few KB each), a JPEG carrying
  21 MB of APPn metadata, a `--huge-gb` GB
  sparse file that starts with a real JPEG and one of zeros, both named `.jpg`.
Each folder is scanned by `labelsift scan` with the default workers and the local model, each scan
in its own subprocess under a wrapper that reports its child's peak RSS
(`resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`). Then, unless `--no-rekognition`, the same two
sets (without the huge files, with a 40 MB object that starts with a real JPEG instead) go into a
bucket on a real S3 server (SeaweedFS) and are scanned with `-d rekognition` against the local
Rekognition endpoint. It prints each peak and the ratio hostile / ordinary (target: within 1.5x and
under 1.5 GB).
"""

from __future__ import annotations

import argparse
import io
import os
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections import Counter
from importlib import resources
from pathlib import Path

import boto3
import numpy as np
from PIL import Image

from labelsift.manifest import iter_records
from labelsift_testing.fake_rekognition import FakeRekognition
from labelsift_testing.s3_server import SeaweedS3Server

_MEASURED = """
import resource, subprocess, sys
done = subprocess.run(sys.argv[2:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
with open(sys.argv[1], "w") as out:
    out.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.stderr.write(done.stderr[-2000:] if done.returncode else "")
sys.exit(done.returncode)
"""


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(side: int = 13000) -> bytes:
    """A valid `side`x`side` RGBA PNG of transparent pixels: ~657 KB for 13000, 676 MB decoded."""
    compressor = zlib.compressobj(9)
    row = bytes(1 + side * 4)
    parts = [compressor.compress(row * 100) for _ in range(side // 100)]
    parts += [compressor.compress(row * (side % 100)), compressor.flush()]
    header = _chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 6, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + _chunk(b"IDAT", b"".join(parts)) + _chunk(b"IEND", b"")


def jpeg_declaring(jpeg: bytes, width: int, height: int) -> bytes:
    """`jpeg` with its frame header (SOF0) rewritten to declare `width`x`height`."""
    at = jpeg.index(b"\xff\xc0")
    return jpeg[: at + 5] + struct.pack(">HH", height, width) + jpeg[at + 9 :]


def ordinary_images(generated: int) -> dict[str, bytes]:
    folder = Path(str(resources.files("labelsift") / "demo" / "photos"))
    photos = {path.name: path.read_bytes() for path in sorted(folder.glob("*.jpg"))}
    rng = np.random.default_rng(7)
    sources = list(photos.values())
    for index in range(generated):
        with Image.open(io.BytesIO(sources[index % len(sources)])) as photo:
            big = photo.convert("RGB").resize((1920, 1080), Image.Resampling.BICUBIC)
        noise = rng.integers(-6, 7, size=(1080, 1920, 3), dtype=np.int16)
        pixels = np.clip(np.asarray(big, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
        photos[f"full-hd-{index:03d}.jpg"] = buffer.getvalue()
    return photos


def hostile_images(ordinary: dict[str, bytes], bombs: int) -> dict[str, bytes]:
    small = next(iter(ordinary.values()))
    bomb = bomb_png()
    hostile = dict(ordinary)
    hostile.update({f"bomb-{index:02d}.png": bomb for index in range(bombs)})
    hostile["declares-20000x20000.jpg"] = jpeg_declaring(small, 20000, 20000)
    hostile["declares-12000x12000.jpg"] = jpeg_declaring(small, 12000, 12000)
    segment = b"\xff\xef" + struct.pack(">H", 65535) + bytes(65533)  # an empty APP15 segment
    hostile["metadata-21mb.jpg"] = small[:2] + segment * 320 + small[2:]
    return hostile


def write_folder(folder: Path, images: dict[str, bytes], huge_bytes: int) -> None:
    folder.mkdir()
    for name, data in images.items():
        (folder / name).write_bytes(data)
    if huge_bytes:
        with open(folder / "huge-with-jpeg-header.jpg", "wb") as out:
            out.write(next(iter(images.values())))
        os.truncate(folder / "huge-with-jpeg-header.jpg", huge_bytes)
        with open(folder / "huge-zeros.jpg", "wb"):
            pass
        os.truncate(folder / "huge-zeros.jpg", huge_bytes)


def measured_scan(source: str, manifest: Path, *extra: str) -> tuple[int, float, Counter[str]]:
    """Peak RSS (MB), seconds and the outcome counts of one `labelsift scan` in its own process."""
    peak_file = manifest.with_suffix(".peak")
    command = [sys.executable, "-m", "labelsift.cli", "scan", source, "-o", str(manifest), *extra]
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _MEASURED, str(peak_file), *command], env=os.environ)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"scan of {source} exited {done.returncode}")
    outcomes = Counter(
        record.error.code if record.error else record.status.value for record in iter_records(str(manifest))
    )
    return int(peak_file.read_text()) // 1024, seconds, outcomes


def report(path: str, runs: dict[str, tuple[int, float, Counter[str]]]) -> None:
    for name, (peak, seconds, outcomes) in runs.items():
        shown = ", ".join(f"{count} {code}" for code, count in sorted(outcomes.items()))
        print(f"{path:<12}{name:<10}{peak:>8} MB{seconds:>8.1f} s   {shown}")
    ordinary, hostile = runs["ordinary"][0], runs["hostile"][0]
    verdict = "ok" if hostile <= 1.5 * ordinary and hostile < 1536 else "OVER TARGET"
    print(f"{path:<12}ratio     {hostile / ordinary:>8.2f}x  (target <= 1.5x and < 1536 MB: {verdict})")


def rekognition_runs(
    ordinary: dict[str, bytes], hostile: dict[str, bytes], folder: Path
) -> dict[str, tuple[int, float, Counter[str]]]:
    padded = next(iter(ordinary.values()))
    hostile = {**hostile, "forty-megabytes.jpg": padded + bytes(40 * 1024**2 - len(padded))}
    with SeaweedS3Server() as s3, FakeRekognition(s3_endpoint_url=s3.endpoint_url) as fake:
        os.environ.update(s3.env())
        os.environ.update(
            {"AWS_ENDPOINT_URL_REKOGNITION": fake.endpoint_url, "AWS_DEFAULT_REGION": "us-east-1"}
        )
        client = boto3.client("s3")
        client.create_bucket(Bucket="bench")
        for prefix, images in (("ordinary", ordinary), ("hostile", hostile)):
            for name, data in images.items():
                client.put_object(Bucket="bench", Key=f"{prefix}/{name}", Body=data)
        return {
            prefix: measured_scan(
                f"s3://bench/{prefix}/", folder / f"rek-{prefix}.jsonl", "-d", "rekognition"
            )
            for prefix in ("ordinary", "hostile")
        }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bombs", type=int, default=16, help="bomb PNGs in the hostile set (default 16)")
    parser.add_argument("--huge-gb", type=float, default=2.0, help="size of the sparse files (0: none)")
    parser.add_argument("--generated", type=int, default=40)
    parser.add_argument("--no-rekognition", action="store_true")
    args = parser.parse_args()
    ordinary = ordinary_images(args.generated)
    hostile = hostile_images(ordinary, args.bombs)
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        write_folder(folder / "ordinary", ordinary, 0)
        write_folder(folder / "hostile", hostile, int(args.huge_gb * 1024**3))
        print(f"{'path':<12}{'scan':<10}{'peak RSS':>11}{'time':>10}   outcomes (default workers)")
        local = {
            name: measured_scan(str(folder / name), folder / f"{name}.jsonl")
            for name in ("ordinary", "hostile")
        }
        report("local model", local)
        if not args.no_rekognition:
            report("rekognition", rekognition_runs(ordinary, hostile, folder))


if __name__ == "__main__":
    main()

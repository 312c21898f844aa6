"""Reading an S3 Inventory report: rows/s and peak memory at 100,000 and 1,000,000 rows.

    python bench/inventory.py [--sizes 100000 1000000] [--rows-per-file 100000]

The reports are local copies in the documented layout (`DEST/SOURCE/CONFIG/DATE/manifest.json`,
data files under `DEST/SOURCE/CONFIG/data/`), CSV.gz (URL-encoded keys, no header) and Parquet
(Snappy), in files of `--rows-per-file` rows (so a bigger report has more files, not bigger ones,
as AWS writes them). Keys look like `raw/123/photo 000004567.jpg` (a space;
one in 50 with `+` and non-ASCII letters), URL-encoded in the CSV with `/` as `%2F`. Every third
object also has an older version row and every tenth is a delete marker, as in an all-versions
inventory. Each measurement runs in a fresh subprocess, so its peak memory (VmHWM) is its own.

Baselines, measured in the same run on the same files: CSV: `gzip` + `csv.reader` over every row,
nothing kept; Parquet: `pyarrow.parquet.ParquetFile.iter_batches` of the same columns, each batch
turned into Python lists (`to_pylist`), nothing kept. labelsift: `iter_inventory`, which also
decodes keys, drops old versions and delete markers and makes each current row an `ObjectInfo`.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote_plus

FIELDS = "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, ETag, StorageClass"
PARQUET_SCHEMA = (
    "message s3.inventory { required binary bucket (UTF8); required binary key (UTF8); "
    "optional binary version_id (UTF8); optional boolean is_latest; optional boolean is_delete_marker; "
    "optional int64 size; optional binary last_modified_date (UTF8); optional binary e_tag (UTF8); "
    "optional binary storage_class (UTF8);}"
)


def _rows(start: int, stop: int) -> list[tuple[str, str, bool, bool, int | None, str | None]]:
    """(key, version, is_latest, is_delete_marker, size, etag) rows for objects start..stop."""
    rows: list[tuple[str, str, bool, bool, int | None, str | None]] = []
    for i in range(start, stop):
        key = f"raw/{i % 997:03d}/photo {i:09d}{' ü+鳥' if i % 50 == 0 else ''}.jpg"  # 2% not ASCII
        etag = hashlib.md5(str(i).encode()).hexdigest()
        if i % 10 == 0:
            rows.append((key, f"d{i}", True, True, None, None))
        else:
            rows.append((key, f"v{i}", True, False, 10_000 + i % 90_000, etag))
        if i % 3 == 0 and len(rows) < stop - start:
            rows.append((key, f"o{i}", False, False, 9_999, etag))
    return rows[: stop - start]


def _csv_file(rows: list[tuple[str, str, bool, bool, int | None, str | None]]) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text, quoting=csv.QUOTE_ALL, lineterminator="\n")
    for key, version, latest, deleted, size, etag in rows:
        writer.writerow(["raw-bucket", quote_plus(key, safe=""), version, str(latest).lower(),
                         str(deleted).lower(), "" if size is None else size, "2026-01-01T00:00:00.000Z",
                         etag or "", "STANDARD"])  # fmt: skip
    return gzip.compress(text.getvalue().encode(), 6)


def _parquet_file(rows: list[tuple[str, str, bool, bool, int | None, str | None]]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = list(zip(*rows, strict=True))
    table = pa.table(
        {
            "bucket": pa.array(["raw-bucket"] * len(rows)),
            "key": pa.array(columns[0], pa.string()),
            "version_id": pa.array(columns[1], pa.string()),
            "is_latest": pa.array(columns[2], pa.bool_()),
            "is_delete_marker": pa.array(columns[3], pa.bool_()),
            "size": pa.array(columns[4], pa.int64()),
            "last_modified_date": pa.array(["2026-01-01T00:00:00.000Z"] * len(rows)),
            "e_tag": pa.array(columns[5], pa.string()),
            "storage_class": pa.array(["STANDARD"] * len(rows)),
        }
    )
    out = io.BytesIO()
    pq.write_table(table, out, compression="snappy")
    return out.getvalue()


def generate(root: Path, fmt: str, count: int, files: int) -> Path:
    """A report of `count` rows in `files` files; returns its manifest.json."""
    config = root / "raw-bucket" / f"bench-{fmt.lower()}"
    (config / "data").mkdir(parents=True)
    entries = []
    per = count // files
    for part in range(files):
        rows = _rows(part * per, (part + 1) * per if part < files - 1 else count)
        body = _csv_file(rows) if fmt == "CSV" else _parquet_file(rows)
        name = f"data/part-{part:04d}.{'csv.gz' if fmt == 'CSV' else 'parquet'}"
        (config / name).write_bytes(body)
        entries.append({"key": f"raw-bucket/{config.name}/{name}", "size": len(body),
                        "MD5checksum": hashlib.md5(body).hexdigest()})  # fmt: skip
    manifest = {
        "sourceBucket": "raw-bucket", "destinationBucket": "arn:aws:s3:::inventory-bucket",
        "version": "2016-11-30", "creationTimestamp": "1767225600000", "fileFormat": fmt,
        "fileSchema": FIELDS if fmt == "CSV" else PARQUET_SCHEMA, "files": entries,
    }  # fmt: skip
    folder = config / "2026-01-01T00-00Z"
    folder.mkdir()
    data = json.dumps(manifest).encode()
    (folder / "manifest.json").write_bytes(data)
    (folder / "manifest.checksum").write_text(hashlib.md5(data).hexdigest())
    return folder / "manifest.json"


def _baseline_csv(manifest: Path) -> int:
    rows = 0
    for entry in json.loads(manifest.read_text())["files"]:
        path = manifest.parents[3] / entry["key"]
        with gzip.open(path, "rt", encoding="utf-8", newline="") as text:
            for _ in csv.reader(text):
                rows += 1
    return rows


def _baseline_parquet(manifest: Path) -> int:
    import pyarrow.parquet as pq

    rows = 0
    wanted = ["key", "size", "e_tag", "is_latest", "is_delete_marker", "storage_class"]
    for entry in json.loads(manifest.read_text())["files"]:
        for batch in pq.ParquetFile(manifest.parents[3] / entry["key"]).iter_batches(65_536, columns=wanted):
            columns = [batch.column(name).to_pylist() for name in wanted]
            rows += len(columns[0])
    return rows


def _labelsift(manifest: Path) -> int:
    from labelsift.inventory import iter_inventory
    from labelsift.storage import Storage

    return sum(1 for _ in iter_inventory(Storage(), str(manifest)))


RUNS = {"baseline-csv": _baseline_csv, "baseline-parquet": _baseline_parquet, "labelsift": _labelsift}


def peak_rss_mb() -> float:
    """This process's own peak RSS (VmHWM). Not ru_maxrss: Linux carries that over an exec from the
    parent that forked, so a child of a big parent would report the parent's size."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(run: str, manifest: str) -> None:
    import pyarrow.parquet  # imports are not what is measured

    import labelsift.inventory

    del pyarrow, labelsift
    start = time.perf_counter()
    rows = RUNS[run](Path(manifest))
    seconds = time.perf_counter() - start
    peak_mb = peak_rss_mb()
    print(json.dumps({"rows": rows, "seconds": seconds, "peak_mb": peak_mb}))


def measure(run: str, manifest: Path) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", run, str(manifest)], capture_output=True, text=True, check=True
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--rows-per-file", type=int, default=100_000)
    parser.add_argument("--child", nargs=2)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    print("| format | rows in files | run | seconds | rows/s | vs baseline | peak MB | peak vs smallest |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="labelsift-bench-inventory-") as tmp:
        for fmt in ("CSV", "Parquet"):
            smallest_peak: float | None = None
            for size in args.sizes:
                files = max(1, -(-size // args.rows_per_file))
                manifest = generate(Path(tmp) / f"{fmt}-{size}", fmt, size, files)
                base = measure(f"baseline-{fmt.lower()}", manifest)
                ours = measure("labelsift", manifest)
                smallest_peak = smallest_peak or ours["peak_mb"]
                for name, result in ((f"baseline ({fmt})", base), ("labelsift iter_inventory", ours)):
                    rate = size / result["seconds"]
                    ratio = (
                        (size / ours["seconds"]) / (size / base["seconds"])
                        if name != f"baseline ({fmt})"
                        else 1.0
                    )
                    peak = f"{result['peak_mb'] / smallest_peak:.2f}" if name.startswith("labelsift") else "–"
                    cells = [fmt, f"{size:,}", name, f"{result['seconds']:.2f}", f"{rate:,.0f}",
                             f"{ratio:.2f}", f"{result['peak_mb']:.0f}", peak]  # fmt: skip
                    print("| " + " | ".join(cells) + " |", flush=True)
                print(f"<!-- {fmt} {size}: labelsift yielded {int(ours['rows']):,} current objects -->")


if __name__ == "__main__":
    main()

"""S3 Inventory reports made by the tests, in the documented layout, in the test S3 server.

`DEST-PREFIX/SOURCE-BUCKET/CONFIG-ID/YYYY-MM-DDTHH-MMZ/manifest.json` (+ `manifest.checksum`, the
MD5 of manifest.json), data files under `DEST-PREFIX/SOURCE-BUCKET/CONFIG-ID/data/`: CSV gzip with
no header and URL-encoded keys, Parquet (Snappy) or ORC (ZLIB) with snake_case columns.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote_plus

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

CSV_FIELDS = [
    "Bucket", "Key", "VersionId", "IsLatest", "IsDeleteMarker", "Size", "LastModifiedDate", "ETag",
    "StorageClass",
]  # fmt: skip
SNAKE = ["bucket", "key", "version_id", "is_latest", "is_delete_marker", "size", "last_modified_date",
         "e_tag", "storage_class"]  # fmt: skip
PARQUET_SCHEMA = (
    "message s3.inventory { required binary bucket (UTF8); required binary key (UTF8); "
    "optional binary version_id (UTF8); optional boolean is_latest; optional boolean is_delete_marker; "
    "optional int64 size; optional int64 last_modified_date (TIMESTAMP_MILLIS); "
    "optional binary e_tag (UTF8); optional binary storage_class (UTF8);}"
)
ORC_SCHEMA = (
    "struct<bucket:string,key:string,version_id:string,is_latest:boolean,is_delete_marker:boolean,"
    "size:bigint,last_modified_date:timestamp,e_tag:string,storage_class:string>"
)


@dataclass(frozen=True)
class Row:
    key: str
    size: int | None
    etag: str | None
    version_id: str | None = None
    is_latest: bool = True
    is_delete_marker: bool = False
    storage_class: str | None = "STANDARD"


def rows_of_listing(client: S3Client, bucket: str) -> list[Row]:
    """One current row per object, from the real listing, plus for every third object an older
    version (not latest, another size and ETag) and for every fifth a deleted key (a delete marker
    over an old version): rows an all-versions inventory holds that a scan must not see."""
    rows: list[Row] = []
    paginator = client.get_paginator("list_objects_v2")
    items = [item for page in paginator.paginate(Bucket=bucket) for item in page.get("Contents", [])]
    for i, item in enumerate(items):
        rows.append(Row(item["Key"], item["Size"], item["ETag"].strip('"'), version_id=f"v{i}"))
        if i % 3 == 0:
            rows.append(Row(item["Key"], item["Size"] + 7, "0" * 32, version_id=f"old{i}", is_latest=False))
        if i % 5 == 0:
            gone = item["Key"] + ".deleted.jpg"
            rows.append(Row(gone, None, None, version_id=f"dm{i}", is_delete_marker=True))
            rows.append(Row(gone, 123, "1" * 32, version_id=f"gone{i}", is_latest=False))
    return rows


def _csv_gz(source_bucket: str, rows: list[Row]) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text, quoting=csv.QUOTE_ALL, lineterminator="\n")
    for row in rows:
        writer.writerow(
            [source_bucket, quote_plus(row.key, safe=""), row.version_id or "", str(row.is_latest).lower(),
             str(row.is_delete_marker).lower(), "" if row.size is None else row.size,
             "2026-01-01T00:00:00.000Z", row.etag or "", row.storage_class or ""]
        )  # fmt: skip
    return gzip.compress(text.getvalue().encode("utf-8"))


def _arrow_table(source_bucket: str, rows: list[Row]) -> Any:
    import pyarrow as pa

    return pa.table(
        {
            "bucket": pa.array([source_bucket] * len(rows), pa.string()),
            "key": pa.array([r.key for r in rows], pa.string()),
            "version_id": pa.array([r.version_id for r in rows], pa.string()),
            "is_latest": pa.array([r.is_latest for r in rows], pa.bool_()),
            "is_delete_marker": pa.array([r.is_delete_marker for r in rows], pa.bool_()),
            "size": pa.array([r.size for r in rows], pa.int64()),
            "last_modified_date": pa.array([1_767_225_600_000] * len(rows), pa.timestamp("ms")),
            "e_tag": pa.array([r.etag for r in rows], pa.string()),
            "storage_class": pa.array([r.storage_class for r in rows], pa.string()),
        }
    )


def data_file(fmt: str, source_bucket: str, rows: list[Row]) -> bytes:
    if fmt == "CSV":
        return _csv_gz(source_bucket, rows)
    out = io.BytesIO()
    table = _arrow_table(source_bucket, rows)
    if fmt == "Parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, out, compression="snappy", row_group_size=50)
    else:
        import pyarrow.orc as orc

        orc.write_table(table, out, compression="zlib", stripe_size=4096)
    return out.getvalue()


EXTENSION = {"CSV": "csv.gz", "Parquet": "parquet", "ORC": "orc"}
SCHEMA = {"CSV": ", ".join(CSV_FIELDS), "Parquet": PARQUET_SCHEMA, "ORC": ORC_SCHEMA}


def write_inventory(
    client: S3Client,
    dest_bucket: str,
    source_bucket: str,
    rows: list[Row],
    fmt: str = "CSV",
    *,
    files: int = 3,
    checksum: bool = True,
    manifest_extra: dict[str, Any] | None = None,
) -> str:
    """Write `rows` as an inventory report of `source_bucket` split over `files` data files; returns
    the s3:// URI of its manifest.json."""
    base = f"inventories/{source_bucket}/daily-{fmt.lower()}"
    entries = []
    for part in range(files):
        body = data_file(fmt, source_bucket, rows[part::files])
        key = f"{base}/data/{uuid.uuid4()}.{EXTENSION[fmt]}"
        client.put_object(Bucket=dest_bucket, Key=key, Body=body)
        entries.append({"key": key, "size": len(body), "MD5checksum": hashlib.md5(body).hexdigest()})
    manifest = {
        "sourceBucket": source_bucket,
        "destinationBucket": f"arn:aws:s3:::{dest_bucket}",
        "version": "2016-11-30",
        "creationTimestamp": "1767225600000",
        "fileFormat": fmt,
        "fileSchema": SCHEMA[fmt],
        "files": entries,
        **(manifest_extra or {}),
    }
    folder = f"{base}/2026-01-01T00-00Z"
    data = json.dumps(manifest).encode()
    client.put_object(Bucket=dest_bucket, Key=f"{folder}/manifest.json", Body=data)
    if checksum:
        client.put_object(
            Bucket=dest_bucket, Key=f"{folder}/manifest.checksum", Body=hashlib.md5(data).hexdigest().encode()
        )
    return f"s3://{dest_bucket}/{folder}/manifest.json"

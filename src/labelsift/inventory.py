"""A bucket's objects from an S3 Inventory report instead of ListObjects.

An inventory is a `manifest.json` (with an optional `manifest.checksum`, the MD5 of it) under
`DEST-PREFIX/SOURCE-BUCKET/CONFIG-ID/YYYY-MM-DDTHH-MMZ/`, naming data files in the destination
bucket: gzip CSV with no header (columns in `fileSchema` order, keys URL-encoded), Parquet or ORC
(read with pyarrow, the `inventory` extra). `open_inventory` reads and checks the manifest;
`iter_objects` streams one data file's current objects as the scan's `ObjectInfo` (a row at a
time for CSV, a record batch or ORC stripe at a time otherwise: never a whole file in memory);
`iter_inventory` chains every file. `list_source` is what a scan of `s3://bucket/prefix/` uses in
place of `Storage.list`: the same objects, with the same notes, and no ListObjects call.
"""

from __future__ import annotations

import csv
import functools
import gzip
import hashlib
import io
import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import IO, Any, Literal, cast
from urllib.parse import unquote_plus

from labelsift.errors import CannotProceed, UsageError
from labelsift.image_types import IMAGE_EXTENSIONS
from labelsift.listing import FOLDER_MARKER, ListingNotes
from labelsift.storage import ObjectInfo, Storage, StorageError, split_s3

FileFormat = Literal["CSV", "Parquet", "ORC"]
FORMATS: dict[str, FileFormat] = {"csv": "CSV", "parquet": "Parquet", "orc": "ORC"}
MAX_MANIFEST_BYTES = 256 << 20  # a manifest lists files, not objects: megabytes for 10^8 objects
_BATCH_ROWS = 65_536
_HASH_CHUNK = 1 << 20
# The columns an object needs, by their name with case and underscores dropped (`ETag`, `e_tag`).
_NEEDED = ("key", "size", "etag")
_OPTIONAL = ("islatest", "isdeletemarker", "storageclass")


class InventoryError(CannotProceed):
    """An inventory that cannot be used as it is (missing, damaged, an unknown format)."""


class InventoryMismatch(UsageError):
    """An inventory of another bucket than the one asked about."""


@dataclass(frozen=True)
class InventoryFile:
    key: str  # in the destination bucket
    size: int | None
    md5: str | None


@dataclass(frozen=True)
class Inventory:
    uri: str  # the manifest.json
    source_bucket: str
    destination_bucket: str
    file_format: FileFormat
    columns: tuple[str, ...]  # as `fileSchema` names them
    files: list[InventoryFile]
    prefix: str | None = None  # only keys starting with it are yielded
    created_ms: int | None = None
    root: str | None = None  # where the files' keys start: s3://DESTINATION/ unless a local copy

    def file_uri(self, file: InventoryFile) -> str:
        return (self.root or f"s3://{self.destination_bucket}/") + file.key


def _local_root(manifest_uri: str, files: list[InventoryFile]) -> str | None:
    """For a local copy of the destination bucket (`aws s3 sync s3://DEST ./dest`): the folder the
    files' keys start from, found from the layout `…/SOURCE/CONFIG/DATE/manifest.json` beside
    `…/SOURCE/CONFIG/data/<file>`; None for a manifest in S3."""
    if manifest_uri.startswith("s3://"):
        return None
    config = os.path.dirname(os.path.dirname(os.path.abspath(manifest_uri)))
    base, found, _ = files[0].key.rpartition("/data/")
    if found and (config + "/").endswith("/" + base + "/"):
        return config[: len(config) - len(base)]
    raise _bad(
        manifest_uri,
        f"its files (e.g. {files[0].key}) are not in the documented layout beside it, so a local copy "
        "of the report cannot find them; copy the whole destination bucket, keeping its keys",
    )


def column_name(name: str) -> str:
    """A column's name as compared here: `ETag`, `e_tag` and `etag` are one column."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _bad(uri: str, why: str) -> InventoryError:
    return InventoryError(
        f"{uri}: {why}. Point --inventory at the manifest.json of an S3 Inventory report "
        "(DEST-PREFIX/SOURCE-BUCKET/CONFIG-ID/YYYY-MM-DDTHH-MMZ/manifest.json), or scan without "
        "--inventory to list the bucket instead."
    )


def _read(storage: Storage, uri: str, what: str) -> bytes:
    try:
        return storage.read(uri, limit=MAX_MANIFEST_BYTES)
    except StorageError as exc:
        if exc.code in ("NoSuchKey", "NotFound"):
            raise _bad(uri, f"no such {what}") from None
        raise


def _check_checksum(storage: Storage, uri: str, data: bytes) -> None:
    """`manifest.checksum` beside the manifest, when there is one, must be the MD5 of its bytes."""
    folder, _, _ = uri.rpartition("/")
    checksum_uri = f"{folder}/manifest.checksum"
    if storage.exists(checksum_uri) is None:
        return
    expected = _read(storage, checksum_uri, "checksum").decode("ascii", "replace").strip().lower()
    actual = hashlib.md5(data, usedforsecurity=False).hexdigest()
    if expected != actual:
        raise _bad(
            uri,
            f"its MD5 is {actual} but {checksum_uri} says {expected!r}: the manifest was changed or "
            "cut short after the report was written (copy it again from the report)",
        )


def _schema_columns(fmt: FileFormat, schema: str) -> tuple[str, ...]:
    """Column names from `fileSchema`: a comma-separated list (CSV), `struct<name:type,…>` (ORC)
    or `message s3.inventory { required binary name (UTF8); … }` (Parquet)."""
    if fmt == "CSV":
        return tuple(part.strip() for part in schema.split(",") if part.strip())
    if fmt == "ORC":
        inner = schema.strip()
        inner = inner[inner.find("<") + 1 : inner.rfind(">")] if "<" in inner else inner
        return tuple(part.split(":")[0].strip() for part in inner.split(",") if part.strip())
    body = schema[schema.find("{") + 1 : schema.rfind("}")] if "{" in schema else schema
    names = []
    for field in body.split(";"):
        words = re.sub(r"\(.*?\)", "", field).split()
        if len(words) >= 3:
            names.append(words[2])
    return tuple(names)


def _files(uri: str, raw: Any) -> list[InventoryFile]:
    if not isinstance(raw, list) or not raw:
        raise _bad(uri, "its 'files' list is missing or empty")
    files = []
    for entry in raw:
        if not isinstance(entry, dict) or not isinstance(entry.get("key"), str) or not entry["key"]:
            raise _bad(uri, f"a 'files' entry names no key: {str(entry)[:200]}")
        size = entry.get("size")
        md5 = entry.get("MD5checksum")
        files.append(
            InventoryFile(
                entry["key"],
                int(size) if isinstance(size, int | str) and str(size).isdigit() else None,
                md5.lower() if isinstance(md5, str) and md5 else None,
            )
        )
    return files


def _destination(uri: str, arn: Any) -> str:
    if not isinstance(arn, str) or not arn:
        raise _bad(uri, "it names no destinationBucket")
    bucket = arn.rsplit(":", 1)[-1] if arn.startswith("arn:") else arn
    if not bucket:
        raise _bad(uri, f"destinationBucket {arn!r} names no bucket")
    return bucket


def _parse_manifest(uri: str, data: bytes) -> dict[str, Any]:
    try:
        manifest = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise _bad(uri, f"not JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise _bad(uri, "not a JSON object")
    return manifest


def _file_format(uri: str, manifest: dict[str, Any]) -> FileFormat:
    raw = manifest.get("fileFormat")
    fmt = FORMATS.get(str(raw).lower()) if isinstance(raw, str) else None
    if fmt is None:
        raise _bad(uri, f"fileFormat {raw!r} is not one labelsift reads (CSV, Parquet or ORC)")
    return fmt


def _check_columns(uri: str, columns: tuple[str, ...]) -> None:
    have = {column_name(name) for name in columns}
    missing = [name for name in _NEEDED if name not in have]
    if missing:
        shown = {"key": "Key", "size": "Size", "etag": "ETag"}
        raise _bad(
            uri,
            f"its fileSchema ({', '.join(columns)}) has no {', '.join(shown[m] for m in missing)} column: "
            "a scan needs each object's size and ETag (add the Size and ETag fields to the inventory "
            "configuration; the next report has them)",
        )


def open_inventory(
    storage: Storage, manifest_uri: str, prefix: str | None = None, *, source_bucket: str | None = None
) -> Inventory:
    """Read and check an inventory's manifest.json (and its manifest.checksum, when present).

    `source_bucket`, when given, must be the bucket the inventory describes (InventoryMismatch,
    exit 2, otherwise). Only keys starting with `prefix` are yielded by `iter_objects`.
    """
    data = _read(storage, manifest_uri, "inventory manifest")
    _check_checksum(storage, manifest_uri, data)
    manifest = _parse_manifest(manifest_uri, data)
    fmt = _file_format(manifest_uri, manifest)
    bucket = manifest.get("sourceBucket")
    if not isinstance(bucket, str) or not bucket:
        raise _bad(manifest_uri, "it names no sourceBucket")
    if source_bucket is not None and bucket != source_bucket:
        raise InventoryMismatch(
            f"{manifest_uri} is an inventory of bucket {bucket!r}, not of {source_bucket!r} being "
            f"scanned. Give the inventory of {source_bucket!r} (its reports are under "
            f"DEST-PREFIX/{source_bucket}/CONFIG-ID/), or scan s3://{bucket}/."
        )
    schema = manifest.get("fileSchema")
    if not isinstance(schema, str) or not schema.strip():
        raise _bad(manifest_uri, "it has no fileSchema")
    columns = _schema_columns(fmt, schema)
    _check_columns(manifest_uri, columns)
    created = manifest.get("creationTimestamp")
    files = _files(manifest_uri, manifest.get("files"))
    return Inventory(
        uri=manifest_uri,
        source_bucket=bucket,
        destination_bucket=_destination(manifest_uri, manifest.get("destinationBucket")),
        file_format=fmt,
        columns=columns,
        files=files,
        prefix=prefix or None,
        created_ms=int(created) if isinstance(created, int | str) and str(created).isdigit() else None,
        root=_local_root(manifest_uri, files),
    )


def _open_file(storage: Storage, inventory: Inventory, file: InventoryFile) -> IO[bytes]:
    """The data file, downloaded to a temporary file (memory up to a few MiB, then disk) and
    checked against the manifest's size and MD5."""
    uri = inventory.file_uri(file)
    try:
        handle = storage.open_read(uri, limit=None)
    except StorageError as exc:
        if exc.code in ("NoSuchKey", "NotFound"):
            raise _bad(
                inventory.uri,
                f"it lists {uri}, which does not exist (deleted, or the report is still being "
                "written: use a finished report)",
            ) from None
        raise
    digest = hashlib.md5(usedforsecurity=False)
    size = 0
    while chunk := handle.read(_HASH_CHUNK):
        digest.update(chunk)
        size += len(chunk)
    handle.seek(0)
    wrong = (file.size is not None and size != file.size) or (
        file.md5 is not None and digest.hexdigest() != file.md5
    )
    if wrong:
        handle.close()
        raise _bad(
            inventory.uri,
            f"{uri} is {size} bytes with MD5 {digest.hexdigest()}, but the manifest lists "
            f"{file.size} bytes and MD5 {file.md5}: the file was changed or cut short",
        )
    return handle


def _truth(value: Any) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() == "true"


def _object(inventory: Inventory, key: str, size: Any, etag: Any, storage_class: Any) -> ObjectInfo | None:
    if inventory.prefix is not None and not key.startswith(inventory.prefix):
        return None
    if size is None or size == "":
        return None  # a delete marker's row, or a row of a version without its size
    cleaned = str(etag).strip('"') if etag not in (None, "") else None
    folder = inventory.prefix.rpartition("/")[0] + "/" if inventory.prefix and "/" in inventory.prefix else ""
    return ObjectInfo(
        uri=f"s3://{inventory.source_bucket}/{key}",
        key=key[len(folder) :],
        size=int(size),
        etag=cleaned,
        storage_class=str(storage_class) if storage_class not in (None, "") else None,
    )


def _current(latest: Any, deleted: Any) -> bool:
    """A current version: IsLatest true or absent, and not a delete marker."""
    return _truth(latest) is not False and _truth(deleted) is not True


@functools.lru_cache(maxsize=1 << 16)
def _segment(text: str) -> str:
    return unquote_plus(text)


def decode_key(text: str) -> str:
    """A CSV inventory's URL-encoded key (`unquote_plus`), a `/`-separated segment at a time: folder
    names repeat from row to row and are decoded once (cached); a plain segment is not decoded."""
    if "%" not in text:
        return text.replace("+", " ")
    parts = text.replace("%2f", "%2F").split("%2F")
    return "/".join(_segment(part) if "%" in part else part.replace("+", " ") for part in parts)


def _csv_rows(inventory: Inventory, handle: IO[bytes]) -> Iterator[ObjectInfo]:
    at = {column_name(name): i for i, name in enumerate(inventory.columns)}
    key_at, size_at, etag_at = at["key"], at["size"], at["etag"]
    latest_at, deleted_at, class_at = (at.get(name) for name in _OPTIONAL)
    width = len(inventory.columns)
    text = io.TextIOWrapper(
        cast(IO[bytes], gzip.GzipFile(fileobj=handle, mode="rb")), encoding="utf-8", newline=""
    )
    for row_no, row in enumerate(csv.reader(text), start=1):
        if len(row) != width:
            raise _bad(
                inventory.uri,
                f"row {row_no} of a CSV file has {len(row)} columns, its fileSchema {width}",
            )
        if latest_at is not None and row[latest_at].lower() == "false":
            continue  # an older version
        if deleted_at is not None and row[deleted_at].lower() == "true":
            continue  # a delete marker
        info = _object(
            inventory,
            decode_key(row[key_at]),
            row[size_at],
            row[etag_at],
            row[class_at] if class_at is not None else None,
        )
        if info is not None:
            yield info


def require_pyarrow(fmt: str) -> None:
    """pyarrow, for Parquet and ORC inventories; InventoryError (exit 3) naming the extra without it."""
    try:
        import pyarrow  # optional: CSV inventories work without it
    except ImportError:
        raise InventoryError(
            f"reading a {fmt} inventory needs pyarrow, which is not installed: "
            "`pip install 'labelsift[inventory]'` (CSV inventories need nothing more)."
        ) from None
    del pyarrow


def _arrow_columns(names: Iterable[str]) -> dict[str, str]:
    """Our name -> the file's own column name, for the columns an object needs."""
    wanted = set(_NEEDED + _OPTIONAL)
    return {column_name(name): name for name in names if column_name(name) in wanted}


def _arrow_batches(inventory: Inventory, handle: IO[bytes], file: InventoryFile) -> Iterator[Any]:
    """Record batches of the needed columns (Parquet: `_BATCH_ROWS` rows; ORC: a stripe)."""
    require_pyarrow(inventory.file_format)
    if inventory.file_format == "Parquet":
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(handle)
        names = _arrow_columns(parquet.schema_arrow.names)
        _require(inventory, file, names)
        yield from parquet.iter_batches(batch_size=_BATCH_ROWS, columns=list(names.values()))
        return
    import pyarrow.orc as orc

    reader = orc.ORCFile(handle)
    names = _arrow_columns(reader.schema.names)
    _require(inventory, file, names)
    for stripe in range(reader.nstripes):
        yield reader.read_stripe(stripe, columns=list(names.values()))


def _require(inventory: Inventory, file: InventoryFile, names: dict[str, str]) -> None:
    missing = [name for name in _NEEDED if name not in names]
    if missing:
        raise _bad(inventory.uri, f"{inventory.file_uri(file)} has no {', '.join(missing)} column")


def _arrow_rows(inventory: Inventory, handle: IO[bytes], file: InventoryFile) -> Iterator[ObjectInfo]:
    for batch in _arrow_batches(inventory, handle, file):
        names = {column_name(name): name for name in batch.schema.names}
        columns = {ours: batch.column(theirs).to_pylist() for ours, theirs in names.items()}
        rows = batch.num_rows
        latest = columns.get("islatest") or [None] * rows
        deleted = columns.get("isdeletemarker") or [None] * rows
        classes = columns.get("storageclass") or [None] * rows
        for key, size, etag, is_latest, is_deleted, storage_class in zip(
            columns["key"], columns["size"], columns["etag"], latest, deleted, classes, strict=True
        ):
            if key is None or not _current(is_latest, is_deleted):
                continue
            info = _object(inventory, key, size, etag, storage_class)
            if info is not None:
                yield info


def iter_objects(storage: Storage, inventory: Inventory, file: InventoryFile) -> Iterator[ObjectInfo]:
    """The current objects one data file lists (keys decoded, prefix-filtered, size and ETag kept)."""
    handle = _open_file(storage, inventory, file)
    try:
        if inventory.file_format == "CSV":
            yield from _csv_rows(inventory, handle)
        else:
            yield from _arrow_rows(inventory, handle, file)
    except (OSError, EOFError, ValueError, csv.Error) as exc:
        if isinstance(exc, UsageError):
            raise
        raise _bad(inventory.uri, f"{inventory.file_uri(file)} cannot be read as {inventory.file_format} "
                   f"({type(exc).__name__}: {exc})") from None  # fmt: skip
    finally:
        handle.close()


def iter_inventory(storage: Storage, uri: str, prefix: str | None = None) -> Iterator[ObjectInfo]:
    """Every current object of the inventory at `uri`, file after file."""
    inventory = open_inventory(storage, uri, prefix)
    for file in inventory.files:
        yield from iter_objects(storage, inventory, file)


def _is_image(key: str) -> bool:
    return PurePosixPath(key).suffix.lower() in IMAGE_EXTENSIONS


def list_source(
    storage: Storage,
    inventory_uri: str,
    source: str,
    *,
    images_only: bool = True,
    notes: ListingNotes | None = None,
) -> Iterator[ObjectInfo]:
    """What `Storage.list(source)` yields, from the inventory: `source` is `s3://bucket/` or
    `s3://bucket/prefix` (read as the folder `prefix/`), keys relative to it, folder markers and
    (with `images_only`) other formats counted in `notes`. In the inventory's order, not by key."""
    if not source.startswith("s3://"):
        raise UsageError(
            f"--inventory lists an S3 bucket; {source} is a local path. Scan the folder without --inventory."
        )
    bucket, key = split_s3(source)
    folder = key if not key or key.endswith("/") else key + "/"
    inventory = open_inventory(storage, inventory_uri, folder or None, source_bucket=bucket)
    notes = ListingNotes() if notes is None else notes
    for file in inventory.files:
        for info in iter_objects(storage, inventory, file):
            if info.key.endswith("/") or not info.key:
                notes.add(info.uri[len(f"s3://{bucket}/") :], FOLDER_MARKER)
            elif not images_only or _is_image(info.key):
                yield info
            else:
                notes.add_format(info.key)

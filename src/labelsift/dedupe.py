"""Every image paid for once: identical objects are labelled once per run, their record reused.

Two objects are the same image when they hold the same bytes:
- S3: the same ETag and size. A multipart ETag (`<md5 of part md5s>-N`) is compared whole, so it
  matches only an ETag of the same part count N (and the same size); a single-part ETag (an MD5)
  never matches a multipart one, even for the same bytes: they are then labelled twice, never
  wrongly merged.
- Local files: the same SHA-256, computed streaming, and only for files whose size collides with
  another's (the first file of a size is hashed when a second one of that size turns up).

`Duplicates` holds, for this run, which source labels each identity (a dict of 16-byte digests,
about 150 bytes per distinct image in memory: fine up to ~10^7 images) and the labelled records
to reuse (a temporary SQLite file on disk, compressed, about 0.3 KB per image). `duplicate_record`
makes a duplicate's record from the first's: its own source, ETag, size and version, the labels
reused, `same_as` naming the first, never billed.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import tempfile
import zlib
from contextlib import AbstractContextManager
from dataclasses import dataclass
from types import TracebackType

from labelsift.errors import CannotProceed
from labelsift.models import ImageRecord, ScanStatus, utc_now
from labelsift.storage import ObjectInfo, is_s3

_CHUNK = 1 << 20


@dataclass
class DuplicateCounts:
    duplicates: int = 0  # objects whose bytes an earlier object of this run holds


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogateescape"), digest_size=16).digest()


def _local_etag(path: str) -> str | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return f"{stat.st_mtime_ns:x}-{stat.st_size:x}"


def content_hash(path: str) -> str | None:
    """SHA-256 of a local file, read in chunks; None when it cannot be read (the scan says why)."""
    try:
        with open(path, "rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError:
        return None


class _Records:
    """source -> labelled record (zlib-compressed JSON) in a temporary SQLite file."""

    def __init__(self) -> None:
        try:
            self._dir = tempfile.TemporaryDirectory(prefix="labelsift-dedupe-")
            self._db = sqlite3.connect(
                os.path.join(self._dir.name, "records.sqlite"), check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=OFF")
            self._db.execute("PRAGMA synchronous=OFF")
            self._db.execute("CREATE TABLE records (source TEXT PRIMARY KEY, record BLOB)")
        except (OSError, sqlite3.Error) as exc:
            raise self._full(exc) from exc

    def _full(self, exc: Exception) -> CannotProceed:
        return CannotProceed(
            f"cannot keep the records to reuse for duplicate images in {tempfile.gettempdir()}: {exc}. "
            "Free space there (or point TMPDIR at a folder with room), then run again; nothing was lost."
        )

    def put(self, record: ImageRecord) -> None:
        data = zlib.compress(record.model_dump_json().encode("utf-8"), 1)
        try:
            self._db.execute("INSERT OR REPLACE INTO records VALUES (?, ?)", (record.source, data))
        except sqlite3.Error as exc:
            raise self._full(exc) from exc

    def get(self, source: str) -> ImageRecord | None:
        row = self._db.execute("SELECT record FROM records WHERE source = ?", (source,)).fetchone()
        return None if row is None else ImageRecord.model_validate_json(zlib.decompress(row[0]))

    def close(self) -> None:
        self._db.close()
        self._dir.cleanup()


class Duplicates(AbstractContextManager["Duplicates"]):
    """Which source labels each distinct image this run, and the records to reuse.

    `claim(info)` is how a scan asks: None when `info` is the first of its bytes (label it), or the
    source that holds them first (reuse its record once it is labelled). `labelled` stores a first's
    record; `release` forgets a first whose labelling failed, so the next copy is labelled itself.
    """

    def __init__(self) -> None:
        self._owner: dict[bytes, str] = {}  # identity digest -> the source labelling those bytes
        self._by_size: dict[int, tuple[str, str | None] | None] = {}  # local: unhashed first of a size
        self._pending: dict[str, bytes] = {}  # first sources not labelled yet -> their identity
        self._records = _Records()
        self.counts = DuplicateCounts()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._records.close()

    def identity(self, info: ObjectInfo) -> str | None:
        """What the bytes of `info` are known by; None when nothing else can hold them (yet)."""
        if info.size <= 0:
            return None
        if is_s3(info.uri):
            return f"etag:{info.etag}:{info.size}" if info.etag else None
        if info.size not in self._by_size:
            self._by_size[info.size] = (info.uri, info.etag)  # hashed only if another file has its size
            return None
        earlier = self._by_size[info.size]
        if earlier is not None:
            self._by_size[info.size] = None  # from now on every file of this size is hashed
            self._adopt(*earlier, info.size)
        return self._hashed(info.uri, info.size)

    def _hashed(self, path: str, size: int) -> str | None:
        digest = content_hash(path)
        return f"sha256:{digest}:{size}" if digest else None

    def _adopt(self, path: str, etag: str | None, size: int) -> None:
        """The first local file of a size gets its identity once a second one of that size is seen."""
        if etag is not None and _local_etag(path) != etag:
            return  # changed since it was seen: its record is not of these bytes
        found = self._hashed(path, size)
        if found is not None and self._owner.setdefault(_digest(found), path) == path:
            self._pending.setdefault(path, _digest(found))

    def first(self, identity: str | None) -> str | None:
        """The source already labelling (or labelled) these bytes this run, if any."""
        return None if identity is None else self._owner.get(_digest(identity))

    def claim(self, info: ObjectInfo) -> str | None:
        """None: `info` is the first of its bytes (label it). Else the first's source."""
        identity = self.identity(info)
        if identity is None:
            return None
        key = _digest(identity)
        owner = self._owner.setdefault(key, info.uri)
        if owner == info.uri:
            self._pending[info.uri] = key
            return None
        self.counts.duplicates += 1
        return owner

    def labelled(self, record: ImageRecord) -> None:
        """Keep a first's record (labelled) for its duplicates; any other outcome releases it."""
        if record.status is ScanStatus.LABELED and record.same_as is None:
            self._records.put(record)
            self._pending.pop(record.source, None)
        else:
            self.release(record.source)

    def release(self, source: str) -> None:
        """Forget `source` as the first of its bytes (its labelling failed or was not done)."""
        key = self._pending.pop(source, None)
        if key is not None and self._owner.get(key) == source:
            del self._owner[key]

    def record_of(self, source: str) -> ImageRecord | None:
        return self._records.get(source)

    def remember(self, record: ImageRecord) -> None:
        """An earlier run's labelled record: its bytes need no label again this run."""
        if record.status is not ScanStatus.LABELED or record.same_as is not None or record.size is None:
            return
        info = ObjectInfo(record.source, record.source, record.size, record.etag)
        identity = self.identity(info)
        if identity is not None:
            self._owner.setdefault(_digest(identity), record.source)
        self._records.put(record)


def duplicate_record(first: ImageRecord, info: ObjectInfo) -> ImageRecord:
    """The record of `info`, which holds the bytes `first` was labelled from: its own source, ETag,
    size and version, `first`'s labels and image fields, `same_as` naming `first`, no verdicts."""
    return first.model_copy(
        update={
            "source": info.uri,
            "etag": info.etag,
            "size": info.size,
            "version_id": info.version_id,
            "review": [],
            "same_as": first.source,
            "scanned_at": utc_now(),
        }
    )

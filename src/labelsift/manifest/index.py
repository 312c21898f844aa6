"""The per-source index, kept in a temporary SQLite file so memory stays flat: resuming, de-duplicating
and merging ask it which record of a source wins.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from types import TracebackType
from typing import NamedTuple

from labelsift.manifest.errors import IndexSpace
from labelsift.manifest.lines import iter_lines
from labelsift.manifest.parsing import head_of, is_verdict, parse_line
from labelsift.models import ScanStatus, Verdict, VerdictEntry


class IndexEntry(NamedTuple):
    etag: str | None
    status: ScanStatus
    hit: bool | None


class _IndexLock:
    """The index's thread lock; a SQLite failure met under it (the temporary folder full, an I/O
    error) becomes `IndexSpace`, naming the folder, instead of an unexpected error."""

    def __init__(self, folder: str) -> None:
        self._folder = folder
        self._lock = threading.Lock()

    def __enter__(self) -> None:
        self._lock.acquire()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._lock.release()
        if isinstance(exc, sqlite3.OperationalError):  # SQLITE_FULL, SQLITE_IOERR
            raise IndexSpace(os.path.dirname(self._folder), str(exc)) from exc


class SourceIndex(AbstractContextManager["SourceIndex"]):
    """source -> (etag, status, where) for every source in one or more manifests, kept on disk.

    Used to resume a scan (what is done?), to drop superseded records while reading, and to pick
    the newest record per source when merging shards. Memory stays flat however many sources.
    """

    def __init__(self) -> None:
        try:
            self._dir = tempfile.TemporaryDirectory(prefix="labelsift-index-")
        except OSError as exc:
            raise IndexSpace(tempfile.gettempdir(), str(exc.strerror or exc)) from exc
        self._lock = _IndexLock(self._dir.name)
        try:
            self._connect()
        except BaseException:
            self._dir.cleanup()
            raise

    def _connect(self) -> None:
        with self._lock:
            self._db = sqlite3.connect(os.path.join(self._dir.name, "index.sqlite"), check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=OFF")
            self._db.execute("PRAGMA synchronous=OFF")
            self._db.execute(
                "CREATE TABLE records (source TEXT PRIMARY KEY, etag TEXT, status TEXT, "
                "scanned_at TEXT, shard INTEGER, line INTEGER, hit INTEGER)"
            )

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()
        self._dir.cleanup()

    def add(
        self,
        source: str,
        etag: str | None,
        status: str,
        *,
        scanned_at: str = "",
        shard: int = 0,
        line: int = 0,
        newest_by_time: bool = False,
        hit: bool | None = None,
    ) -> None:
        """Record a sighting; a later sighting wins (or the later `scanned_at` if newest_by_time).
        `hit` is what a scan decided for this source under its selection."""
        row = (source, etag, status, scanned_at, shard, line)
        self.add_many([row], newest_by_time=newest_by_time, hit=hit)

    def add_many(
        self,
        rows: list[tuple[str, str | None, str, str, int, int]],
        *,
        newest_by_time: bool = False,
        hit: bool | None = None,
    ) -> None:
        """Rows of (source, etag, status, scanned_at, shard, line), added in one statement."""
        condition = "WHERE excluded.scanned_at >= records.scanned_at" if newest_by_time else ""
        with self._lock:
            self._db.executemany(
                "INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(source) DO UPDATE SET "
                "etag=excluded.etag, status=excluded.status, scanned_at=excluded.scanned_at, "
                f"shard=excluded.shard, line=excluded.line, hit=excluded.hit "
                f"{condition}",
                [(*row, hit) for row in rows],
            )

    def get(self, source: str) -> IndexEntry | None:
        with self._lock:
            row = self._db.execute(
                "SELECT etag, status, hit FROM records WHERE source = ?", (source,)
            ).fetchone()
        if row is None:
            return None
        return IndexEntry(row[0], ScanStatus(row[1]), None if row[2] is None else bool(row[2]))

    def winners(self) -> Iterator[tuple[int, int]]:
        """(shard, line) of the record that wins for each source, in file order, streamed."""
        with self._lock:
            self._db.execute("CREATE INDEX IF NOT EXISTS by_place ON records (shard, line)")
            cursor = self._db.execute("SELECT shard, line FROM records ORDER BY shard, line")
        while True:
            with self._lock:  # the sort may spill to the temporary folder: its failure is named too
                rows = cursor.fetchmany(10_000)
            if not rows:
                break
            for shard, line in rows:
                yield int(shard), int(line)

    def count(self, status: ScanStatus | None = None) -> int:
        with self._lock:
            if status is None:
                row = self._db.execute("SELECT COUNT(*) FROM records").fetchone()
            else:
                row = self._db.execute("SELECT COUNT(*) FROM records WHERE status = ?", (status,)).fetchone()
        return int(row[0])


def _sortable_time(value: object) -> str:
    """`scanned_at` as text that sorts as the times do: UTC, microseconds always written. Another
    tool's `+02:00`, a whole second without a fraction and labelsift's own `…Z` then compare right
    (as written, `12:00:00+02:00` sorts after `11:00:00Z`, and `10:00:00Z` after `10:00:00.5Z`). A
    value that is no time is kept as it is: validation names its line."""
    if not isinstance(value, str) or not value:
        return ""
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return value
    if when.tzinfo is not None:
        when = when.astimezone(UTC).replace(tzinfo=None)
    return when.isoformat(timespec="microseconds")


def index_records(index: SourceIndex, uri: str, shard: int, verdicts: dict[str, list[Verdict]] | None) -> int:
    """Add every record line of `uri` to the index (and collect its verdicts); returns records seen."""
    seen = 0
    batch: list[tuple[str, str | None, str, str, int, int]] = []
    for line_no, text in iter_lines(uri):
        if is_verdict(text):
            if verdicts is not None:
                entry = parse_line(uri, line_no, text)
                assert isinstance(entry, VerdictEntry)
                verdicts.setdefault(entry.source, []).append(entry.verdict)
            continue
        head = head_of(uri, line_no, text)
        status = str(head.get("status", ScanStatus.ERROR.value))
        scanned_at = _sortable_time(head.get("scanned_at"))
        batch.append((head["source"], head.get("etag"), status, scanned_at, shard, line_no))
        seen += 1
        if len(batch) >= 5000:
            index.add_many(batch, newest_by_time=verdicts is None)
            batch.clear()
    index.add_many(batch, newest_by_time=verdicts is None)
    return seen


def build_index(uri: str) -> SourceIndex:
    """Index the records of one manifest (the last record of a source wins)."""
    index = SourceIndex()
    try:
        index_records(index, uri, 0, {})
    except BaseException:
        index.close()
        raise
    return index


class WinningPlaces:
    """Walks the winning (shard, line) places in file order alongside a reader."""

    def __init__(self, index: SourceIndex) -> None:
        self._places = index.winners()
        self._next = next(self._places, None)

    def is_winner(self, shard: int, line: int) -> bool:
        while self._next is not None and self._next < (shard, line):
            self._next = next(self._places, None)
        return self._next == (shard, line)

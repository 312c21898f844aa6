"""The manifest: JSON Lines, one self-contained record per image, append-only.

Readers stream through smart-open (local path, `.gz`, `s3://`) and keep memory flat whatever the
length: the per-source bookkeeping that resuming, de-duplicating and merging need lives in a
temporary SQLite file, not in Python dictionaries. Writers append one whole line at a time and
flush it, so a killed process leaves at most one torn last line, which the next writer repairs.
"""

from __future__ import annotations

import gzip
import json
import logging
import lzma
import os
import sqlite3
import stat
import tempfile
import threading
import zlib
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any, NamedTuple

import numpy as np
import smart_open
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from labelsift import uri as uri_module
from labelsift.errors import BadManifest, CannotProceed, UsageError
from labelsift.gzip_members import check_tail, member, tail_is_whole
from labelsift.manifest_inputs import expand_manifest_inputs, inside_folder
from labelsift.manifest_lock import ManifestInUse as ManifestInUse
from labelsift.manifest_lock import ManifestLock as ManifestLock
from labelsift.models import ImageRecord, ScanStatus, Verdict, VerdictEntry
from labelsift.storage import Storage, storage_error
from labelsift.views import RECORD_VIEW, RecordView
from labelsift.whole_output import refuse_output_among_inputs as refuse_output_among_inputs
from labelsift.whole_output import write_whole

log = logging.getLogger(__name__)

_VERDICT_PREFIX = '{"kind":"verdict"'  # how labelsift writes a verdict line (the fast check)
_KIND = '"kind"'
_KIND_BYTES = b'"kind"'


def is_verdict(text: str) -> bool:
    """Whether a (stripped) manifest line is a verdict: labelsift's own start, or, in a line written
    by another tool (other key order, json.dumps spacing), a top-level `"kind": "verdict"`. A record
    has no `kind` field, so only a line naming it is decoded."""
    if text.startswith(_VERDICT_PREFIX):
        return True
    if _KIND not in text:
        return False
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):  # nested past Python's stack: no verdict, `_head` names it
        return False
    return isinstance(value, dict) and value.get("kind") == "verdict"


class ManifestError(BadManifest):
    """A manifest line that cannot be read, with where it is."""

    def __init__(self, uri: str, line_no: int, message: str) -> None:
        super().__init__(
            f"{uri}, line {line_no}: {message}. Fix or delete that line; every other line is intact."
        )
        self.uri = uri
        self.line_no = line_no
        self.reason = message

    def __reduce__(self) -> tuple[type[ManifestError], tuple[str, int, str]]:
        return (type(self), (self.uri, self.line_no, self.reason))


class TruncatedManifest(BadManifest):
    """A compressed manifest whose data stops early or is damaged."""


class ManifestUnreadable(CannotProceed):
    """A manifest that is a folder, or a file that may not be read."""


def is_local(uri: str) -> bool:
    return "://" not in uri


def _compression(name: str) -> str:
    """The compression smart-open applies to `name` ("" for none), by its extension."""
    suffix = Path(name).suffix.lower()
    return suffix if suffix in _COMPRESSED else ""


def _target(uri: str) -> str:
    """`uri` as smart-open opens it; UsageError for what labelsift does not read (`uri.parse`)."""
    location = uri_module.parse(uri, what="manifest")
    return location.uri


def _open_text(uri: str, mode: str) -> IO[str]:
    """UTF-8. Reading, a byte that is not UTF-8 stays as a lone surrogate, for `_check_text` to
    name its line (a strict decoder fails a chunk ahead, at no line)."""
    errors = "surrogateescape" if mode == "r" else "strict"
    try:
        stream: IO[str] = smart_open.open(_target(uri), mode, encoding="utf-8", errors=errors)
    except ImportError as exc:  # .zst without backports.zstd, .lz4 without lz4
        raise unsupported_compression(uri, exc) from None
    return stream


def unsupported_compression(uri: str, error: ImportError) -> UsageError:
    return UsageError(
        f"{uri}: this Python cannot read or write {_compression(uri) or 'this'} files ({error.name or error} "
        "is not installed). Decompress it first, or use .jsonl / .jsonl.gz."
    )


def _not_utf8(uri: str, line_no: int, byte: int) -> ManifestError:
    return ManifestError(
        uri, line_no, f"not UTF-8 text (byte 0x{byte:02X}); save the manifest as UTF-8 and run again"
    )


def _check_text(uri: str, line_no: int, text: str) -> str:
    """`text` as read by `_open_text`, refused if the line's bytes were not UTF-8."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise _not_utf8(uri, line_no, ord(text[exc.start]) - 0xDC00) from None
    return text


def _text_of(uri: str, line_no: int, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _not_utf8(uri, line_no, raw[exc.start]) from None


def _read_failure(uri: str, error: Exception) -> CannotProceed:
    """A manifest that could not be opened or read: S3 (named bucket, endpoint advice) or a file."""
    cause = error.__cause__ if isinstance(error.__cause__, ClientError | BotoCoreError) else error
    if isinstance(cause, IsADirectoryError):
        return ManifestUnreadable(f"{uri} is a folder, not a manifest file. Name the .jsonl file in it.")
    mapped = storage_error(cause, uri, "read the manifest")
    if mapped.code in ("NoSuchKey", "NotFound"):
        return ManifestUnreadable(f"{uri}: no such manifest. Check the path or key.")
    return mapped


def exists(uri: str) -> bool:
    """Whether the manifest is there (a folder of that name counts: reading it says what is wrong)."""
    location = uri_module.parse(uri, what="manifest")
    if isinstance(location, uri_module.LocalLocation):
        return location.path.exists()
    try:
        return Storage().exists(location.uri) is not None
    except (ClientError, BotoCoreError, OSError) as exc:
        raise _read_failure(uri, exc) from exc


def _local_file(uri: str) -> Path | None:
    """The local file `uri` names, None when there is none; refused when it is a folder, or
    anything else that is not a regular file (a FIFO or a pipe would block or be read only once,
    though a manifest is read more than once; `/dev/zero` never ends; `/dev/null` cannot be synced)."""
    path = Path(uri).expanduser()
    if path.is_dir():
        raise ManifestUnreadable(f"{uri} is a folder, not a manifest file. Name the .jsonl file in it.")
    if not path.exists():
        return None
    refuse_special_file(uri, path)
    return path


def _special_kind(mode: int) -> str | None:
    kinds = (
        (stat.S_ISFIFO, "a FIFO (a named pipe or a shell's <(…))"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    )
    return next((name for test, name in kinds if test(mode)), None)


def refuse_special_file(uri: str, path: Path) -> None:
    """ManifestUnreadable (exit 3) when `path` exists and is not a regular file or a folder."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return  # gone, or unreadable: the open that follows says so
    kind = _special_kind(mode)
    if kind is not None:
        raise ManifestUnreadable(
            f"{uri} is {kind}, not a manifest file: labelsift reads manifests as files (more than once, "
            "and appends to its own in place). Save it to a regular file (e.g. `cat … > m.jsonl`) and "
            "name that."
        )


def require_existing(path: Path) -> None:
    """A local manifest that must already be there (review, import-review): CannotProceed naming it."""
    if _local_file(str(path)) is None:
        raise ManifestUnreadable(f"{path}: no such manifest file. Check the path (scan one first).")


_DAMAGED = (EOFError, zlib.error, lzma.LZMAError, gzip.BadGzipFile)


def cut_short(uri: str, lines: int, last: str | None, *, damaged: bool = False) -> TruncatedManifest:
    """The error for a compressed manifest that stops after `lines` whole lines (`last` the last)."""
    where = f"after line {lines}" if lines else "before its first line"
    source = _quiet_source(last) if last else None
    plain = uri[: -len(_compression(uri))] if _compression(uri) else uri + ".jsonl"
    return TruncatedManifest(
        f"{uri}: the compressed data {'is damaged' if damaged else 'ends early'} {where}"
        + (f" (the record of {source})" if source else "")
        + ". The file was cut short (a copy or download that stopped, a full disk) or damaged, so "
        "labelsift reads no further and writes nothing to it. If it is a copy, copy it again. To keep "
        f"the {lines} whole line(s) before the cut: `gzip -dc {uri} > {plain}` (gzip warns about the "
        f"end), then use {plain}: a scan appending to it cuts the partial last line and goes on."
    )


def _quiet_source(text: str) -> str | None:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    source = value.get("source") if isinstance(value, dict) else None
    return uri_module.shown(source) if isinstance(source, str) else None


MAX_LINE = 64 << 20  # a record is kilobytes (a thousand labels with boxes: a few hundred KiB)


def _too_long(uri: str, line_no: int) -> ManifestError:
    return ManifestError(
        uri, line_no,
        f"longer than {MAX_LINE >> 20} MiB, which no record comes near (labelsift reads no further "
        "into it, and cuts nothing of it): the file is not a manifest, or that line was damaged",
    )  # fmt: skip


def bounded_byte_lines(uri: str, stream: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    """(line number, line) of `stream`, never holding more than `MAX_LINE` of one line: a longer
    line (a file that is not a manifest, a damaged one) is a ManifestError naming it."""
    line_no = 0
    while raw := stream.readline(MAX_LINE + 1):
        line_no += 1
        if len(raw) > MAX_LINE and not raw.endswith(b"\n"):
            raise _too_long(uri, line_no)
        yield line_no, raw


def bounded_text_lines(uri: str, stream: IO[str]) -> Iterator[tuple[int, str]]:
    """`bounded_byte_lines` for a text stream, read in chunks and split here: `TextIOWrapper`'s
    `readline(limit)` still decodes the whole line before cutting it."""
    line_no = 0
    parts: list[str] = []
    pending = 0
    while chunk := stream.read(1 << 20):
        at = 0
        while (end := chunk.find("\n", at)) >= 0:
            piece = chunk[at : end + 1]
            if parts:
                piece = "".join([*parts, piece])
                parts.clear()
                pending = 0
            line_no += 1
            if len(piece) > MAX_LINE + 1:
                raise _too_long(uri, line_no)
            yield line_no, piece[1:] if line_no == 1 and piece.startswith(_BOM) else piece
            at = end + 1
        if at < len(chunk):
            parts.append(chunk[at:])
            pending += len(chunk) - at
            if pending > MAX_LINE:
                raise _too_long(uri, line_no + 1)
    if parts:
        last = "".join(parts)
        yield line_no + 1, last[1:] if line_no == 0 and last.startswith(_BOM) else last


_BOM = "\ufeff"  # an editor's "UTF-8 with BOM": not part of the first line
_BOM_BYTES = _BOM.encode("utf-8")


def _past_bom(stream: IO[bytes]) -> int:
    """Position `stream` (at its start) after a byte-order mark, if it has one; returns where."""
    if stream.read(len(_BOM_BYTES)) == _BOM_BYTES:
        return len(_BOM_BYTES)
    stream.seek(0)
    return 0


def iter_lines(uri: str) -> Iterator[tuple[int, str]]:
    """Yield (line number, text) of every complete line; a torn last line is skipped with a warning.

    A compressed manifest that stops early or is damaged raises TruncatedManifest (exit 4) naming
    the last whole line; a manifest that cannot be opened raises a CannotProceed (exit 3) naming it.
    """
    if is_local(uri) and _local_file(uri) is None:
        _target(uri)  # a refused URI is refused even when no such file exists
        return
    last = (0, "")
    try:
        with _open_text(uri, "r") as stream:
            for line_no, raw in bounded_text_lines(uri, stream):
                if not raw.endswith("\n") and not _parses(raw):
                    log.warning(
                        "%s: line %d is torn (a killed run was writing it); ignoring it", uri, line_no
                    )
                    return
                text = raw.strip()
                if text:
                    last = (line_no, text)
                    yield line_no, _check_text(uri, line_no, text)
    except _DAMAGED as exc:
        raise _damaged(uri, last, damaged=not isinstance(exc, EOFError)) from None
    except (ClientError, BotoCoreError, OSError) as exc:
        if _compression(uri) and isinstance(exc, OSError) and exc.errno is None and exc.__cause__ is None:
            raise _damaged(uri, last, damaged=True) from None  # bz2: "Invalid data stream"
        raise _read_failure(uri, exc) from exc


def _damaged(uri: str, last_yielded: tuple[int, str], *, damaged: bool) -> TruncatedManifest:
    """The decompressor fails a chunk ahead of the lines read: for a local `.gz` the last whole
    line is found by decompressing again (`check_tail`), elsewhere the last line read is named."""
    if is_local(uri) and _compression(uri) == ".gz":
        return _gzip_refusal(uri, Path(uri).expanduser())
    return cut_short(uri, last_yielded[0], last_yielded[1], damaged=damaged)


def _gzip_refusal(uri: str, path: Path) -> TruncatedManifest:
    """Why the local `.gz` at `path` cannot be read or appended to, from decompressing it."""
    with path.open("rb") as stream:
        start = stream.read(2)
    if start and start != b"\x1f\x8b":
        return TruncatedManifest(
            f"{uri} is not gzip data although its name ends in .gz (it starts with {start!r}). If it is "
            f"a plain manifest, rename it to {uri[:-3]}; labelsift writes nothing to it as it is."
        )
    tail = check_tail(path)
    last_line = tail.last_line.decode("utf-8", "replace")
    if tail.corrupt is None and tail.torn and not tail.torn_lines:
        source = _quiet_source(last_line)
        return TruncatedManifest(
            f"{uri} ends in a torn gzip member after line {tail.lines}"
            + (f" (the record of {source})" if source else "")
            + ": a run was killed while appending to it. Rerun that scan (or any command that "
            "appends to it): it cuts the torn member and goes on; only the record being written is lost."
        )
    return cut_short(uri, tail.lines, last_line, damaged=tail.corrupt is not None)


def _parses(text: str | bytes) -> bool:
    try:
        json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return False
    return True


def parse_line(uri: str, line_no: int, text: str) -> ImageRecord | VerdictEntry:
    try:
        if is_verdict(text):
            return VerdictEntry.model_validate_json(text)
        return ImageRecord.model_validate_json(text)
    except ValidationError as exc:
        raise _invalid(uri, line_no, exc) from None


def _invalid(uri: str, line_no: int, exc: ValidationError) -> ManifestError:
    problems = "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'record'}: {err['msg']}" for err in exc.errors()
    )
    return ManifestError(uri, line_no, f"not a valid record ({problems})")


def _head(uri: str, line_no: int, text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(uri, line_no, f"not JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:  # `[[[[…` a hundred thousand deep: no record nests like that
        raise ManifestError(uri, line_no, "not a record (JSON nested too deeply to read)") from None
    if not isinstance(value, dict) or not isinstance(value.get("source"), str):
        raise ManifestError(uri, line_no, "no 'source' field")
    return value


def iter_sources(uri: str) -> Iterator[str]:
    """The `source` of every line (records and verdicts) without validating the rest; a line that
    is not JSON or names no source stops with its line number (ManifestError, exit 4)."""
    for line_no, text in iter_lines(uri):
        source = _head(uri, line_no, text)["source"]
        assert isinstance(source, str)
        yield source


class Known(NamedTuple):
    etag: str | None
    status: ScanStatus
    hit: bool | None


class IndexSpace(CannotProceed):
    """The temporary folder that holds a manifest's per-source index is full or failing."""

    def __init__(self, folder: str, why: str) -> None:
        super().__init__(
            f"cannot keep the per-source index of the manifest in {folder}: {why}. labelsift keeps it "
            "on disk there while it reads a manifest (a few hundred bytes per image). Free space "
            "there, or point TMPDIR at a folder with room, then run again; nothing was lost."
        )


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
                "scanned_at TEXT, shard INTEGER, line INTEGER, copies INTEGER, hit INTEGER)"
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
                "INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, 1, ?) ON CONFLICT(source) DO UPDATE SET "
                "etag=excluded.etag, status=excluded.status, scanned_at=excluded.scanned_at, "
                f"shard=excluded.shard, line=excluded.line, copies=records.copies + 1, hit=excluded.hit "
                f"{condition}",
                [(*row, hit) for row in rows],
            )

    def get(self, source: str) -> Known | None:
        with self._lock:
            row = self._db.execute(
                "SELECT etag, status, hit FROM records WHERE source = ?", (source,)
            ).fetchone()
        if row is None:
            return None
        return Known(row[0], ScanStatus(row[1]), None if row[2] is None else bool(row[2]))

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

    def has_repeats(self) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM records WHERE copies > 1 LIMIT 1").fetchone() is not None

    def count(self, status: ScanStatus | None = None) -> int:
        with self._lock:
            if status is None:
                row = self._db.execute("SELECT COUNT(*) FROM records").fetchone()
            else:
                row = self._db.execute("SELECT COUNT(*) FROM records WHERE status = ?", (status,)).fetchone()
        return int(row[0])

    def sources(self, status: ScanStatus) -> Iterator[str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT source FROM records WHERE status = ? ORDER BY source", (status,)
            ).fetchall()
        for (source,) in rows:
            yield source


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


def _index_into(index: SourceIndex, uri: str, shard: int, verdicts: dict[str, list[Verdict]] | None) -> int:
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
        head = _head(uri, line_no, text)
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
        _index_into(index, uri, 0, {})
    except BaseException:
        index.close()
        raise
    return index


class _Winners:
    """Walks the winning (shard, line) places in file order alongside a reader."""

    def __init__(self, index: SourceIndex) -> None:
        self._places = index.winners()
        self._next = next(self._places, None)

    def wins(self, shard: int, line: int) -> bool:
        while self._next is not None and self._next < (shard, line):
            self._next = next(self._places, None)
        return self._next == (shard, line)


_SOURCE_PREFIX = '{"source":'
_DECODER = json.JSONDecoder()


def _source_of(uri: str, line_no: int, text: str) -> str:
    """The record's source, decoding only that string when the line is in the writer's key order."""
    if text.startswith(_SOURCE_PREFIX):
        try:
            source, _ = _DECODER.raw_decode(text, len(_SOURCE_PREFIX))
        except json.JSONDecodeError:
            source = None
        if isinstance(source, str):
            return source
    source = _head(uri, line_no, text)["source"]
    assert isinstance(source, str)
    return source


class _SeenFilter:
    """A fixed-size blocked Bloom filter over sources (32 MiB whatever the manifest's length).

    `add_many` answers which keys may have been added before (by an earlier batch, or earlier in
    this one): never a false "no", rarely a false "yes" (about one in a million sources, a hundred
    in five million), so a manifest with no repeated source is confirmed without any index at all.
    Each key sets six bits of one 64-bit word (one memory access per key); the bit work runs in
    numpy, a batch at a time.
    """

    def __init__(self, words: int = 1 << 22) -> None:
        self._words = np.zeros(words, dtype=np.uint64)
        self._mask = np.uint64(words - 1)

    def add_many(self, keys: list[bytes]) -> list[int]:
        hashes = np.array([hash(key) for key in keys], dtype=np.int64)
        digest = hashes.view(np.uint64)
        word = (digest & self._mask).astype(np.intp)
        bits = np.zeros(len(keys), dtype=np.uint64)
        for shift in range(28, 64, 6):  # six 6-bit fields above the word's index
            bits |= np.left_shift(np.uint64(1), (digest >> np.uint64(shift)) & np.uint64(63))
        seen = self._words[word] & bits == bits
        _, firsts = np.unique(hashes, return_index=True)  # a key twice in this batch: seen
        again = np.ones(len(keys), dtype=bool)
        again[firsts] = False
        np.bitwise_or.at(self._words, word, bits)  # ufunc.at: keys of one batch may share a word
        return [int(i) for i in np.flatnonzero(seen | again)]


class _RepeatFinder:
    """Sources that may have been written before, from the filter, a batch of keys at a time."""

    def __init__(self) -> None:
        self._seen = _SeenFilter()
        self._keys: list[bytes] = []
        self.maybe: set[str] = set()
        self.odd_lines = 0  # record lines not in the writer's form (`_key_of` had to decode them)

    def add(self, key: bytes) -> None:
        self._keys.append(key)
        if len(self._keys) >= 4096:
            self.flush()

    def flush(self) -> None:
        keys, self._keys = self._keys, []
        if keys:
            # keys are raw bytes (`_key_of`): one that is not UTF-8 fails later, at its line
            self.maybe.update(keys[i].decode("utf-8", "surrogateescape") for i in self._seen.add_many(keys))


_SOURCE_PREFIX_BYTES = b'{"source":"'


def _key_of(uri: str, line_no: int, raw: bytes) -> bytes | None:
    """A record line's source as UTF-8 (None for a blank or verdict line), without decoding the
    line when it starts the way the writer writes it (its source string then holds no escape)."""
    if raw.startswith(_SOURCE_PREFIX_BYTES) and _KIND_BYTES not in raw:  # a verdict may start so too
        close = raw.find(b'"', len(_SOURCE_PREFIX_BYTES))
        if close > 0 and raw.find(b"\\", len(_SOURCE_PREFIX_BYTES), close) < 0:
            return raw[len(_SOURCE_PREFIX_BYTES) : close]
    text = _text_of(uri, line_no, raw).strip()
    if not text or is_verdict(text):
        return None
    return _source_of(uri, line_no, text).encode("utf-8")


def _local_plain(uri: str) -> bool:
    """A local file smart-open would not decompress: its bytes are its lines."""
    return is_local(uri) and not uri.lower().endswith(_COMPRESSED)


def _record_keys(uri: str, *, as_bytes: bool) -> Iterator[tuple[int, bytes]]:
    """(line number, source key) of every record line; `as_bytes` where the first pass found the
    file's byte lines to be its text lines (`_spanning_pass`: no carriage return inside a line)."""
    if not as_bytes:
        for line_no, text in iter_lines(uri):
            if not is_verdict(text):
                yield line_no, _source_of(uri, line_no, text).encode("utf-8")
        return
    path = Path(uri).expanduser()
    if not path.exists():
        return
    with open(path, "rb") as stream:
        _past_bom(stream)
        for line_no, raw in bounded_byte_lines(uri, stream):
            if not raw.endswith(b"\n") and not _parses(raw):
                return  # torn: `iter_lines` warns about it
            key = _key_of(uri, line_no, raw)
            if key is not None:
                yield line_no, key


Line = tuple[int, str, list[Verdict] | None]  # (line number, text, people's verdicts on it)
_COMPRESSED = (".bz2", ".gz", ".lz4", ".xz", ".zst")  # extensions smart-open decompresses


class Span(NamedTuple):
    """A run of whole lines of a plain local manifest: bytes [start, end), numbered from `first_line`."""

    start: int
    end: int
    first_line: int
    lines: int


@dataclass
class FirstPass:
    """What a first pass over a manifest found: people's verdicts (as many as people made, not as
    many as images), where each source written more than once last appears, and for a plain local
    file read with `lines_per_span`, its lines cut into `Span`s of that many."""

    verdicts: dict[str, list[Verdict]]
    last: dict[str, int]  # source -> line number of its newest record, for repeated sources only
    spans: list[Span] | None

    @property
    def plain(self) -> bool:
        """Spans exist, no record supersedes another and nobody judged one: each line stands alone."""
        return self.spans is not None and not self.verdicts and not self.last


def first_pass(uri: str, lines_per_span: int | None = None) -> FirstPass:
    """Read the manifest for what `effective_lines` must know before it yields anything.

    A fixed-size filter flags sources that may have been seen before; it has false alarms (dozens
    in a million sources), so only if it flags any does a second pass count the flagged ones and
    keep those really written more than once.
    """
    found = FirstPass({}, {}, None)
    finder = _RepeatFinder()
    if lines_per_span is not None and _local_plain(uri):
        found.spans = _spanning_pass(uri, lines_per_span, found.verdicts, finder)
    if found.spans is None:
        found.verdicts.clear()
        finder = _RepeatFinder()
        for line_no, text in iter_lines(uri):
            if is_verdict(text):
                _add_verdict(uri, line_no, text, found.verdicts)
            else:
                finder.add(_source_of(uri, line_no, text).encode("utf-8"))
    finder.flush()
    if finder.maybe and not (found.spans is not None and _written_once(uri, finder)):
        found.last = _repeats(uri, finder.maybe, as_bytes=found.spans is not None)
    return found


def _written_once(uri: str, finder: _RepeatFinder) -> bool:
    """Whether each of a few flagged sources has one record only, found by searching the file's
    bytes for its record's start (much faster than reading the lines again). Exact only when every
    record line is in the writer's form (none odd): `\\n{"source":"<source>"` then starts each of
    its lines and nothing else (JSON escapes the quotes of a string that holds it)."""
    if finder.odd_lines or len(finder.maybe) > 16:
        return False
    path = Path(uri).expanduser()
    return all(_line_starts(path, source, limit=2) < 2 for source in finder.maybe)


def _line_starts(path: Path, source: str, *, limit: int) -> int:
    """How many lines (up to `limit`) start with `source`'s record in the writer's form, read in
    chunks of 1 MiB."""
    needle = b"\n" + _SOURCE_PREFIX_BYTES + source.encode("utf-8", "surrogateescape") + b'"'
    found = 0
    with open(path, "rb") as stream:
        _past_bom(stream)
        carry = b"\n"  # the file's start is a line's start
        while chunk := stream.read(1 << 20):
            data = carry + chunk
            at = data.find(needle)
            while at >= 0:
                found += 1
                if found >= limit:
                    return found
                at = data.find(needle, at + 1)
            carry = data[1 - len(needle) :]  # a match across the chunks' border starts in here
    return found


def _add_verdict(uri: str, line_no: int, text: str, verdicts: dict[str, list[Verdict]]) -> None:
    entry = parse_line(uri, line_no, text)
    assert isinstance(entry, VerdictEntry)
    verdicts.setdefault(entry.source, []).append(entry.verdict)


def _repeats(uri: str, maybe: set[str], *, as_bytes: bool) -> dict[str, int]:
    """source -> line of its newest record, for the sources of `maybe` written more than once."""
    wanted = {source.encode("utf-8", "surrogateescape") for source in maybe}
    seen_once: set[bytes] = set()
    last: dict[str, int] = {}
    for line_no, key in _record_keys(uri, as_bytes=as_bytes):
        if key in wanted:
            if key in seen_once:
                last[key.decode("utf-8", "surrogateescape")] = line_no
            seen_once.add(key)
    return last


def _spanning_pass(
    uri: str, lines_per_span: int, verdicts: dict[str, list[Verdict]], finder: _RepeatFinder
) -> list[Span] | None:
    """The first pass over a local file in bytes, noting where every `lines_per_span` lines end;
    None (read it as text instead) when a carriage return inside a line would make the text
    reader's universal newlines number the lines differently."""
    path = _local_file(uri)
    if path is None:
        return []
    spans: list[Span] = []
    start = end = 0
    first_line = line_no = 1
    prefix, skip = _SOURCE_PREFIX_BYTES, len(_SOURCE_PREFIX_BYTES)
    with open(path, "rb") as stream:
        start = end = _past_bom(stream)  # the first span starts after it
        for line_no, raw in bounded_byte_lines(uri, stream):
            if b"\r" in raw and b"\r" in raw.strip():
                return None
            if not raw.endswith(b"\n") and not _parses(raw):
                log.warning("%s: line %d is torn (a killed run was writing it); ignoring it", uri, line_no)
                line_no -= 1
                break
            end += len(raw)
            close = raw.find(b'"', skip) if raw.startswith(prefix) and _KIND_BYTES not in raw else -1
            if close > 0 and raw.find(b"\\", skip, close) < 0:  # `_key_of`'s fast path, inline
                finder.add(raw[skip:close])
            elif (key := _key_of(uri, line_no, raw)) is not None:
                finder.add(key)
                finder.odd_lines += 1
            elif text := _text_of(uri, line_no, raw).strip():
                _add_verdict(uri, line_no, text, verdicts)
            if line_no - first_line + 1 == lines_per_span:
                spans.append(Span(start, end, first_line, lines_per_span))
                start, first_line = end, line_no + 1
    if end > start:
        spans.append(Span(start, end, first_line, line_no - first_line + 1))
    return spans


def span_lines(uri: str, span: Span) -> list[Line]:
    """The non-blank lines of `span` of a plain manifest (`FirstPass.plain`: no verdicts in it)."""
    with open(Path(uri).expanduser(), "rb") as stream:
        stream.seek(span.start)
        data = stream.read(span.end - span.start)
    try:
        decoded = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _not_utf8(uri, span.first_line + data.count(b"\n", 0, exc.start), data[exc.start]) from None
    out: list[Line] = []
    for line_no, raw in enumerate(decoded.split("\n"), start=span.first_line):
        text = raw.strip()
        if text:
            out.append((line_no, text, None))
    return out


def effective_lines(uri: str, first: FirstPass | None = None) -> Iterator[Line]:
    """(line number, text, people's verdicts) of each record not superseded by a later one.

    The first pass (`first_pass`, or the one given) collects verdict lines and finds where each
    repeated source last appears; this pass yields the winners. Memory stays flat (as many entries
    as verdicts and repeated sources, not as records).
    """
    found = first if first is not None else first_pass(uri)
    verdicts, last = found.verdicts, found.last
    for line_no, text in iter_lines(uri):
        if is_verdict(text):
            continue
        if last or verdicts:
            source = _source_of(uri, line_no, text)
            if last.get(source, line_no) != line_no:
                continue
            yield line_no, text, verdicts.get(source)
        else:
            yield line_no, text, None


def _record(uri: str, line_no: int, text: str, verdicts: list[Verdict] | None) -> ImageRecord:
    entry = parse_line(uri, line_no, text)
    assert isinstance(entry, ImageRecord)
    return entry.model_copy(update={"review": [*entry.review, *verdicts]}) if verdicts else entry


def iter_records(uri: str) -> Iterator[ImageRecord]:
    """Stream the effective records: the newest record per source, people's verdicts folded in."""
    for line_no, text, verdicts in effective_lines(uri):
        yield _record(uri, line_no, text, verdicts)


def _plain(word: str) -> bool:
    return word.isascii() and word.isprintable() and '"' not in word and "\\" not in word


def _view(uri: str, line_no: int, text: str, verdicts: list[Verdict] | None) -> RecordView:
    try:
        view = RECORD_VIEW.validate_json(text)
    except ValidationError as exc:
        raise _invalid(uri, line_no, exc) from None
    if verdicts:
        view["review"] = [*view["review"], *verdicts]
    return view


def iter_records_mentioning(uri: str, words: Iterable[str]) -> Iterator[RecordView | None]:
    """The views (`views.RecordView`) of the effective records, as exports read them; a record
    whose line names none of `words` (case-insensitively) and has no verdict is not parsed: None
    stands in for it (see `records_from`)."""
    return records_from(uri, effective_lines(uri), words)


def records_from(uri: str, lines: Iterable[Line], words: Iterable[str]) -> Iterator[RecordView | None]:
    """The record views of `lines` (from `effective_lines(uri)`), parsing only those that name a word.

    For selections over a few labels in a big manifest most records name none of them, and
    skipping their validation is most of an export's time. A line with JSON escapes (or a word
    JSON would escape) is always parsed, so no record that could match is ever passed over.
    """
    wanted = [word.lower() for word in words]
    check = bool(wanted) and all(_plain(word) for word in wanted)
    for line_no, text, verdicts in lines:
        if check and not verdicts and "\\u" not in text:
            lowered = text.lower()
            for word in wanted:  # a loop, not any(): no generator per line on the hot path
                if word in lowered:
                    break
            else:
                yield None
                continue
        yield _view(uri, line_no, text, verdicts)


def iter_raw(uri: str) -> Iterator[ImageRecord | VerdictEntry]:
    """Every line as written, in order, validated."""
    for line_no, text in iter_lines(uri):
        yield parse_line(uri, line_no, text)


def to_line(entry: ImageRecord | VerdictEntry) -> str:
    return entry.model_dump_json() + "\n"


def local_manifest(text: str | Path, *, purpose: str) -> Path:
    """The local file a `purpose` ("scan", "review" …) appends to; UsageError (exit 2) for an S3
    manifest (append-only and locked is not possible there) or anything `uri.parse` refuses."""
    location = uri_module.parse(str(text), what="manifest")
    if isinstance(location, uri_module.S3Location):
        raise UsageError(
            f"{location}: a {purpose} appends to its manifest one line at a time, under a lock, which "
            "S3 objects cannot do. Use a local manifest (e.g. -o m.jsonl), then publish it whole with "
            f"`labelsift merge m.jsonl -o {location}`; to work on one already on S3, fetch it first with "
            f"`labelsift merge {location} -o m.jsonl`."
        )
    refuse_special_file(str(text), location.path)  # before its lock file is made beside it
    return location.path


def _appendable(path: Path) -> None:
    """Plain and `.gz` manifests grow by appending; other compressions are refused (exit 2)."""
    kind = _compression(path.name)
    if kind not in ("", ".gz"):
        raise UsageError(
            f"{path}: labelsift appends only to plain (.jsonl) and gzip (.jsonl.gz) manifests, not to "
            f"{kind} files. Append to {path.name[: -len(kind)]} or a .jsonl.gz instead; `labelsift merge "
            f"IN -o {path.name}` writes a {kind} manifest whole."
        )


def repair(path: str | Path) -> int:
    """Cut a torn last line (or, for `.gz`, a torn last member) off a local manifest; returns how
    many bytes were removed. A `.gz` that is damaged, or cut short anywhere but inside its last
    line, is refused (TruncatedManifest, exit 4): cutting it would lose whole records."""
    target = Path(path).expanduser()
    if not target.exists() or target.stat().st_size == 0:
        return 0
    _appendable(target)
    if _compression(target.name) == ".gz":
        return _repair_gzip(target)
    return _repair_plain(target)


def _repair_gzip(target: Path) -> int:
    if tail_is_whole(target):
        return 0
    tail = check_tail(target)
    if tail.corrupt is None and tail.torn == 0:
        return 0
    if tail.corrupt is not None or tail.torn_lines:
        raise _gzip_refusal(str(target), target)
    with target.open("rb+") as stream:
        stream.truncate(tail.whole_end)
    log.warning(
        "%s: removed a torn last gzip member (%d bytes, part of one line) left by a run that was "
        "killed while writing it; that image will be scanned again",
        target,
        tail.torn,
    )
    return tail.torn


def _repair_plain(target: Path) -> int:
    with target.open("rb+") as stream:
        stream.seek(0, os.SEEK_END)
        size = stream.tell()
        stream.seek(size - 1)
        if stream.read(1) == b"\n":
            return 0
        block = 1 << 16
        position = size
        cut = 0
        while position > 0:
            if size - position > MAX_LINE:  # no killed run leaves that much of one line: not ours
                raise _too_long(str(target), _lines_before(stream, position) + 1)
            start = max(0, position - block)
            stream.seek(start)
            chunk = stream.read(position - start)
            newline = chunk.rfind(b"\n")
            if newline >= 0:
                cut = start + newline + 1
                break
            position = start
        if size - cut > MAX_LINE:
            raise _too_long(str(target), _lines_before(stream, cut) + 1)
        stream.seek(cut)
        torn = stream.read()
        if _parses(torn.decode("utf-8", errors="replace")):
            stream.write(b"\n")
            log.warning("%s: the last line had no newline; added one", target)
            return 0
        if not _written_by_us(torn):
            raise ManifestError(
                str(target), _lines_before(stream, cut) + 1,
                f"the file ends in {len(torn)} bytes without a newline that are not part of a record "
                "labelsift writes (a killed run leaves the start of one, `{\"source\":…`), so nothing "
                "is cut. If this is a manifest, end that line with a newline or delete it; if it is "
                "not (a gzip manifest named .jsonl: rename it .jsonl.gz), give -o another file",
            )  # fmt: skip
        stream.truncate(cut)
    log.warning(
        "%s: removed a torn last line (%d bytes) left by a run that was killed while writing it; "
        "that image will be scanned again",
        target,
        len(torn),
    )
    return len(torn)


_LINE_STARTS = (b'{"source":', b'{"kind":')  # how the writer starts each line (spaces aside)


def _written_by_us(torn: bytes) -> bool:
    """Whether `torn` (a last line without newline) can be what a killed writer left: the start of
    a record or verdict line (JSON spacing aside). Anything else (compressed bytes, someone's text)
    is not labelsift's to cut."""
    head = torn[:64].translate(None, b" \t\r")
    if not head:  # only blanks: nothing is lost by cutting them
        return True
    return any(head.startswith(start) or start.startswith(head) for start in _LINE_STARTS)


def _lines_before(stream: IO[bytes], end: int) -> int:
    """How many newlines the first `end` bytes of `stream` hold (read in chunks)."""
    stream.seek(0)
    count = 0
    while end > 0 and (chunk := stream.read(min(end, 1 << 20))):
        count += chunk.count(b"\n")
        end -= len(chunk)
    return count


class ManifestWriter(AbstractContextManager["ManifestWriter"]):
    """Appends whole lines to a local manifest, one write per record; thread-safe.

    Holds the manifest's lock (`ManifestLock`: one writer at a time) from construction to
    `close()`, unless given one the caller holds. A `.gz` manifest grows by one gzip member per
    record (`gzip_members`). Opening repairs a torn last line or member first.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        fsync_every: int = 0,
        purpose: str = "scan",
        lock: ManifestLock | None = None,
    ) -> None:
        self.path = local_manifest(path, purpose=purpose)
        _appendable(self.path)
        self._lock_file = lock if lock is not None else ManifestLock(self.path, purpose=purpose)
        self._own_lock = lock is None
        try:
            self._compressed = _compression(self.path.name) == ".gz"
            if _local_file(str(self.path)) is not None:
                repair(self.path)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            self._release_lock()
            raise storage_error(exc, str(self.path), "open the manifest for appending") from exc
        except BaseException:
            self._release_lock()
            raise
        try:
            self._lock_file.hold_file()  # the file itself, now that it exists (hard links to it)
        except BaseException:
            os.close(self._fd)
            self._release_lock()
            raise
        self._lock = threading.Lock()
        self._fsync_every = fsync_every
        self._written = 0

    def append(self, entry: ImageRecord | VerdictEntry) -> None:
        line = to_line(entry)
        data = member(line) if self._compressed else line.encode("utf-8")
        with self._lock:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(self._fd, view) :]
                self._written += 1
                if self._fsync_every and self._written % self._fsync_every == 0:
                    os.fsync(self._fd)
            except OSError as exc:
                raise storage_error(exc, str(self.path), "append to the manifest") from exc

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                try:
                    os.fsync(self._fd)
                finally:
                    os.close(self._fd)
                    self._fd = -1
                    self._release_lock()

    def _release_lock(self) -> None:
        if self._own_lock:
            self._lock_file.release()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def append_verdict(path: str | Path, source: str, verdict: Verdict) -> None:
    with ManifestWriter(path, fsync_every=1, purpose="review") as writer:
        writer.append(VerdictEntry(source=source, verdict=verdict))


def write_records(uri: str, entries: Iterable[ImageRecord | VerdictEntry]) -> int:
    """Write a whole manifest to any smart-open URI (local, `.gz`, `s3://`); returns lines written.

    It appears whole or not at all (`whole_output.write_whole`): what was there before stays until
    the new one is complete."""

    def fill(stream: IO[str]) -> int:
        count = 0
        for entry in entries:
            stream.write(to_line(entry))
            count += 1
        return count

    return write_whole(uri, fill)


@dataclass(frozen=True)
class MergeResult:
    records: int
    verdicts: int
    superseded: int


def claim_output(shards: list[str], output: str, *, overwrite: bool) -> None:
    """Before anything is read: an output among the inputs is refused (exit 2), and an existing
    output without `overwrite` (exit 3)."""
    refuse_output_among_inputs(shards, output, what="merged manifest")
    for shard in shards:
        _target(shard)
    for shard in shards:  # a typo must not make a merged manifest without that shard, exit 0
        if not exists(shard):
            raise ManifestUnreadable(
                f"{uri_module.shown(shard)}: no such manifest, so the merge would leave its records "
                "out. Check the name (nothing was written)."
            )
    location = uri_module.parse(output, what="merged manifest")
    if isinstance(location, uri_module.LocalLocation):
        refuse_special_file(str(output), location.path)  # never renamed over, even with --overwrite
    if exists(output) and not overwrite:
        raise CannotProceed(
            f"{uri_module.shown(output)} already exists. Pass --overwrite to replace it with the merged "
            "manifest (it is replaced whole once the merge is complete), or write to another name."
        )


def _expanded(inputs: list[str], output: str) -> list[str]:
    """The shards of `inputs` (a folder or `s3://` prefix stands for the shards in it), each once;
    an output inside an input folder is refused (the next merge would read it as a shard)."""
    shards: list[str] = []
    folders: list[str] = []
    for text in inputs:
        found = expand_manifest_inputs(text)
        if found != [text]:
            folders.append(text)
        shards.extend(found)
    inside = inside_folder(folders, output)
    if inside is not None:
        raise UsageError(
            f"{uri_module.shown(output)} is inside {uri_module.shown(inside)}, which is read as shards: "
            "the next merge of it would read the merged manifest as one more shard. Write it elsewhere."
        )
    return list(dict.fromkeys(shards))


def merge(shards: list[str], output: str, *, overwrite: bool = False) -> MergeResult:
    """Merge manifests into one: the newest record per source (by `scanned_at`) wins; verdicts kept.

    A folder or `s3://` prefix among `shards` stands for the `*.jsonl`/`*.jsonl.gz` shards in it
    (`manifest_inputs.expand_manifest_inputs`). Two streaming passes over the shards, the
    bookkeeping in an on-disk index. The output is written whole (`write_records`); it may not be
    one of the shards, and replaces an existing file only with `overwrite`. A local output is
    locked like a scan's manifest meanwhile.
    """
    shards = _expanded(shards, output)
    claim_output(shards, output, overwrite=overwrite)
    location = uri_module.parse(output, what="merged manifest")
    lock = None
    if isinstance(location, uri_module.LocalLocation):
        lock = ManifestLock(location.path, purpose="merge")
    try:
        return _merge_into(shards, output)
    finally:
        if lock is not None:
            lock.release()


def _merge_into(shards: list[str], output: str) -> MergeResult:
    with SourceIndex() as index:
        total = sum(_index_into(index, shard, shard_no, None) for shard_no, shard in enumerate(shards))
        records = 0
        verdicts = 0
        places = _Winners(index)

        def winners() -> Iterator[ImageRecord | VerdictEntry]:
            nonlocal records, verdicts
            for shard_no, shard in enumerate(shards):
                for line_no, text in iter_lines(shard):
                    if not is_verdict(text):
                        if not places.wins(shard_no, line_no):
                            continue
                        records += 1
                    else:
                        verdicts += 1
                    yield parse_line(shard, line_no, text)

        write_records(output, winners())
    return MergeResult(records=records, verdicts=verdicts, superseded=total - records)

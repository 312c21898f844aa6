"""Writing manifests: appending whole lines under the manifest's lock, or writing one whole."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterable
from contextlib import AbstractContextManager
from pathlib import Path
from types import TracebackType
from typing import IO

from labelsift.gzip_members import member
from labelsift.manifest.files import compression, local_file, local_manifest, require_appendable
from labelsift.manifest.lock import ManifestLock
from labelsift.manifest.parsing import to_line
from labelsift.manifest.repairing import repair
from labelsift.models import ImageRecord, Verdict, VerdictEntry
from labelsift.storage import storage_error
from labelsift.whole_output import write_whole


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
        require_appendable(self.path)
        self._lock_file = lock if lock is not None else ManifestLock(self.path, purpose=purpose)
        self._own_lock = lock is None
        try:
            self._compressed = compression(self.path.name) == ".gz"
            if local_file(str(self.path)) is not None:
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
                self._write_whole(data)
                self._written += 1
                if self._fsync_every and self._written % self._fsync_every == 0:
                    os.fsync(self._fd)
            except OSError as exc:
                raise storage_error(exc, str(self.path), "append to the manifest") from exc

    def _write_whole(self, data: bytes) -> None:
        """Write one line (or gzip member) whole, or take back what of it was written: a full disk
        may take all of a line but its newline, and a record counted as not written must not stay."""
        start = os.lseek(self._fd, 0, os.SEEK_END)  # O_APPEND: where this line begins
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except BaseException:  # a full disk, an I/O error, or a second Ctrl-C between two writes
            if len(view) < len(data):
                with contextlib.suppress(OSError):  # then the next writer's repair cuts it
                    os.ftruncate(self._fd, start)
            raise

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

"""labelsift filter: copy each hit to DEST/FOLDER/<key> while the scan goes on."""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from labelsift import uri
from labelsift.errors import UsageError
from labelsift.storage import ObjectInfo, Storage, StorageError, is_s3, join, split_s3


def hit_destination(dest: str, folder: str, hit: ObjectInfo) -> str:
    """DEST/FOLDER/<key>: the full S3 key for S3 sources, the path under the scanned folder otherwise."""
    key = split_s3(hit.uri)[1] if is_s3(hit.uri) else hit.key
    return join(join(dest, folder), key.lstrip("/"))


def refuse_inside(source: str, dest: str, folder: str) -> None:
    """UsageError when hits copied to DEST/FOLDER would land in `source`: a rerun would list
    them, scan (and pay for) them again and copy them one folder deeper."""
    outer = uri.parse(source, what="source")
    uri.parse(dest, what="destination")
    if any(part in ("", ".", "..") for part in folder.split("/")) or folder.startswith("/"):
        raise UsageError(
            f"--name {folder!r}: the folder under DEST must be a plain relative name (no '.', '..' or "
            "empty segment), e.g. --name robins."
        )
    destination = join(dest, folder)
    inner = uri.parse(destination, what="destination")
    if uri.inside(outer, inner):
        raise UsageError(
            f"{uri.shown(destination)} is inside the source {uri.shown(source)}: the copies would be "
            "listed and scanned again. Copy the hits to a folder or prefix outside the source."
        )
    if isinstance(inner, uri.LocalLocation):
        _refuse_file_in_the_way(dest, inner.path)


def _refuse_file_in_the_way(dest: str, path: Path) -> None:
    """UsageError when DEST/FOLDER, or a folder on the way to it, exists and is not a folder: every
    copy would fail, after the scan had been paid for."""
    for step in (path, *path.parents):
        if os.path.lexists(step):
            if not step.is_dir():
                raise UsageError(
                    f"{uri.shown(dest)}: {step} is a file, not a folder, so no hit could be copied under "
                    "it. Give DEST as a folder (new or existing)."
                )
            return


@dataclass(frozen=True)
class CopyResult:
    hits: int
    copied: int
    already_there: int


class HitCopier:
    """A scan's `on_hit` callback: copies run in a small pool, counted as they finish.

    `close()` waits for them and raises the first StorageError (e.g. "Exists": a different object
    is at the destination and `overwrite` is off).
    """

    def __init__(
        self, storage: Storage, dest: str, folder: str, *, overwrite: bool = False, workers: int = 8
    ):
        uri.parse(dest, what="destination")  # refused before anything is scanned or paid for
        self._storage = storage
        self._dest = dest
        self._folder = folder
        self._overwrite = overwrite
        self._pool = ThreadPoolExecutor(workers, "labelsift-copy")
        self._lock = threading.Lock()
        self._hits = self._copied = self._already = 0
        self._failure: StorageError | None = None

    @property
    def destination(self) -> str:
        return join(self._dest, self._folder)

    def __call__(self, hit: ObjectInfo) -> None:
        with self._lock:
            self._hits += 1
            if self._failure is not None:
                return
        target = hit_destination(self._dest, self._folder, hit)
        self._pool.submit(self._storage.copy, hit.uri, target, overwrite=self._overwrite).add_done_callback(
            self._count
        )

    def _count(self, future: Future[bool]) -> None:
        error = future.exception()
        with self._lock:
            if isinstance(error, StorageError):
                self._failure = self._failure or error
            elif error is not None:
                raise error
            elif future.result():
                self._copied += 1
            else:
                self._already += 1

    def close(self) -> CopyResult:
        self._pool.shutdown(wait=True)
        if self._failure is not None:
            raise self._failure
        return CopyResult(hits=self._hits, copied=self._copied, already_there=self._already)

    def __enter__(self) -> HitCopier:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._pool.shutdown(wait=True)

"""Local files as storage: sources checked before a copy, etags from stat, reads bounded, writes whole
(temporary name, then rename).
"""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
import shutil
import stat as stat_module
from collections.abc import Callable
from contextlib import suppress
from typing import IO, TYPE_CHECKING, Any

from labelsift.errors import UsageError
from labelsift.storage.errors import StorageError, changed_error, too_large_error
from labelsift.storage.faults import raise_mapped
from labelsift.storage.paths import local_path
from labelsift.uri import parse_recorded

if TYPE_CHECKING:
    pass


TMP_PREFIX = ".labelsift-"
TMP_SUFFIX = ".tmp"


_HASH_CHUNK = 1024**2


def strip_etag(etag: str | None) -> str | None:
    return etag.strip('"') if etag else None


def local_etag(stat: os.stat_result) -> str:
    return f"{stat.st_mtime_ns:x}-{stat.st_size:x}"


def check_local_source(path: str) -> None:
    """A local source to copy from: canonical, and a regular file (a FIFO would block the copy for
    ever, a device like /dev/zero never end)."""
    try:
        parse_recorded(path)
    except UsageError as exc:
        raise StorageError("UnsafeSource", path, f"Not copying {exc}") from None
    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        raise_mapped(error, path, "read")
    if not stat_module.S_ISREG(mode):
        raise StorageError(
            "NotAFile",
            path,
            f"Not copying {path}: it is not a regular file (a folder, FIFO, socket or device). "
            "A scan never records one; fix the manifest line.",
        )


def same_bytes(first: str, second: str) -> bool:
    """Whether two local files hold the same bytes, compared in chunks (never from a cache: a file
    rewritten with its old size and mtime is still compared by content)."""
    with open(first, "rb") as a, open(second, "rb") as b:
        if os.fstat(a.fileno()).st_size != os.fstat(b.fileno()).st_size:
            return False
        while True:
            chunk = a.read(_HASH_CHUNK)
            if chunk != b.read(_HASH_CHUNK):
                return False
            if not chunk:
                return True


def s3_etag_of_file(path: str, part_size: int | None = None) -> str:
    """The ETag S3 gives this file's bytes in one PUT (its MD5), or uploaded in `part_size` parts
    (the MD5 of the parts' MD5s, then `-<parts>`). Read in chunks: memory stays flat."""
    with open(path, "rb") as handle:
        if part_size is None:
            return hashlib.file_digest(handle, lambda: hashlib.md5(usedforsecurity=False)).hexdigest()
        digests: list[bytes] = []
        while True:
            part = hashlib.md5(usedforsecurity=False)
            left = part_size
            while left > 0:
                chunk = handle.read(min(_HASH_CHUNK, left))
                if not chunk:
                    break
                part.update(chunk)
                left -= len(chunk)
            if left == part_size:
                break
            digests.append(part.digest())
            if left > 0:
                break
    whole = hashlib.md5(b"".join(digests), usedforsecurity=False).hexdigest()
    return f"{whole}-{len(digests)}"


def _open_regular(uri: str) -> IO[bytes]:
    """The local file opened for reading, refused unless it is a regular file: opening a FIFO
    blocks for ever, a device such as /dev/zero never ends (opened non-blocking, checked with
    fstat, then switched back to blocking reads)."""
    try:
        fd = os.open(local_path(uri), os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as error:
        raise_mapped(error, uri, "read")
    mode = os.fstat(fd).st_mode
    if stat_module.S_ISDIR(mode):  # what open() says of a folder, mapped as it always was
        os.close(fd)
        raise_mapped(IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), local_path(uri)), uri, "read")
    if not stat_module.S_ISREG(mode):
        os.close(fd)
        raise StorageError(
            "NotAFile", uri, f"Not reading {uri}: it is not a regular file (a FIFO, socket or device)."
        )
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def open_local(uri: str, limit: int | None, if_match: str | None) -> IO[bytes]:
    """The local file opened for reading, after its etag and size checks."""
    handle = _open_regular(uri)
    try:
        check_local_etag(handle, uri, if_match)
        size = os.fstat(handle.fileno()).st_size
        if limit is not None and size > limit:
            raise too_large_error(uri, size, limit)
    except BaseException:
        handle.close()
        raise
    return handle


def check_local_etag(handle: Any, uri: str, etag: str | None) -> None:
    if etag and local_etag(os.fstat(handle.fileno())) != etag:
        raise changed_error(uri, "read")


def write_local_whole(path: str, fill: Callable[[Any], None]) -> None:
    """Write through `fill(file)` into a temporary sibling, then rename it over `path`."""
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f"{TMP_PREFIX}{secrets.token_hex(8)}{TMP_SUFFIX}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, unlike mkstemp
    try:
        with os.fdopen(fd, "wb") as handle:
            fill(handle)
        os.replace(tmp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def remove_local(path: str) -> int:
    """Delete a file, or a folder and everything in it; how many files went (0 if nothing was there)."""
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            count = sum(len(files) for _, _, files in os.walk(path))
            shutil.rmtree(path)
            return count
        os.unlink(path)
    except FileNotFoundError:
        return 0
    return 1

"""One writer per manifest: an OS lock on a sidecar `<manifest>.lock` file, beside the file the
manifest's path resolves to (a symlink to a manifest takes the same lock; a hard link does not).

`fcntl.flock` belongs to the open file, so the kernel drops it when the holder exits however it
exits (SIGKILL and power loss included): no stale lock ever blocks the next run. The holder writes
who it is (pid, host, command, since when) into the lock file, for the message the next writer
shows. Two writers started at the same instant: the kernel lets exactly one take the lock.

The lock file is removed on release. A writer that took the lock on a file another just removed
(the path now names a new file, or none) lets it go and tries again, so two writers never hold
locks on two different files of one name.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from labelsift.errors import CannotProceed
from labelsift.storage import storage_error
from labelsift.uri import shown

LOCK_SUFFIX = ".lock"


class ManifestInUse(CannotProceed):
    """Another process is writing the manifest (a scan, a review, an import or a merge)."""


def lock_path(manifest: Path) -> Path:
    """Beside the file the path resolves to, so a symlink to a manifest shares its lock."""
    real = Path(os.path.realpath(manifest))
    return real.with_name(real.name + LOCK_SUFFIX)


def _command_line() -> str:
    """This process's command line as people typed it, URL queries cut off (they may be signed)."""
    words = [os.path.basename(sys.argv[0]) or "labelsift", *sys.argv[1:]] if sys.argv else ["labelsift"]
    if words[0] in ("__main__.py", "cli.py", "-m", "-c"):
        words[0] = "labelsift"
    return " ".join(shown(word) for word in words)


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        return f"pid {info['pid']} on {info['host']}, `{info['command']}`, since {info['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that has not said who it is yet"


class ManifestLock(AbstractContextManager["ManifestLock"]):
    """Held from construction until `release()`; raises ManifestInUse if another process holds it."""

    def __init__(self, manifest: Path, *, purpose: str) -> None:
        self.manifest = manifest
        self.path = lock_path(manifest)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = self._acquire(purpose)
        except OSError as exc:
            raise storage_error(exc, str(self.path), f"create the lock file of {manifest} at") from exc
        try:
            self._write_holder()
        except BaseException:
            self.release()
            raise

    def _acquire(self, purpose: str) -> int:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise ManifestInUse(
                    f"{self.manifest} is in use: {_holder(self.path)} is writing it. Two writers on one "
                    f"manifest would pay for the same images twice, so this {purpose} stops before "
                    "listing or labelling anything. Wait for that one to finish (or stop it), then "
                    "run again; or write to another manifest and `labelsift merge` them later."
                ) from None
            except BaseException:
                os.close(fd)
                raise
            if self._still_ours(fd):
                return fd
            os.close(fd)  # the holder removed this file as we opened it: take the new one

    def _still_ours(self, fd: int) -> bool:
        try:
            here = os.stat(self.path)
        except FileNotFoundError:
            return False
        held = os.fstat(fd)
        return (here.st_dev, here.st_ino) == (held.st_dev, held.st_ino)

    def _write_holder(self) -> None:
        since = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        info = {"pid": os.getpid(), "host": socket.gethostname(), "command": _command_line(), "since": since}
        data = (json.dumps(info) + "\n").encode("utf-8")
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def release(self) -> None:
        if self._fd < 0:
            return
        try:
            if self._still_ours(self._fd):
                self.path.unlink()
        finally:
            os.close(self._fd)  # closing the file drops the lock
            self._fd = -1

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

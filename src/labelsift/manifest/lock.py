"""One writer per manifest: an OS lock on a sidecar `<manifest>.lock` file, beside the file the
manifest's path resolves to (a symlink to a manifest takes the same lock), and on the manifest file
itself once it exists (so a hard link to it, whose sidecar has another name, is held too).

`fcntl.flock` belongs to the open file, so the kernel drops it when the holder exits however it
exits (SIGKILL and power loss included): no stale lock ever blocks the next run. The holder writes
who it is (pid, host, command, since when) into the lock file, for the message the next writer
shows. Two writers started at the same instant: the kernel lets exactly one take the lock.

The lock file is removed on release. A writer that took the lock on a file another just removed
(the path now names a new file, or none) lets it go and tries again, so two writers never hold
locks on two different files of one name.

The sidecar is only ever a regular file with one name: a `.lock` someone planted as a symbolic
link, a hard link to another file, a folder, a FIFO or a device is refused (exit 3, naming it),
never opened through, truncated or deleted.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import stat
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


class NotALockFile(CannotProceed):
    """The lock file's name is taken by something labelsift did not make (a link, a folder …)."""


def _not_a_lock(path: Path, what: str, manifest: Path) -> NotALockFile:
    return NotALockFile(
        f"{path} is {what}, not the lock file labelsift makes beside {manifest}. labelsift neither "
        "writes through it nor deletes it: move it away (it is not a lock that labelsift left), then "
        "run again."
    )


def _kind(mode: int, links: int) -> str | None:
    """What makes a file at the lock's name not a lock file of ours; None for a plain one."""
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a folder"
    if not stat.S_ISREG(mode):
        return "not a regular file (a FIFO, socket or device)"
    if links != 1:
        return f"a hard link ({links} names for one file)"
    return None


def lock_path(manifest: Path) -> Path:
    """Beside the file the path resolves to, so a symlink to a manifest shares its lock."""
    real = Path(os.path.realpath(manifest))
    return real.with_name(real.name + LOCK_SUFFIX)


def _command_line() -> str:
    """This process's command line as people typed it, URL queries cut off (they may be signed)."""
    words = [os.path.basename(sys.argv[0]) or "labelsift", *sys.argv[1:]] if sys.argv else ["labelsift"]
    if words[0] in ("__main__.py", "-m", "-c"):  # `python -m labelsift.cli`, or a -c script
        words[0] = "labelsift"
    return " ".join(shown(word) for word in words)


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        return f"pid {info['pid']} on {info['host']}, `{info['command']}`, since {info['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that has not said who it is yet"


def _file_holder(held: os.stat_result) -> str:
    """Who holds an flock on the file `held` describes, from Linux's /proc/locks (pid and command)."""
    wanted = (f"{os.major(held.st_dev):02x}:{os.minor(held.st_dev):02x}", str(held.st_ino))
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as table:
            for row in table:
                fields = row.split()
                if len(fields) < 6 or fields[1] != "FLOCK" or fields[3] != "WRITE":
                    continue
                device, _, ino = fields[5].rpartition(":")  # major:minor:inode
                if (device, ino) == wanted and fields[4] != str(os.getpid()):
                    return f"pid {fields[4]} ({_command_of(fields[4])})"
    except OSError:
        pass
    return "another process"


def _command_of(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            words = [w.decode("utf-8", "replace") for w in cmdline.read().split(b"\0") if w]
    except OSError:
        return "its command is not known"
    return "`" + " ".join(shown(word) for word in words) + "`"


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
        self._file_fd = -1
        self._purpose = purpose
        try:
            self._write_holder()
            self.hold_file()
        except BaseException:
            self.release()
            raise

    def hold_file(self) -> None:
        """Lock the manifest file itself too, once it exists (the writer calls this after creating
        it): a hard link to it has a sidecar of another name, but the same file."""
        if self._file_fd >= 0:
            return
        try:
            fd = os.open(self.manifest, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise storage_error(exc, str(self.manifest), "open the manifest for locking") from exc
        try:
            held = os.fstat(fd)
            if not stat.S_ISREG(held.st_mode):  # a folder: the reader or writer names it
                os.close(fd)
                return
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ManifestInUse(
                f"{self.manifest} is in use under another name (a hard link to it): "
                f"{_file_holder(held)} is writing it. Two writers on one manifest would pay for the "
                f"same images twice, so this {self._purpose} stops before listing or labelling "
                "anything. Wait for that one to finish (or stop it), then run again."
            ) from None
        except OSError as exc:  # a file system without flock: named, like the sidecar's
            os.close(fd)
            raise storage_error(exc, str(self.manifest), "lock the manifest") from exc
        except BaseException:
            os.close(fd)
            raise
        self._file_fd = fd

    def _open_lock_file(self) -> int:
        try:
            there = os.lstat(self.path)
        except FileNotFoundError:
            pass
        else:
            why = _kind(there.st_mode, there.st_nlink)
            if why:  # never opened: a FIFO would block, a device would act
                raise _not_a_lock(self.path, why, self.manifest)
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
        try:
            fd = os.open(self.path, flags, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # made a link since the lstat
                raise _not_a_lock(self.path, "a symbolic link", self.manifest) from None
            raise
        held = os.fstat(fd)
        why = _kind(held.st_mode, held.st_nlink)
        if why:
            os.close(fd)
            raise _not_a_lock(self.path, why, self.manifest)
        return fd

    def _acquire(self, purpose: str) -> int:
        while True:
            fd = self._open_lock_file()
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
        if getattr(self, "_file_fd", -1) >= 0:
            os.close(self._file_fd)
            self._file_fd = -1
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

"""What a listing passes over, and a local walk that never dies of one entry.

A symlink loop, a broken link, an unreadable sub-folder, a FIFO, a symlinked folder (never followed:
it could lead anywhere, or back into itself) or a file in a format labelsift does not read is not
listed; each is counted in `ListingNotes` by reason, the first few named, and a scan or estimate
prints the counts. Only the root itself failing (missing, unreadable) stops a listing.

Files of unsupported formats become a count per extension, not a manifest record: a record would
have to be written (and kept, and resumed past) for every sidecar `.json`, `.txt` or `.DS_Store`
of a dataset, and no export or rescan could use it. The count says what was passed over and how
much of it there was, every time the source is listed.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath

LOOP = "symlink loop"
BROKEN_LINK = "broken link"
PERMISSION = "permission denied"
LINKED_FOLDER = "symlinked folder, not followed"
NOT_A_FILE = "not a regular file"
SAME_FILE = "another name for a file listed under its own name (a link), not scanned twice"
FOLDER_MARKER = "folder marker"
NOT_UTF8 = "name not UTF-8, rename it to scan it"
EXAMPLES = 3
# formats people keep images in that labelsift does not decode: named in the hint to convert them
KNOWN_UNSUPPORTED = frozenset({".heic", ".heif", ".avif", ".svg", ".jxl", ".raw", ".cr2", ".nef", ".dng"})


@dataclass
class ListingNotes:
    """Entries a listing did not yield: counts per reason with the first few names, and files of
    formats labelsift does not read, per extension. One listing fills it; not thread-safe."""

    reasons: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    formats: Counter[str] = field(default_factory=Counter)

    def add(self, name: str, reason: str) -> None:
        self.reasons[reason] += 1
        named = self.examples.setdefault(reason, [])
        if len(named) < EXAMPLES:
            named.append(name)

    def add_format(self, name: str) -> None:
        self.formats[PurePosixPath(name).suffix.lower() or "(no extension)"] += 1

    @property
    def total(self) -> int:
        return self.reasons.total() + self.formats.total()

    def lines(self) -> list[str]:
        """One sentence per kind of entry passed over, for a summary."""
        out: list[str] = []
        entries = self.reasons.total() - self.reasons[FOLDER_MARKER]
        if entries:
            parts = []
            for reason, count in self.reasons.most_common():
                if reason != FOLDER_MARKER:
                    names = ", ".join(self.examples[reason]) + (", …" if count > EXAMPLES else "")
                    parts.append(f"{count} {reason} ({names})")
            out.append(f"{entries} {_plural(entries, 'entry', 'entries')} not listed: {'; '.join(parts)}.")
        if self.formats:
            counts = ", ".join(f"{ext} {count}" for ext, count in self.formats.most_common())
            files = self.formats.total()
            line = f"{files} {_plural(files, 'file', 'files')} of formats labelsift does not read ({counts})"
            if KNOWN_UNSUPPORTED & set(self.formats):
                line += "; convert those images to JPEG or PNG to scan them"
            out.append(line + ".")
        if self.reasons[FOLDER_MARKER]:
            out.append(f"{self.reasons[FOLDER_MARKER]} S3 folder markers (keys ending in /) ignored.")
        return out


def _plural(count: int, one: str, many: str) -> str:
    return one if count == 1 else many


def _reason(error: OSError) -> str:
    if error.errno == errno.ELOOP:
        return LOOP
    if isinstance(error, FileNotFoundError):
        return BROKEN_LINK
    if isinstance(error, PermissionError):
        return PERMISSION
    return error.strerror or type(error).__name__


def walk_local(base: str, notes: ListingNotes) -> Iterator[tuple[str, str, os.stat_result]]:
    """Regular files under the folder `base` as (key, path, stat), in the byte order S3 lists keys
    in (a folder `a` sorts as `a/`). An unreadable `base` raises OSError; anything below it that
    cannot be listed goes into `notes`, named by its key."""
    real = os.path.realpath(base)
    yield from _walk(base, "", notes, _Names(real))


class _Names:
    """Which files a walk reaches by another name too: a symbolic link to a file inside the root
    (the walk lists the file itself), or a second hard link to a file already yielded. One image
    is one source: paying for it once per name would pay twice for the same pixels. Only names
    with the same extension count as one (`a.dat` and `a.jpg` are not listed alike)."""

    def __init__(self, real_base: str) -> None:
        self._base = real_base
        self._inodes: set[tuple[int, int, str]] = set()  # only files with more than one hard link

    def elsewhere(self, entry: os.DirEntry[str], info: os.stat_result) -> bool:
        suffix = os.path.splitext(entry.name)[1].lower()
        if entry.is_symlink():
            target = os.path.realpath(entry.path)
            inside = os.path.commonpath([self._base, target]) == self._base
            if inside and os.path.splitext(target)[1].lower() == suffix:
                return True
        if info.st_nlink > 1:
            inode = (info.st_dev, info.st_ino, suffix)
            if inode in self._inodes:
                return True
            self._inodes.add(inode)
        return False


def _walk(
    folder: str, prefix: str, notes: ListingNotes, names: _Names
) -> Iterator[tuple[str, str, os.stat_result]]:
    try:
        with os.scandir(folder) as scan:
            entries = sorted(scan, key=lambda e: e.name + "/" if _is_folder(e) else e.name)
    except OSError as error:
        if not prefix:
            raise
        notes.add(prefix, _reason(error))
        return
    for entry in entries:
        key = prefix + entry.name
        if not _utf8(entry.name):  # a manifest (JSON, UTF-8) cannot record it, nor S3 hold it
            notes.add(printable(key) + ("/" if _is_folder(entry) else ""), NOT_UTF8)
            continue
        if _is_folder(entry):
            yield from _walk(entry.path, key + "/", notes, names)
            continue
        try:
            info = os.stat(entry.path) if entry.is_symlink() else entry.stat(follow_symlinks=False)
        except OSError as error:
            notes.add(key, _reason(error))
            continue
        if stat.S_ISREG(info.st_mode):
            if names.elsewhere(entry, info):
                notes.add(key, SAME_FILE)
                continue
            yield key, entry.path, info
        else:
            notes.add(key, LINKED_FOLDER if stat.S_ISDIR(info.st_mode) else NOT_A_FILE)


def _utf8(name: str) -> bool:
    """Whether a name from the file system (bytes that are not UTF-8 become lone surrogates) is
    UTF-8 text."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable(name: str) -> str:
    """`name` with the bytes that are not UTF-8 shown as `\\xNN`, to print or record."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _is_folder(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False

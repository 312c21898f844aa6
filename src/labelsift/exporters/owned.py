"""The part of a destination an export owns: what it may replace, what it must leave alone, and how
its files appear whole or not at all.

- Ownership: a file is labelsift's when the destination's receipt (`receipt.py`) lists it and its
  size is still the one recorded. Only such files are replaced or deleted. Any other file where the
  export must write stops it (`NameClash`, exit 3) before anything is visible at the destination.
- Local destinations: everything the export writes goes to a staging folder inside the destination
  (`.labelsift-staging-<key>-<token>/`), locked by the running export. Only when the whole export
  is done is it moved into place (one rename per new folder, or per file where the folder already
  exists), the files of the earlier export it no longer writes are deleted, and the receipt is
  renamed into place last. An export that fails or is interrupted leaves the earlier state; its
  staging folder is recognised by name and removed by the next export (never while its export runs).
- S3 destinations: each object is written whole (PUT, multipart uploads aborted on error). An export
  that fails writes a pending receipt of what it wrote, so its rerun takes those objects as its own.
- Symbolic links inside a local destination are never followed out of it: a link where the export
  must write (a folder or a file) stops it (`UnsafeDestination`, exit 3), naming the link.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import re
import secrets
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from types import TracebackType
from typing import IO, Any, Protocol

import smart_open

from labelsift.errors import CannotProceed, LabelsiftError, UsageError
from labelsift.imagelimits import MAX_OBJECT_BYTES, ImageLimitError
from labelsift.storage import StorageError, is_s3, relative_key
from labelsift.upright import upright_bytes
from labelsift.uri import parse as parse_uri
from labelsift.uri import same_target

from .common import StorageLike, check_relative, dump_json, error_code
from .receipt import FOLDER_RECEIPT, RECEIPT_SUFFIX, Entry, ReceiptHeader, parse, render
from .records import unsafe_source
from .summary import ExportSummary

STAGING_PREFIX = ".labelsift-staging-"
_LOCK = ".labelsift-lock-"
_ENTRIES = ".entries.jsonl"
_KEY = re.compile(r"[^A-Za-z0-9_-]+")


_TITLES = {
    "custom-labels": "Custom Labels",
    "coco": "COCO",
    "yolo": "YOLO",
    "voc": "Pascal VOC",
    "review": "review queue",
    "groundtruth": "Ground Truth",
}


def _title(fmt: str) -> str:
    return _TITLES.get(fmt) or _TITLES.get(fmt.partition("-")[0], fmt)


class NameClash(CannotProceed):
    """A file labelsift did not write is where the export must write."""


class UnsafeDestination(CannotProceed):
    """A symbolic link inside the destination where the export must write."""


class DestinationBusy(CannotProceed):
    """Another export is writing the same destination."""


class TextSink(Protocol):
    def write(self, text: str, /) -> int: ...


def _why_not(error: OSError) -> str:
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return "no space left on the device"
    return "permission denied" if isinstance(error, PermissionError) else (error.strerror or str(error))


def cannot_write(where: str, error: OSError) -> CannotProceed:
    why = _why_not(error)
    return CannotProceed(
        f"cannot write {where}: {why}. Nothing of this export was left there; fix the destination "
        "(permissions, free space) or choose another, and run again."
    )


class _Hashing:
    """A text stream that counts and hashes the UTF-8 bytes written through it."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.size = 0
        self.digest = hashlib.sha256()

    def write(self, text: str, /) -> int:
        data = text.encode("utf-8")
        self.raw.write(data)
        self.digest.update(data)
        self.size += len(data)
        return len(text)


class _BinaryHashing:
    """Bytes written through a `_Hashing` text sink's raw stream, counted and hashed the same way."""

    def __init__(self, sink: _Hashing) -> None:
        self.sink = sink

    def write(self, data: bytes, /) -> int:
        self.sink.raw.write(data)
        self.sink.digest.update(data)
        self.sink.size += len(data)
        return len(data)


class OwnedOutput:
    """A destination folder (local or `s3://`) an export writes into, or one output file (`single`).

    `keep_earlier`: files of the earlier export this one does not rewrite stay (Custom Labels adds
    to its folders); otherwise they are deleted at `commit`. Without `overwrite`, an earlier export
    there (its receipt) is refused unless `keep_earlier`.
    """

    def __init__(
        self,
        root: str,
        storage: StorageLike | None,
        *,
        fmt: str,
        manifest: str,
        overwrite: bool,
        keep_earlier: bool = False,
        single: str | None = None,
    ) -> None:
        parse_uri(root, what="destination")  # a presigned or http(s) URL, `s3:/`: exit 2, never a folder
        self.local = not is_s3(root)
        self.root = os.path.abspath(os.path.expanduser(root)) if self.local else root.rstrip("/")
        self.storage = storage
        self.fmt = fmt
        self.manifest = manifest
        self.overwrite = overwrite
        self.keep_earlier = keep_earlier
        self.single = single
        self.receipt_name = f"{single}{RECEIPT_SUFFIX}" if single else FOLDER_RECEIPT
        self.owned: dict[str, Entry] = {}  # the earlier export's files still to be decided
        # a completed receipt's entries that a pending one lists anew: an export killed while
        # moving its files into place left some of them as they were, so either version is ours
        self._before: dict[str, Entry] = {}
        self.carried: list[Entry] = []
        self.sources: dict[str, int] = {}
        # sources of this export inside the destination: never deleted as the earlier export's
        self._inside: set[str] = set()
        self._prefixes = (
            (self.root + os.sep, os.path.realpath(self.root) + os.sep) if self.local else (self.root + "/",)
        )
        self._present: dict[str, int] = {}  # S3: what the destination held (key -> size) at the start
        self._dirs: dict[str, bool] = {}  # local: parent folder -> exists at the destination
        self._made: dict[str, str] = {}  # folder of a staged file -> its staged path (made)
        self._stage = ""
        self._lock: IO[str] | None = None
        self._lock_path = ""
        self._entries: IO[str] | None = None
        self._manifest_stat: os.stat_result | None = None
        self._done = False

    # -- begin ------------------------------------------------------------------------------------

    def __enter__(self) -> OwnedOutput:
        if not self.local and self.storage is None:
            raise ValueError(f"{self.root}: writing here needs a `storage`")
        self._manifest_stat = _stat_or_none(self.manifest) if not is_s3(self.manifest) else None
        if self.single and _same(self.manifest, self._final(self.single)):
            raise UsageError(
                f"{self._final(self.single)} is the manifest this export reads: writing it would destroy "
                "its input. Name another output file."
            )
        if self.local:
            self._begin_local()
        else:
            self._begin_s3()
        return self

    def _stage_key(self) -> str:
        """A file-name-safe key per output; the digest keeps `a b.manifest` and `a_b.manifest` (or
        two names alike in their first 60 characters) from sharing a lock or a staging folder."""
        if not self.single:
            return "export"
        digest = hashlib.sha256(self.single.encode("utf-8", "surrogateescape")).hexdigest()[:8]
        return f"{_KEY.sub('_', self.single)[:60]}_{digest}"

    def _begin_local(self) -> None:
        try:
            os.makedirs(self.root, exist_ok=True)
            self._take_lock()
            self._clean_debris()
            self._read_receipts(self._read_local)
            self._stage = os.path.join(
                self.root, f"{STAGING_PREFIX}{self._stage_key()}-{secrets.token_hex(6)}"
            )
            os.mkdir(self._stage)
            self._entries = open(os.path.join(self._stage, _ENTRIES), "w", encoding="utf-8")  # noqa: SIM115
        except BaseException as error:
            self._done = True
            self._release()
            if isinstance(error, OSError):
                raise cannot_write(self.root, error) from error
            raise

    def _take_lock(self) -> None:
        """Hold `.labelsift-lock-<key>` for the whole export: one export per destination at a time.
        Opened without following a link (a planted one cannot make it truncate another file); the
        holder deletes it when done, so a lock taken on a file already deleted is taken again."""
        path = os.path.join(self.root, f"{_LOCK}{self._stage_key()}")
        for _ in range(5):
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o644)
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:  # a hard link is another file itself
                os.close(fd)
                raise UnsafeDestination(
                    f"{path} is not a lock labelsift made (a hard link to another file, or not a "
                    "file); labelsift would write into it. Move it away and run again. Nothing was "
                    "written."
                )
            lock = os.fdopen(fd, "r+", encoding="utf-8")
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = lock.read().strip() or "?"
                lock.close()
                raise DestinationBusy(
                    f"another labelsift export (pid {holder}) is writing {self.root} now. Wait for it "
                    "to finish, or export somewhere else."
                ) from None
            if os.path.samestat(os.fstat(fd), os.lstat(path)):
                break
            lock.close()  # its holder deleted it meanwhile: take the new one
        else:
            raise DestinationBusy(f"{path}: could not take the export lock; run again.")
        self._lock, self._lock_path = lock, path
        lock.truncate(0)
        lock.write(f"{os.getpid()}\n")
        lock.flush()

    def _clean_debris(self) -> None:
        """Remove the staging folders of exports of this kind that died (the lock is ours: none runs)."""
        # exactly this key and a token: `export-x_manifest-…` is another export's (its own lock)
        mine = re.compile(rf"{re.escape(STAGING_PREFIX + self._stage_key())}-[0-9a-f]{{12}}")
        with os.scandir(self.root) as entries:
            stale = [e.path for e in entries if mine.fullmatch(e.name) and e.is_dir(follow_symlinks=False)]
        for path in stale:
            shutil.rmtree(path, ignore_errors=True)

    def _begin_s3(self) -> None:
        storage = self._storage()
        if self.single:
            info = storage.exists(self._final(self.single))
            if info is not None:
                self._present[self.single] = info.size
        else:
            for info in storage.list(self.root, images_only=False):
                self._present[relative_key(self.root + "/", info.uri)] = info.size
        self._entries = tempfile.TemporaryFile("w+", encoding="utf-8", prefix="labelsift-receipt-")  # noqa: SIM115
        self._read_receipts(self._read_s3)

    def _read_receipts(self, read: Any) -> None:
        earlier = read(self.receipt_name)
        pending = read(self.receipt_name + ".pending")
        if earlier is not None:
            header, files = earlier
            # Custom Labels adds to its own folders without --overwrite, never to another format's
            if not self.overwrite and not (self.keep_earlier and header.format == self.fmt):
                raise self._exists(header.format)
            self.owned.update(files)
        if pending is not None:  # an interrupted export's: its files are ours, no --overwrite needed
            if not self.overwrite and pending[0].format != self.fmt:  # ...for its own rerun only
                raise self._exists(pending[0].format, " (interrupted)")
            for rel, entry in pending[1].items():
                before = self.owned.get(rel)
                if before is not None and before != entry:
                    self._before[rel] = before
                self.owned[rel] = entry

    def _exists(self, fmt: str, how: str = "") -> StorageError:
        return StorageError(
            "Exists",
            self._final(self.single or self.receipt_name),
            f"{self._final(self.single or '')} already holds a {_title(fmt)} export{how} by labelsift. "
            "Pass --overwrite to replace it (only the files its receipt lists are replaced or "
            "deleted), or export somewhere else.",
            fatal=True,
        )

    def _read_local(self, name: str) -> tuple[ReceiptHeader, dict[str, Entry]] | None:
        path = os.path.join(self.root, name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except FileNotFoundError:
            return None
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise CannotProceed(
                    f"{path} is a symbolic link, not a receipt labelsift wrote: move it away and run again."
                ) from error
            raise cannot_write(path, error) from error
        with open(fd, encoding="utf-8", errors="replace") as handle:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise CannotProceed(f"{path} is not a file: move it away and run again.")
            return parse(path, handle)

    def _read_s3(self, name: str) -> tuple[ReceiptHeader, dict[str, Entry]] | None:
        if name not in self._present and not self.single:
            return None
        uri = self._final(name)
        storage = self._storage()
        info = storage.exists(uri)
        if info is None:
            return None
        self._present[name] = info.size
        text = storage.read(uri).decode("utf-8", errors="replace")
        return parse(uri, text.splitlines())

    # -- writing ----------------------------------------------------------------------------------

    def uri(self, rel: str) -> str:
        """Where `rel` ends up (for messages and plans)."""
        return self._final(check_relative(rel))

    def _final(self, rel: str) -> str:
        if not self.local:
            return f"{self.root}/{rel}"
        return os.path.join(self.root, *rel.split("/"))

    def _staged(self, rel: str) -> str:
        folder, _, name = rel.rpartition("/")
        parent = self._made.get(folder)
        if parent is None:
            parent = os.path.join(self._stage, *folder.split("/")) if folder else self._stage
            os.makedirs(parent, exist_ok=True)
            self._made[folder] = parent
        return f"{parent}{os.sep}{name}"

    def claim(self, rel: str) -> Entry | None:
        """Check that the export may write `rel`; the earlier receipt's entry when it is ours."""
        check_relative(rel)
        if not self.local:
            size = self._present.get(rel)
            if size is None:
                return None
            for entry in (self.owned.get(rel), self._before.get(rel)):
                if entry is not None and entry.size == size:
                    return entry
            raise self._clash(self._final(rel))
        parent = rel.rpartition("/")[0]
        there = self._dirs.get(parent)
        if there is None:
            there = self._dirs[parent] = self._check_folders(parent)
        if not there:
            return None
        final = self._final(rel)
        try:
            st = os.lstat(final)
        except FileNotFoundError:
            return None
        if stat.S_ISLNK(st.st_mode):
            raise self._link(final)
        if self._manifest_stat is not None and os.path.samestat(st, self._manifest_stat):
            raise UsageError(f"{final} is the manifest this export reads; choose another destination.")
        for entry in (self.owned.get(rel), self._before.get(rel)):
            if entry is not None and _unchanged(final, st, entry):
                return entry
        raise self._clash(final)

    def _check_folders(self, parent: str) -> bool:
        """Whether `parent` exists under the root; a link or a file on its way stops the export."""
        path = self.root
        for part in parent.split("/") if parent else ():
            path = os.path.join(path, part)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                return False
            if stat.S_ISLNK(st.st_mode):
                raise self._link(path)
            if not stat.S_ISDIR(st.st_mode):
                raise self._clash(path)
        return True

    def _clash(self, where: str) -> NameClash:
        return NameClash(
            f"{where} is in the way: labelsift did not write it (no receipt of an export here lists it, "
            "or it changed since). labelsift never replaces a file it did not write: move it away, or "
            "choose another destination, and run again. Nothing was written."
        )

    def _link(self, where: str) -> UnsafeDestination:
        return UnsafeDestination(
            f"{where} is a symbolic link inside the destination; labelsift does not write through links "
            "(it could lead out of the destination). Replace the link with a folder, or choose another "
            "destination. Nothing was written."
        )

    def _record(self, line: str) -> None:
        assert self._entries is not None
        self._entries.write(line)

    def write_bytes(self, rel: str, data: bytes) -> None:
        self.claim(rel)
        self.owned.pop(rel, None)
        digest = hashlib.sha256(data).hexdigest()
        if self.local:
            _write_file(self._staged(rel), data)
        else:
            self._storage().write(self._final(rel), data)
        self._record(f'{{"path":{_quoted(rel)},"size":{len(data)},"sha256":"{digest}"}}\n')

    @contextmanager
    def open_text(self, rel: str) -> Iterator[TextSink]:
        """A text stream to `rel`, whole or not at all."""
        self.claim(rel)
        self.owned.pop(rel, None)
        raw: Any = open(self._staged(rel), "wb") if self.local else smart_open.open(self._final(rel), "wb")  # noqa: SIM115
        sink = _Hashing(raw)
        try:
            yield sink
        except BaseException as error:
            raw.__exit__(type(error), error, error.__traceback__)
            raise
        raw.close()
        self._record(f'{{"path":{dump_json(rel)},"size":{sink.size},"sha256":"{sink.digest.hexdigest()}"}}\n')

    def write_upright(self, source: str, rel: str) -> None:
        """The source re-encoded in its displayed frame at `rel` (an owned file, like any written)."""
        try:
            data = upright_bytes(self._storage().read(source, limit=MAX_OBJECT_BYTES), source)
        except ImageLimitError as error:
            raise StorageError(error.code, source, error.message) from error
        except (OSError, ValueError, SyntaxError) as error:
            raise StorageError(
                "CorruptImage", source, f"{source}: cannot turn it upright: {error}"
            ) from error
        self.note_source(source)
        self.write_bytes(rel, data)

    @contextmanager
    def open_binary(self, rel: str) -> Iterator[_BinaryHashing]:
        """A binary stream to `rel`, whole or not at all, hashed for the receipt as it is written."""
        with self.open_text(rel) as sink:
            assert isinstance(sink, _Hashing)
            yield _BinaryHashing(sink)

    def copy_in(self, source: str, etag: str | None, rel: str, size: int | None) -> bool:
        """Copy an image to `rel`; False when the earlier export's copy of the same version is there."""
        entry = self.claim(rel)
        if entry is not None and etag and entry.source == source and entry.source_etag == etag:
            self.owned.pop(rel, None)
            self.carried.append(entry)
            self.note_source(source)
            return False
        if self.local:
            staged = self._staged(rel)
            try:
                self._storage().copy(source, staged, overwrite=True)
            except StorageError as error:  # a full disk is the destination's, not the image's
                cause = error.__cause__
                if isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise cannot_write(self.root, cause) from error
                raise
            size = os.stat(staged).st_size
        else:
            final = self._final(rel)
            storage = self._storage()
            if entry is not None:  # our stale copy: gone first, so no size check can keep it
                storage.remove(final)
            storage.copy(source, final, overwrite=True)
            info = storage.exists(final)  # the copy's own size (the record's may be stale)
            size = info.size if info is not None else size
        self.owned.pop(rel, None)
        self.note_source(source)
        tail = f',"source_etag":{dump_json(etag)}' if etag else ""
        self._record(f'{{"path":{dump_json(rel)},"size":{size or 0},"source":{dump_json(source)}{tail}}}\n')
        return True

    def note_source(self, source: str) -> None:
        """Count where an exported image is (copied here, or named by the annotations)."""
        root = source_root(source)
        self.sources[root] = self.sources.get(root, 0) + 1
        if source.startswith(self._prefixes):
            self._inside.add(source)

    def _keep_read(self, gone: dict[str, Entry]) -> None:
        """An earlier export's file that this export reads (annotations naming it in place) is
        not deleted, and stays listed as labelsift's while it is unchanged."""
        if not gone or not self._inside:
            return
        if not self.local:
            for rel in [r for r in gone if self._final(r) in self._inside]:
                entry = gone.pop(rel)
                if self._present.get(rel) == entry.size:
                    self.carried.append(entry)
            return
        ids = set()
        for source in self._inside:
            with suppress(OSError):
                st = os.stat(source)
                ids.add((st.st_dev, st.st_ino))
        for rel in list(gone):
            try:
                st = os.lstat(self._final(rel))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) in ids:
                entry = gone.pop(rel)
                if _unchanged(self._final(rel), st, entry):
                    self.carried.append(entry)

    def _storage(self) -> StorageLike:
        if self.storage is None:
            raise ValueError(f"{self.root}: copying images needs a `storage`")
        return self.storage

    # -- the end ----------------------------------------------------------------------------------

    def commit(self, summary: ExportSummary) -> None:
        """Put the export in place: its files, then the deletions, then the receipt."""
        if not (self.keep_earlier and not self.overwrite):
            gone, self.owned = self.owned, {}
            self._keep_read(gone)
        else:
            gone = {}
            self.carried.extend(self.owned.values())
        summary.sources = collapse_roots(self.sources)
        header = ReceiptHeader(
            format=self.fmt, manifest=self.manifest, destination=self.root, sources=summary.sources
        )
        try:
            if self.local:
                self._commit_local(header, gone, summary)
            else:
                self._commit_s3(header, gone, summary)
        except BaseException:
            if not self.local:  # what it wrote stays listed for the rerun
                self.owned.update(gone)
                self._write_pending()
            raise
        finally:
            self._done = True
            self._release()

    def _receipt_lines(self, header: ReceiptHeader) -> Iterator[str]:
        assert self._entries is not None
        yield from render(header, self.carried)
        self._entries.flush()
        with open(self._entries.name, encoding="utf-8") if self.local else _rewound(self._entries) as lines:
            yield from lines

    def _commit_local(self, header: ReceiptHeader, gone: dict[str, Entry], summary: ExportSummary) -> None:
        pending = os.path.join(self.root, self.receipt_name + ".pending")
        try:
            staged_receipt = os.path.join(self._stage, _ENTRIES + ".receipt")
            with open(staged_receipt, "w", encoding="utf-8") as handle:
                handle.writelines(self._receipt_lines(header))
            os.replace(staged_receipt, pending)  # from here a rerun knows every file as ours
        except OSError as error:
            raise cannot_write(self.root, error) from error
        try:
            _merge(self._stage, self.root)
            for rel, entry in gone.items():
                summary.replaced += self._prune(rel, entry)
            os.replace(pending, os.path.join(self.root, self.receipt_name))
        except OSError as error:  # part of it is in place: the pending receipt lists all of it
            raise CannotProceed(
                f"cannot write {error.filename or self.root}: {_why_not(error)}, while moving the "
                f"export into place; part of it is in {self.root} now, and {pending} lists every file "
                "of it. Fix the destination (permissions, free space) and rerun the same command: it "
                "takes those files as its own."
            ) from error

    def _prune(self, rel: str, entry: Entry) -> int:
        """Delete an earlier export's file unless someone changed it since (its size, or the SHA-256
        of a file labelsift wrote itself, differs), it is reached through a link, or it is the
        manifest being read."""
        try:
            if not self._check_folders(rel.rpartition("/")[0]):
                return 0
        except CannotProceed:
            return 0
        path = self._final(rel)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return 0
        before = self._before.get(rel)
        if not (_unchanged(path, st, entry) or (before is not None and _unchanged(path, st, before))):
            return 0
        if self._manifest_stat is not None and os.path.samestat(st, self._manifest_stat):
            return 0
        os.unlink(path)
        with suppress(OSError):
            os.removedirs(os.path.dirname(path))  # only folders left empty; the root holds the receipt
        return 1

    def _commit_s3(self, header: ReceiptHeader, gone: dict[str, Entry], summary: ExportSummary) -> None:
        storage = self._storage()
        assert self._entries is not None
        if not (self.carried or self._entries.tell() or self.receipt_name in self._present):
            return  # nothing written, nothing earlier: nothing to own
        for rel, entry in gone.items():
            sizes = (entry.size, self._before[rel].size) if rel in self._before else (entry.size,)
            if self._present.get(rel) in sizes:  # not changed by someone since
                summary.replaced += storage.remove(self._final(rel))
        storage.write(self._final(self.receipt_name), "".join(self._receipt_lines(header)).encode("utf-8"))
        if self.receipt_name + ".pending" in self._present:
            storage.remove(self._final(self.receipt_name + ".pending"))

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._done:
            return
        self._done = True
        try:
            if self.local:
                if self._stage:
                    shutil.rmtree(self._stage, ignore_errors=True)
            elif self._entries is not None:
                self._write_pending()
        finally:
            self._release()
        if isinstance(exc, OSError) and exc.errno in _CANNOT_WRITE:
            raise cannot_write(self.root, exc) from exc

    def _write_pending(self) -> None:
        """S3: list what this export wrote (and what an earlier interrupted one had), for the rerun."""
        header = ReceiptHeader(format=self.fmt, manifest=self.manifest, destination=self.root, complete=False)
        self.carried = [e for e in self.owned.values()] + self.carried
        with suppress(Exception):
            data = "".join(self._receipt_lines(header)).encode("utf-8")
            self._storage().write(self._final(self.receipt_name + ".pending"), data)

    def _release(self) -> None:
        if self._entries is not None:
            with suppress(OSError):
                self._entries.close()
        if self.local and self._stage and self._done:
            shutil.rmtree(self._stage, ignore_errors=True)
        if self._lock is not None:  # last: the staging folder is gone before another export may start
            with suppress(OSError):
                os.unlink(self._lock_path)
            with suppress(OSError):
                self._lock.close()
        self._entries = self._lock = None


def output_parts(dest: str) -> tuple[str, str]:
    """(folder, file name) of a single-file output; UsageError for what `uri.parse` refuses (a
    presigned or https:// URL, a collapsed `s3:/`), which would otherwise name a local file."""
    location = parse_uri(dest, what="output")
    if is_s3(location.uri):
        folder, _, name = location.uri.rstrip("/").rpartition("/")
        if folder.endswith(":/") or not name:
            raise UsageError(f"{dest}: name an object to write, s3://bucket/name.manifest.")
        return folder, name
    path = location.uri
    if os.path.isdir(path):
        raise UsageError(
            f"{dest} is a folder: name the file to write, e.g. {os.path.join(dest, 'out.manifest')}."
        )
    return os.path.dirname(path), os.path.basename(path)


def refuse_if_nothing_in_s3(summary: ExportSummary, what: str) -> None:
    """Stop (nothing is written) when every selected record was skipped for a local source."""
    local = summary.skipped.get("not_s3", 0)
    if local and not summary.lines_written:
        raise CannotProceed(
            f"{what} needs images in S3, and all {local} selected images of {summary.manifest} are local "
            "files: nothing was written. Scan the images from an s3:// source (upload them first), "
            "then export again."
        )


def copy_image(
    out: OwnedOutput,
    source: str,
    etag: str | None,
    size: int | None,
    rel: str,
    summary: ExportSummary,
    *,
    label: str | None = None,
    orientation: int | None = None,
) -> bool:
    """Copy one record's image to `rel` and count it; False when it is not there (counted as skipped).

    An `orientation` other than 1 (the source's EXIF tag) writes the image upright instead of a
    byte copy (`labelsift.upright`). One bad image never stops an export; a fatal error
    (credentials, access, no bucket, a full disk) and anything in the way at the destination do.
    """
    why = unsafe_source(source)
    if why is not None:
        summary.skip(
            source,
            "unsafe_source",
            f"not copied: {why}",
            label,
        )
        return False
    try:
        if orientation not in (None, 1):
            out.write_upright(source, rel)
            summary.copied += 1
        elif out.copy_in(source, etag, rel, size):
            summary.copied += 1
        else:
            summary.already_there += 1
    except Exception as error:
        ours = isinstance(error, LabelsiftError) and not isinstance(error, StorageError)
        if ours or getattr(error, "fatal", False):
            raise
        summary.skip(source, error_code(error), str(error), label)
        return False
    return True


@contextmanager
def _rewound(handle: IO[str]) -> Iterator[IO[str]]:
    handle.seek(0)
    yield handle


_CANNOT_WRITE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS})


def _same(a: str, b: str) -> bool:
    try:
        return same_target(parse_uri(a, what="manifest"), parse_uri(b, what="output"))
    except UsageError:
        return False


def _quoted(text: str) -> str:
    """`text` as a JSON string; the names exporters make need no escapes (the hot path)."""
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'
    return dump_json(text)


def _stat_or_none(path: str) -> os.stat_result | None:
    try:
        return os.stat(os.path.expanduser(path))
    except OSError:
        return None


def _unchanged(path: str, st: os.stat_result, entry: Entry) -> bool:
    """Whether the regular file at `path` (`st`, from lstat) is still what the receipt lists: its
    size, and for a file labelsift wrote itself (not a copy) its SHA-256, so that an edit that keeps
    the size (`Bird` to `Bard` in data.yaml) makes it the user's."""
    if not stat.S_ISREG(st.st_mode) or st.st_size != entry.size:
        return False
    if entry.sha256 is None:
        return True
    digest = hashlib.sha256()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    with open(fd, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest() == entry.sha256


def _write_file(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def _merge(staged: str, final: str, *, top: bool = True) -> None:
    """Move the staged tree into `final`: a whole folder where none is there, else file by file.
    The claims already refused links and other files in the way."""
    with os.scandir(staged) as entries:
        names = [(e.name, e.is_dir(follow_symlinks=False)) for e in entries]
    for name, is_dir in names:
        if top and name == _ENTRIES:
            continue
        src, dst = os.path.join(staged, name), os.path.join(final, name)
        if is_dir and os.path.lexists(dst):
            if os.path.islink(dst) or not os.path.isdir(dst):
                raise OSError(errno.EEXIST, "in the way", dst)
            _merge(src, dst, top=False)
        else:
            os.replace(src, dst)


def source_root(source: str) -> str:
    """Where an image came from, for the summary: `s3://bucket/` or its local folder."""
    if is_s3(source):
        return source[: source.index("/", 5) + 1] if "/" in source[5:] else source + "/"
    return os.path.dirname(source)


def collapse_roots(roots: dict[str, int], most: int = 8) -> dict[str, int]:
    """Folders merged into the shallowest of them that holds them; at most `most` local roots."""
    out: dict[str, int] = {}
    local: dict[str, int] = {}
    for root, n in sorted(roots.items()):
        if is_s3(root):
            out[root] = out.get(root, 0) + n
            continue
        top = next((r for r in local if root == r or root.startswith(r.rstrip("/") + "/")), None)
        local[top or root] = local.get(top or root, 0) + n
    if len(local) > most:
        local = {os.path.commonpath(list(local)): sum(local.values())}
    return out | local

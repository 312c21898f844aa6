"""Where a manifest is and whether it may be read or appended to: local or S3, its compression, special
files refused.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import IO

import smart_open
from botocore.exceptions import BotoCoreError, ClientError

from labelsift import uri as uri_module
from labelsift.errors import CannotProceed, UsageError
from labelsift.manifest.errors import ManifestUnreadable
from labelsift.storage import Storage, storage_error


def is_local(uri: str) -> bool:
    return "://" not in uri


COMPRESSED = (".bz2", ".gz", ".lz4", ".xz", ".zst")  # extensions smart-open decompresses


def compression(name: str) -> str:
    """The compression smart-open applies to `name` ("" for none), by its extension."""
    suffix = Path(name).suffix.lower()
    return suffix if suffix in COMPRESSED else ""


def target(uri: str) -> str:
    """`uri` as smart-open opens it; UsageError for what labelsift does not read (`uri.parse`)."""
    location = uri_module.parse(uri, what="manifest")
    return location.uri


def open_text(uri: str, mode: str) -> IO[str]:
    """UTF-8. Reading, a byte that is not UTF-8 stays as a lone surrogate, for `lines._check_text` to
    name its line (a strict decoder fails a chunk ahead, at no line)."""
    errors = "surrogateescape" if mode == "r" else "strict"
    try:
        stream: IO[str] = smart_open.open(target(uri), mode, encoding="utf-8", errors=errors)
    except ImportError as exc:  # .zst without backports.zstd, .lz4 without lz4
        raise unsupported_compression(uri, exc) from None
    return stream


def unsupported_compression(uri: str, error: ImportError) -> UsageError:
    return UsageError(
        f"{uri}: this Python cannot read or write {compression(uri) or 'this'} files ({error.name or error} "
        "is not installed). Decompress it first, or use .jsonl / .jsonl.gz."
    )


def read_failure(uri: str, error: Exception) -> CannotProceed:
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
        raise read_failure(uri, exc) from exc


def local_file(uri: str) -> Path | None:
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
    if local_file(str(path)) is None:
        raise ManifestUnreadable(f"{path}: no such manifest file. Check the path (scan one first).")


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


def require_appendable(path: Path) -> None:
    """Plain and `.gz` manifests grow by appending; other compressions are refused (exit 2)."""
    kind = compression(path.name)
    if kind not in ("", ".gz"):
        raise UsageError(
            f"{path}: labelsift appends only to plain (.jsonl) and gzip (.jsonl.gz) manifests, not to "
            f"{kind} files. Append to {path.name[: -len(kind)]} or a .jsonl.gz instead; `labelsift merge "
            f"IN -o {path.name}` writes a {kind} manifest whole."
        )

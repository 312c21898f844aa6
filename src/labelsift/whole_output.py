"""An output file that appears whole or not at all.

Local: written to a temporary name in the same folder (`.<name>.<random>.partial`), flushed to
disk, then renamed over the destination in one step; a failure or Ctrl-C removes the temporary
file and leaves whatever was at the destination untouched. `s3://`: written to a local temporary
file first, then uploaded in one transfer (a PutObject or a multipart upload that is completed
only once every part is in; s3transfer aborts it on failure or Ctrl-C), so no reader ever sees a
partial object. Compression follows the destination's extension (`.gz`, `.bz2`, `.xz`).
"""

from __future__ import annotations

import gzip
import io
import os
import secrets
import tempfile
from collections.abc import Callable, Iterable
from contextlib import suppress
from pathlib import Path
from typing import IO, TypeVar

import smart_open
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import BotoCoreError, ClientError
from s3transfer.exceptions import RetriesExceededError

from labelsift import uri as uri_module
from labelsift.errors import UsageError
from labelsift.storage import Storage, storage_error

T = TypeVar("T")
PARTIAL_SUFFIX = ".partial"


def refuse_output_among_inputs(inputs: Iterable[str], output: str, *, what: str = "output") -> None:
    """UsageError when `output` is the same file or object as one of `inputs` (a symlink or a hard
    link to it included): writing it would destroy what is being read. Check before reading."""
    target = uri_module.parse(output, what=what)
    for text in inputs:
        if uri_module.same_target(uri_module.parse(text, what="input"), target):
            same = "" if text == output else f" ({uri_module.shown(text)} and it are the same file)"
            raise UsageError(
                f"{uri_module.shown(output)} is one of the inputs{same}: writing it would destroy what "
                f"is being read. Write the {what} to another name, then rename it if you want."
            )


def _compression(name: str) -> str:
    suffix = Path(name).suffix.lower()
    return suffix if suffix in (".gz", ".bz2", ".xz", ".zst", ".lz4") else "disable"


def _fill_local(path: Path, compression: str, fill: Callable[[IO[str]], T], name: str) -> T:
    """Fill `path`; `name` is the file's final name, which a gzip header records (`gunzip -N`
    restores it: never the temporary name)."""
    if compression == ".gz":
        with open(path, "wb") as raw:
            with (
                gzip.GzipFile(filename=name, mode="wb", fileobj=raw) as packed,
                io.TextIOWrapper(packed, encoding="utf-8") as stream,
            ):
                result = fill(stream)
            raw.flush()
            os.fsync(raw.fileno())
        return result
    try:
        opened = smart_open.open(str(path), "w", encoding="utf-8", compression=compression)
    except ImportError as exc:  # .zst without backports.zstd, .lz4 without lz4
        raise UsageError(
            f"this Python cannot write {compression} files ({exc.name or exc} is not installed); "
            "write .jsonl or .jsonl.gz instead."
        ) from None
    with opened as stream:
        result = fill(stream)
    with open(path, "rb") as written:
        os.fsync(written.fileno())
    return result


def write_whole(output: str, fill: Callable[[IO[str]], T]) -> T:
    """Call `fill` with a UTF-8 text stream whose content becomes `output` in one step."""
    location = uri_module.parse(output, what="output")
    compression = _compression(output)
    if isinstance(location, uri_module.LocalLocation):
        final = location.path
        final.parent.mkdir(parents=True, exist_ok=True)
        partial = final.with_name(f".{final.name}.{secrets.token_hex(4)}{PARTIAL_SUFFIX}")
        try:
            result = _fill_local(partial, compression, fill, final.name)
            os.replace(partial, final)
        except BaseException as exc:
            with suppress(OSError):
                partial.unlink()
            if isinstance(exc, OSError):  # a full disk, a read-only folder, a folder in the way
                raise storage_error(exc, str(final), "write") from exc
            raise
        with suppress(OSError):  # the rename itself durable (best effort: not every FS allows it)
            handle = os.open(final.parent, os.O_RDONLY)
            try:
                os.fsync(handle)
            finally:
                os.close(handle)
        return result
    with tempfile.TemporaryDirectory(prefix="labelsift-upload-") as scratch:
        local_copy = Path(scratch) / "whole"
        try:
            result = _fill_local(local_copy, compression, fill, location.key.rsplit("/", 1)[-1])
        except OSError as exc:
            raise storage_error(exc, str(local_copy), f"stage {location} (before its upload) in") from exc
        _upload(local_copy, location)
    return result


def _upload(local_copy: Path, location: uri_module.S3Location) -> None:
    storage = Storage()
    try:
        client = storage.s3_client(storage.bucket_region(location.bucket))
        client.upload_file(str(local_copy), location.bucket, location.key, Config=TransferConfig())
    except (ClientError, BotoCoreError, RetriesExceededError, OSError) as error:
        raise storage_error(error, location.uri, "upload") from error

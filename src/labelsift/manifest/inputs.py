"""A folder or an `s3://` prefix of manifest shards read as one manifest.

A distributed scan writes one shard per batch (`*.jsonl` or `*.jsonl.gz`, named by its content);
`labelsift merge`, every export and the report take the folder or prefix that holds them.
`expand_manifest_inputs` names the shards (sorted, so the same folder always reads the same way;
an empty one is an error, never a manifest of 0 records). `one_manifest` gives readers one file:
the manifest itself, the one shard of a folder holding one, or a temporary merge of the shards
(the newest record per source wins, as `labelsift merge` decides across files; every line of
every shard validated, a bad one named by its shard and line), removed when the reader is done.

Why a merged temporary file rather than a reader over many files: which record of a source wins
across shards is decided by `scanned_at` (a retried batch's shard sorts anywhere by name), not by
position, so a chained reader would need the merge's on-disk index anyway; and the exporters'
fast paths (byte spans of one plain file handed to worker processes) then work unchanged.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import PurePosixPath

from labelsift import uri as uri_module
from labelsift.errors import CannotProceed
from labelsift.storage import Storage, StorageError

SHARD_SUFFIXES = (".jsonl", ".jsonl.gz")


class NoShards(CannotProceed):
    """A folder or prefix named as a manifest that holds no shard."""


def is_shard(key: str) -> bool:
    """A manifest shard by its name: `*.jsonl` or `*.jsonl.gz`, no hidden segment (temporary
    files, receipts, a `.labelsift-…` partial upload are not shards)."""
    parts = PurePosixPath(key).parts
    return key.lower().endswith(SHARD_SUFFIXES) and not any(part.startswith(".") for part in parts)


def _is_folder(text: str, location: uri_module.Location, storage: Storage) -> bool:
    if isinstance(location, uri_module.LocalLocation):
        return location.path.is_dir()
    if not location.key or text.endswith("/"):
        return True
    try:
        return storage.exists(location.uri) is None  # no object of that name: maybe a prefix
    except StorageError as exc:
        if exc.code == "NotFound":
            return True
        raise


def expand_manifest_inputs(text: str, storage: Storage | None = None) -> list[str]:
    """The shards of a folder or `s3://` prefix (sorted, stable), or `[text]` for one manifest.

    A name that is neither a file nor a folder (a typo) comes back as itself, for the reader to say
    "no such manifest"; a folder or prefix holding no shard raises NoShards (exit 3).
    """
    location = uri_module.parse(text, what="manifest")
    storage = storage or Storage()
    if not _is_folder(text, location, storage):
        return [text]
    if isinstance(location, uri_module.LocalLocation):
        root = str(location.path)
    else:
        root = f"s3://{location.bucket}/{location.key.rstrip('/')}/" if location.key else location.uri
    shards = sorted(info.uri for info in storage.list(root, images_only=False) if is_shard(info.key))
    if shards:
        return shards
    if isinstance(location, uri_module.S3Location) and not text.endswith("/") and location.key:
        return [text]  # neither an object nor a prefix: the reader names it as missing
    raise NoShards(
        f"{uri_module.shown(text)} is a folder (or prefix) holding no manifest shard (*.jsonl or "
        "*.jsonl.gz), so it would read as 0 records. Check the name, or wait for the scan that "
        "writes the shards to finish."
    )


def inside_folder(folders: list[str], output: str) -> str | None:
    """The folder or prefix of `folders` (inputs that `expand_manifest_inputs` expanded) that
    `output` would be written into, where the next read of the folder would take it for a shard."""
    target = uri_module.parse(output, what="output")
    for text in folders:
        location = uri_module.parse(text, what="manifest")
        if isinstance(location, uri_module.LocalLocation) and isinstance(target, uri_module.LocalLocation):
            inside = os.path.realpath(target.path).startswith(os.path.realpath(location.path) + os.sep)
        elif isinstance(location, uri_module.S3Location) and isinstance(target, uri_module.S3Location):
            prefix = location.key.rstrip("/") + "/" if location.key else ""
            inside = location.bucket == target.bucket and target.key.startswith(prefix)
        else:
            inside = False
        if inside:
            return text
    return None


@contextmanager
def one_manifest(text: str, storage: Storage | None = None) -> Iterator[str]:
    """`text` when it names one manifest; for a folder or prefix, its one shard or a temporary
    merge of its shards (newest record per source wins), removed on exit."""
    shards = expand_manifest_inputs(text, storage)
    if len(shards) == 1:
        yield shards[0]
        return
    from labelsift.manifest.merging import merge  # the merge reads manifests, which name their inputs here

    with tempfile.TemporaryDirectory(prefix="labelsift-shards-") as folder:
        merged = os.path.join(folder, "merged.jsonl")
        merge(shards, merged)
        yield merged

"""A Ray scan's output: a folder or `s3://` prefix of manifest shards, each named by its content.

Every batch an actor labels becomes ONE shard, `shard-<hash>.jsonl`, where the hash is of the
batch's sorted (source, ETag) pairs: a retried batch, or the same batch in a rerun, writes the same
name and overwrites instead of duplicating. Shards are written whole (local: temporary name then
rename; S3: one PUT) and hold the pydantic JSON lines `labelsift scan` writes, unchanged.

Resume reads back only the shards this engine writes (`shard_uris`: `shard-*.jsonl` at the top of
the folder or prefix), while `merge` and the exporters read every `*.jsonl`/`*.jsonl.gz` below it
(`labelsift.manifest.inputs`): a file of the user's own in the output folder is exported but never
taken for work already done.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from labelsift.errors import UsageError
from labelsift.manifest import SourceIndex, iter_records, to_line
from labelsift.models import ImageRecord
from labelsift.scan import MixedDetectorsError
from labelsift.scanning.labelling import is_hit
from labelsift.select import Selection
from labelsift.storage import Storage, is_s3

SHARD_PREFIX = "shard-"
SHARD_SUFFIX = ".jsonl"


def shard_name(pairs: Iterable[tuple[str, str | None]]) -> str:
    """`shard-<32 hex>.jsonl` from the (source, ETag) pairs, whatever their order."""
    digest = hashlib.sha256()
    for source, etag in sorted((source, etag or "") for source, etag in pairs):
        digest.update(f"{source}\t{etag}\n".encode())
    return f"{SHARD_PREFIX}{digest.hexdigest()[:32]}{SHARD_SUFFIX}"


def shard_uri(dest: str, records: Sequence[ImageRecord]) -> str:
    name = shard_name((record.source, record.etag) for record in records)
    return f"{dest.rstrip('/')}/{name}" if is_s3(dest) else os.path.join(dest, name)


def write_shard(storage: Storage, dest: str, records: Sequence[ImageRecord]) -> str | None:
    """Write `records` as one shard under `dest` (whole or not at all); its URI, None if no record."""
    if not records:
        return None
    target = shard_uri(dest, records)
    storage.write(target, "".join(to_line(record) for record in records).encode("utf-8"))
    return target


def check_dest(dest: str) -> str:
    """`dest` if a Ray scan may write its shards there; UsageError (exit 2) naming what to do."""
    if is_s3(dest):
        if not dest.endswith("/"):
            dest += "/"
        return dest
    path = Path(dest)
    if path.exists() and not path.is_dir():
        raise UsageError(
            f"{dest} is a file: --engine ray writes a folder (or an s3:// prefix) of manifest shards, "
            "one per batch. Give a folder, e.g. -o scan-shards/ (labelsift merge turns it into one file)."
        )
    if dest.endswith((".jsonl", ".gz", ".json")):
        raise UsageError(
            f"{dest} looks like a manifest file: --engine ray writes a folder (or an s3:// prefix) of "
            "shards. Give a folder name without .jsonl, e.g. -o scan-shards/."
        )
    return str(path.absolute())


def shard_uris(storage: Storage, dest: str) -> list[str]:
    """The shards a Ray scan wrote under `dest`, sorted (none if `dest` does not exist yet)."""
    if not is_s3(dest) and not os.path.isdir(dest):
        return []
    found = []
    for info in storage.list(dest, images_only=False):
        name = info.key.rsplit("/", 1)[-1]
        if "/" not in info.key and name.startswith(SHARD_PREFIX) and name.endswith(SHARD_SUFFIX):
            found.append(info.uri)
    return sorted(found)


def load_prior(
    storage: Storage,
    dest: str,
    selection: Selection | None,
    detector_name: str,
    allow_mixed: bool,
    seen: Counter[str],
    remember: Callable[[ImageRecord], None] | None = None,
) -> SourceIndex:
    """Index what the shards under `dest` hold (newest record per source, as `merge` picks it) and
    whether each is a hit now; count the labels seen into `seen`. The same rules as the plain scan's
    resume (`scan._load_prior`), over many shards: a source rescanned with --retry-errors lands in
    a new shard, so the newest `scanned_at` wins, not the file order. Each record goes to
    `remember` (the run's `Duplicates`), so a copy of an image labelled before is not paid again."""
    index = SourceIndex()
    others: set[str] = set()
    try:
        for shard in shard_uris(storage, dest):
            for record in iter_records(shard):
                index.add(
                    record.source,
                    record.etag,
                    record.status.value,
                    scanned_at=record.scanned_at.isoformat(),
                    newest_by_time=True,
                    hit=is_hit(selection, record),
                )
                seen.update(label.name for label in record.labels)
                if remember is not None:
                    remember(record)
                if record.detector is not None and record.detector.name != detector_name:
                    others.add(record.detector.name)
    except BaseException:
        index.close()
        raise
    if others and not allow_mixed:
        index.close()
        raise MixedDetectorsError(
            f"{dest} already holds records made by {', '.join(sorted(others))}; this scan uses "
            f"{detector_name}. Write to a new folder, or pass --allow-mixed-detectors to keep both."
        )
    return index

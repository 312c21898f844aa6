"""The records a Ray scan wrote (every shard under its destination) and the plain scan's to
compare them with, keyed by source without the time each was made."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from labelsift.detectors.factory import DetectorSettings, build_detector
from labelsift.distributed.shards import SHARD_PREFIX, shard_name
from labelsift.manifest import iter_records
from labelsift.models import ImageRecord, RunSummary
from labelsift.scan import ScanOptions, scan
from labelsift.storage import Storage


def shard_records(storage: Storage, dest: str) -> list[ImageRecord]:
    """Every record of every shard under `dest` (read here until merge reads a shard folder)."""
    found = [info.uri for info in storage.list(dest, images_only=False) if info.key.startswith(SHARD_PREFIX)]
    records: list[ImageRecord] = []
    for shard in found:
        lines = list(iter_records(shard))
        assert shard.rsplit("/", 1)[-1] == shard_name((r.source, r.etag) for r in lines)  # named by content
        records += lines
    return records


def comparable(records: list[ImageRecord]) -> dict[str, dict[str, Any]]:
    """source -> record without the time it was made; asserts one record per source."""
    counts = Counter(record.source for record in records)
    assert [source for source, n in counts.items() if n > 1] == []
    return {record.source: record.model_dump(mode="json", exclude={"scanned_at"}) for record in records}


def plain(source: str, manifest: Path, detector: str, options: ScanOptions) -> RunSummary:
    storage = Storage()
    built = build_detector(detector, storage, DetectorSettings(max_attempts=2))  # type: ignore[arg-type]
    return scan(source, str(manifest), built, storage, options)

"""What an export reads: the manifest's effective records, each decided by the `Selection`.

A record whose source is not in the form a scan records is never read, copied or named in an
export (`unsafe_source`); images in the review band are counted as held out.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable, Iterator

from labelsift.errors import UsageError
from labelsift.manifest import exists as manifest_exists
from labelsift.manifest import iter_records_mentioning
from labelsift.manifest.inputs import expand_manifest_inputs, one_manifest
from labelsift.select import REVIEW, Decision, Selection
from labelsift.uri import parse_recorded
from labelsift.views import RecordView

from .summary import ExportSummary

UNSAFE_SOURCE = "unsafe_source"


def unsafe_source(source: str) -> str | None:
    """Why `source` is not in the form a scan records (so an export must not read it), or None
    (`labelsift.uri.parse_recorded` decides: `/data/../../etc/hostname`, a relative path, a NUL)."""
    try:
        parse_recorded(source)
    except UsageError as error:
        return str(error)
    return None


def decisions(
    records: Iterable[RecordView | None], selection: Selection, summary: ExportSummary
) -> Iterator[Decision]:
    """Decisions for every effective record, counting records and held-out images."""
    classes = summary.classes
    count = 0
    try:
        for record in records:
            count += 1
            if record is None:  # names none of the labels and no person judged it: nothing to select
                continue
            why = unsafe_source(record["source"])
            if why is not None:  # not what a scan records: never read, copied or named in an export
                summary.skip(record["source"], UNSAFE_SOURCE, f"not exported: {why}")
                continue
            decision = selection.decide(record)
            if selection.band is not None:
                for i, label in enumerate(decision.labels):
                    if label.outcome is REVIEW:
                        summary.per_label[classes[i]].held_out += 1
            yield decision
    finally:
        summary.records += count


def require_manifest(uri: str) -> None:
    """Refuse a manifest that is not there: read as empty, a mistyped path would export nothing.
    A folder or `s3://` prefix must hold shards (`manifest.inputs`)."""
    for shard in expand_manifest_inputs(uri):
        if not manifest_exists(shard):
            raise FileNotFoundError(errno.ENOENT, "no such manifest", shard)


def iter_decisions(manifest_uri: str, selection: Selection, summary: ExportSummary) -> Iterator[Decision]:
    """`decisions` over the whole manifest, in this process (for exports bound by copying); a
    folder or prefix of shards is read as one manifest (`manifest.inputs.one_manifest`)."""
    require_manifest(manifest_uri)
    words = (query.strip() for query in selection.labels)
    with one_manifest(manifest_uri) as readable:
        yield from decisions(iter_records_mentioning(readable, words), selection, summary)

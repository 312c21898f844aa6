"""Merging manifests: the newest record per source (by `scanned_at`) wins; verdicts kept."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from labelsift import uri as uri_module
from labelsift.errors import CannotProceed, UsageError
from labelsift.manifest.errors import ManifestUnreadable
from labelsift.manifest.files import exists, refuse_special_file, target
from labelsift.manifest.index import SourceIndex, WinningPlaces, index_records
from labelsift.manifest.inputs import expand_manifest_inputs, inside_folder
from labelsift.manifest.lines import iter_lines
from labelsift.manifest.lock import ManifestLock
from labelsift.manifest.parsing import is_verdict, parse_line
from labelsift.manifest.writer import write_records
from labelsift.models import ImageRecord, VerdictEntry
from labelsift.whole_output import refuse_output_among_inputs


@dataclass(frozen=True)
class MergeResult:
    records: int
    verdicts: int
    superseded: int


def claim_output(shards: list[str], output: str, *, overwrite: bool) -> None:
    """Before anything is read: an output among the inputs is refused (exit 2), and an existing
    output without `overwrite` (exit 3)."""
    refuse_output_among_inputs(shards, output, what="merged manifest")
    for shard in shards:
        target(shard)
    for shard in shards:  # a typo must not make a merged manifest without that shard, exit 0
        if not exists(shard):
            raise ManifestUnreadable(
                f"{uri_module.shown(shard)}: no such manifest, so the merge would leave its records "
                "out. Check the name (nothing was written)."
            )
    location = uri_module.parse(output, what="merged manifest")
    if isinstance(location, uri_module.LocalLocation):
        refuse_special_file(str(output), location.path)  # never renamed over, even with --overwrite
    if exists(output) and not overwrite:
        raise CannotProceed(
            f"{uri_module.shown(output)} already exists. Pass --overwrite to replace it with the merged "
            "manifest (it is replaced whole once the merge is complete), or write to another name."
        )


def _expanded(inputs: list[str], output: str) -> list[str]:
    """The shards of `inputs` (a folder or `s3://` prefix stands for the shards in it), each once;
    an output inside an input folder is refused (the next merge would read it as a shard)."""
    shards: list[str] = []
    folders: list[str] = []
    for text in inputs:
        found = expand_manifest_inputs(text)
        if found != [text]:
            folders.append(text)
        shards.extend(found)
    inside = inside_folder(folders, output)
    if inside is not None:
        raise UsageError(
            f"{uri_module.shown(output)} is inside {uri_module.shown(inside)}, which is read as shards: "
            "the next merge of it would read the merged manifest as one more shard. Write it elsewhere."
        )
    return list(dict.fromkeys(shards))


def merge(shards: list[str], output: str, *, overwrite: bool = False) -> MergeResult:
    """Merge manifests into one: the newest record per source (by `scanned_at`) wins; verdicts kept.

    Two streaming passes over the shards, the bookkeeping in an on-disk index, so memory stays
    flat however long they are.

    Args:
        shards: the manifests to merge (local, `.gz`, `s3://`); a folder or `s3://` prefix among
            them stands for the `*.jsonl`/`*.jsonl.gz` shards in it (`inputs.expand_manifest_inputs`).
            A shard that does not exist is refused (ManifestUnreadable, exit 3) before anything is
            written.
        output: where the merged manifest goes (local, `.gz`, `.bz2`…, `s3://`). It is written whole
            (`write_records`): an earlier file stays until the new one is complete. It may not be
            one of the shards nor inside a folder read as shards (UsageError, exit 2). A local output
            is locked like a scan's manifest meanwhile (ManifestInUse, exit 3, if another writer has it).
        overwrite: replace an existing `output`; without it an existing one is refused (exit 3).

    Returns:
        How many records and verdicts were written, and how many records a newer one superseded.
    """
    shards = _expanded(shards, output)
    claim_output(shards, output, overwrite=overwrite)
    location = uri_module.parse(output, what="merged manifest")
    lock = None
    if isinstance(location, uri_module.LocalLocation):
        lock = ManifestLock(location.path, purpose="merge")
    try:
        return _merge_into(shards, output)
    finally:
        if lock is not None:
            lock.release()


def _merge_into(shards: list[str], output: str) -> MergeResult:
    with SourceIndex() as index:
        total = sum(index_records(index, shard, shard_no, None) for shard_no, shard in enumerate(shards))
        kept = Counter[str]()
        write_records(output, _winners(shards, WinningPlaces(index), kept))
    return MergeResult(records=kept["records"], verdicts=kept["verdicts"], superseded=total - kept["records"])


def _winners(
    shards: list[str], places: WinningPlaces, kept: Counter[str]
) -> Iterator[ImageRecord | VerdictEntry]:
    """Every verdict and each source's winning record, in shard and line order, counted in `kept`."""
    for shard_no, shard in enumerate(shards):
        for line_no, text in iter_lines(shard):
            if is_verdict(text):
                kept["verdicts"] += 1
            elif places.is_winner(shard_no, line_no):
                kept["records"] += 1
            else:
                continue
            yield parse_line(shard, line_no, text)

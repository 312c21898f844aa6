"""Every image paid for once on a Ray scan: the driver sorts duplicates before the actors see them.

The driver runs the plain scan's `labelsift.scan.Copies` over the listing: the first object of some
bytes goes to the actors; a copy whose first is labelled (earlier in this run or in an earlier run's
shards) gets its record at once; a copy whose first is in the window the actors are labelling waits
for the first's record (the outcome rows carry it) and is then written, or labelled itself when the
first was not labelled. Copies' records are written by the driver in shards of their own, named by
content like every shard, so a rerun overwrites instead of duplicating. A shard the driver cannot
write stops the run (FAILED, through the coordinator) instead of raising in the middle of a window,
which would abandon the actors' batches in flight: those are still written, and the unwritten
copies cost nothing on the rerun (their first's record is in the shards).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from labelsift.distributed.shards import write_shard
from labelsift.models import ImageRecord
from labelsift.scanning.copies import Copies
from labelsift.scanning.labelling import is_hit
from labelsift.scanning.options import ScanProgress
from labelsift.select import Selection
from labelsift.storage import ObjectInfo, Storage, StorageError


class RunControl(Protocol):
    def add_hits(self, hits: int) -> None: ...
    def fail(self, message: str) -> None: ...


@dataclass
class DriverCopies:
    """The run's duplicates at the driver, and the copies' records waiting to be written."""

    copies: Copies
    storage: Storage
    dest: str
    selection: Selection | None
    batch_size: int
    progress: ScanProgress  # duplicates and hits written are counted into it
    run: RunControl
    failed: bool = False  # a copies' shard could not be written: the run is stopping
    _ready: list[ImageRecord] = field(default_factory=list)

    def needs_labelling(self, info: ObjectInfo) -> bool:
        """True when the actors must label `info`; False for a copy (recorded now or once its first is)."""
        placed = self.copies.place(0, info)
        if placed is False:
            self.copies.in_flight.add(info.uri)
            return True
        if placed is not True:
            self._keep(placed)
        return False

    def finished(self, info: ObjectInfo, record: ImageRecord) -> None:
        """`info` was labelled as `record`: the copies waiting for it get their records."""
        for _, _, copy in self.copies.finished(info, record):
            self._keep(copy)

    def again(self) -> list[ObjectInfo]:
        """Copies whose first was not labelled: sorted again (one of them becomes the first)."""
        waiting = [info for _, info in self.copies.to_label]
        self.copies.to_label.clear()
        return [info for info in waiting if self.needs_labelling(info)]

    def flush(self) -> None:
        """Write the copies' records kept so far as one shard."""
        if not self._ready or self.failed:
            return
        try:
            write_shard(self.storage, self.dest, self._ready)
        except StorageError as exc:
            self.failed = True
            self.run.fail(
                f"{exc} ({len(self._ready)} records of duplicate images not written; a rerun writes them "
                "without paying again)"
            )
            return
        hits = sum(bool(is_hit(self.selection, record)) for record in self._ready)
        self.progress.duplicates += len(self._ready)
        self.progress.hits += hits
        self._ready = []
        if hits:
            self.run.add_hits(hits)

    def _keep(self, record: ImageRecord) -> None:
        self._ready.append(record)
        if len(self._ready) >= self.batch_size:
            self.flush()

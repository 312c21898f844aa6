"""Every image paid for once on a Ray scan: the driver sorts duplicates before the actors see them.

The driver runs the plain scan's `labelsift.scan.Copies` over the listing: the first object of some
bytes goes to the actors; a copy whose first is labelled (earlier in this run or in an earlier run's
shards) gets its record at once; a copy whose first is in the window the actors are labelling waits
for the first's record (the outcome rows carry it) and is then written, or labelled itself when the
first was not labelled. Copies' records are written by the driver in shards of their own, named by
content like every shard, so a rerun overwrites instead of duplicating.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from labelsift.distributed.shards import write_shard
from labelsift.models import ImageRecord
from labelsift.scan import Copies, _is_hit
from labelsift.select import Selection
from labelsift.storage import ObjectInfo, Storage


@dataclass
class DriverCopies:
    """The run's duplicates at the driver, and the copies' records waiting to be written."""

    copies: Copies
    storage: Storage
    dest: str
    selection: Selection | None
    batch_size: int
    on_hits: Callable[[int], None]  # copies that are hits (they count towards --target)
    written: int = 0
    hits: int = 0
    _ready: list[ImageRecord] = field(default_factory=list)

    def needs_labelling(self, info: ObjectInfo) -> bool:
        """True when the actors must label `info`; False for a copy (recorded now or once its first is)."""
        placed = self.copies.place(0, info)
        if placed is False:
            self.copies.flying.add(info.uri)
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
        waiting = [info for _, info in self.copies.again]
        self.copies.again.clear()
        return [info for info in waiting if self.needs_labelling(info)]

    def flush(self) -> None:
        """Write the copies' records kept so far as one shard."""
        if not self._ready:
            return
        write_shard(self.storage, self.dest, self._ready)
        hits = sum(bool(_is_hit(self.selection, record)) for record in self._ready)
        self.written += len(self._ready)
        self.hits += hits
        self._ready = []
        if hits:
            self.on_hits(hits)

    def close(self) -> None:
        self.copies.duplicates.close()

    def _keep(self, record: ImageRecord) -> None:
        self._ready.append(record)
        if len(self._ready) >= self.batch_size:
            self.flush()

"""A scan's duplicates (`labelsift.dedupe`): a copy of an image being labelled waits for its
first's record instead of being sent to the detector, and reuses it (`same_as`, not billed)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from labelsift.dedupe import Duplicates, duplicate_record
from labelsift.models import ImageRecord, ScanStatus
from labelsift.storage import ObjectInfo


@dataclass
class Copies:
    """A scan's duplicates: a copy waits for its first's record, or is labelled itself when the
    first was not labelled (skipped, failed, or replaced by other bytes since it was listed)."""

    duplicates: Duplicates
    in_flight: set[str] = field(default_factory=set)  # firsts being labelled
    waiting: dict[str, list[tuple[int, ObjectInfo]]] = field(default_factory=dict)  # first -> copies
    to_label: deque[tuple[int, ObjectInfo]] = field(default_factory=deque)  # first not labelled: label them

    def place(self, position: int, info: ObjectInfo) -> ImageRecord | bool:
        """A duplicate's record, True when it waits for its first, False when it must be labelled."""
        owner = self.duplicates.claim(info)
        if owner is None:
            return False
        first = self.duplicates.record_of(owner)
        if first is not None:
            return duplicate_record(first, info)
        if owner in self.in_flight:
            self.waiting.setdefault(owner, []).append((position, info))
            return True
        self.duplicates.release(owner)  # an earlier first that was never labelled: this one is
        self.duplicates.claim(info)
        return False

    def finished(self, info: ObjectInfo, record: ImageRecord) -> list[tuple[int, ObjectInfo, ImageRecord]]:
        """The records of the copies that waited for `info`, now that its record is `record`."""
        self.in_flight.discard(info.uri)
        if record.etag == info.etag:
            self.duplicates.labelled(record)
        else:  # labelled, but another version than the one listed: not the copies' bytes
            self.duplicates.release(info.uri)
        waiting = self.waiting.pop(info.uri, [])
        if record.status is ScanStatus.LABELED and record.etag == info.etag:
            return [(at, copy, duplicate_record(record, copy)) for at, copy in waiting]
        self.to_label.extend(waiting)
        return []

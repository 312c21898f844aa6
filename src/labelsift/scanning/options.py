"""What a scan is asked to do (`ScanOptions`) and what it has done so far (`ScanProgress`)."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from labelsift.cost import PriceTable
from labelsift.models import ImageRecord
from labelsift.select import Selection
from labelsift.storage import ObjectInfo


@dataclass(frozen=True)
class ScanOptions:
    """The choices of one scan.

    Attributes:
        selection: the labels that make a hit (with their threshold); None counts no hits.
        max_images: stop after this many sources, in source order (earlier records included).
        target: stop after this many hits.
        patience: stop after this many misses in a row.
        budget: the dollars this run may spend (prices from `prices`).
        workers: detector requests in flight at once.
        retry_errors: send sources whose earlier record is an error again.
        allow_mixed_detectors: append to a manifest written by another detector.
        prices: the price table the budget and the summary's cost use.
        max_errors_in_row: stop when this many images in a row end in `error` (service down,
            network gone, throttled past every retry). None: never stop for errors.
        dedupe: label objects holding the same bytes (same ETag and size; local: same SHA-256)
            once; the others get the first's labels in a record marked `same_as`.
    """

    selection: Selection | None = None
    max_images: int | None = None
    target: int | None = None
    patience: int | None = None
    budget: float | None = None
    workers: int = 16
    retry_errors: bool = False
    allow_mixed_detectors: bool = False
    prices: PriceTable = field(default_factory=PriceTable)
    max_errors_in_row: int | None = 50
    dedupe: bool = True


@dataclass
class ScanProgress:
    """A snapshot for progress displays."""

    considered: int = 0
    scanned: int = 0
    already_done: int = 0
    hits: int = 0
    misses_in_row: int = 0
    errors: int = 0
    skipped: int = 0
    billed: int = 0
    cost_usd: float = 0.0
    after_stop: int = 0  # recorded, but past the stop point (in flight when the stop came)
    duplicates: int = 0  # records reusing an identical object's labels (`same_as`), not billed
    unrecorded: int = 0  # answered (maybe billed) but not written: the manifest could not be
    started: float = field(default_factory=time.monotonic)
    reasons: Counter[str] = field(default_factory=Counter)  # skip and error codes written this run
    examples: dict[str, str] = field(default_factory=dict)  # code -> the first message seen for it

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.scanned / elapsed if elapsed > 0 else 0.0


@dataclass(frozen=True)
class Outcome:
    """What one source came to, in source order: a hit, a miss or neither (skipped/error).

    `record` is None for a source an earlier run recorded; `fresh` is False for those."""

    info: ObjectInfo
    record: ImageRecord | None
    hit: bool | None
    billed: bool
    fresh: bool

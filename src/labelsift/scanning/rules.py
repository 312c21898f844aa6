"""The stopping rules of a scan, fed outcomes in source order so the same input stops at the same
place whatever the thread timing: `--target` hits, `--patience` misses in a row, `--max-images`,
and an outage (`max_errors_in_row` records in a row ending in `error`)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from labelsift.models import ImageRecord, ScanStatus, StopReason
from labelsift.scanning.options import Outcome, ScanOptions, ScanProgress


@dataclass
class StoppingRules:
    """Counts what the run wrote and saw, and says when (and why) it stops.

    `stopped` is None while the run goes on; anything that ends the run early (a fault, Ctrl-C,
    a manifest that cannot be written) sets it too, so the loop has one flag to read."""

    options: ScanOptions
    progress: ScanProgress
    seen_labels: Counter[str] = field(default_factory=Counter)
    stopped: StopReason | None = None
    fed_fresh: int = 0  # records of this run the rules have seen (the rest are past the stop)
    errors_in_row: int = 0  # answers in a row (in the order they came) that ended in `error`
    outage: ImageRecord | None = None  # the error record that made `errors_in_row` reach the limit

    def written(self, record: ImageRecord) -> None:
        """Count a record the moment it is in the manifest, whether or not it is past the stop: the
        summary counts what the manifest holds and what was billed."""
        progress = self.progress
        progress.scanned += 1
        if record.status is ScanStatus.ERROR:
            progress.errors += 1
        elif record.status is ScanStatus.SKIPPED:
            progress.skipped += 1
        if record.error is not None:
            progress.reasons[record.error.code] += 1
            progress.examples.setdefault(record.error.code, record.error.message)
        self.seen_labels.update(label.name for label in record.labels)

    def answered(self, record: ImageRecord) -> None:
        """Watch for an outage, in the order answers come: going on would only record errors."""
        self.errors_in_row = self.errors_in_row + 1 if record.status is ScanStatus.ERROR else 0
        limit = self.options.max_errors_in_row
        if self.outage is None and limit is not None and self.errors_in_row >= limit:
            self.outage = record
            self.stopped = StopReason.FAILED

    def feed(self, outcome: Outcome) -> None:
        """The stopping rules, in source order."""
        progress = self.progress
        progress.considered += 1
        self.fed_fresh += outcome.fresh
        if outcome.hit is True:
            progress.hits += 1
            progress.misses_in_row = 0
        elif outcome.hit is False:
            progress.misses_in_row += 1
        options = self.options
        if options.target is not None and progress.hits >= options.target:
            self.stopped = StopReason.TARGET
        elif options.patience is not None and progress.misses_in_row >= options.patience:
            self.stopped = StopReason.PATIENCE
        elif options.max_images is not None and progress.considered >= options.max_images:
            self.stopped = StopReason.MAX_IMAGES

    def lookahead(self) -> int:
        """How far past the next outcome to evaluate requests may run: never so far that a stop
        found in source order leaves more than `workers` requests spent beyond it."""
        options, progress = self.options, self.progress
        ahead = max(1, options.workers) * 4
        if options.target is not None:
            ahead = min(ahead, options.workers + options.target - progress.hits)
        if options.patience is not None:
            ahead = min(ahead, options.workers + options.patience - progress.misses_in_row)
        if options.max_errors_in_row is not None:  # an outage: as few requests past the stop
            ahead = min(ahead, options.workers + options.max_errors_in_row - self.errors_in_row)
        return max(1, ahead)

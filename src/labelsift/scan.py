"""The scan stage: ask a detector about every image of a source, appending one record per image.

Requests run in a bounded pool; the stopping rules (max images, target hits, patience, budget)
are evaluated in source order, so the same input stops at the same place whatever the thread
timing, and after a stop only the requests already in flight are spent. Rerunning with the same
manifest resumes: sources recorded with the same etag are not sent to the detector again.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from datetime import UTC, datetime

from labelsift import uri
from labelsift.dedupe import Duplicates
from labelsift.detectors.base import Detector, DetectorError
from labelsift.errors import CannotProceed, UsageError
from labelsift.listing import ListingNotes
from labelsift.manifest import ManifestLock, ManifestWriter, SourceIndex, iter_records
from labelsift.models import ImageRecord, RunSummary, ScanStatus, StopReason
from labelsift.scanning.budget import Budget
from labelsift.scanning.copies import Copies
from labelsift.scanning.labelling import SKIP_CODES, is_hit, label_image
from labelsift.scanning.options import Outcome, ScanOptions, ScanProgress
from labelsift.scanning.rules import StoppingRules
from labelsift.scanning.window import InOrderWindow
from labelsift.select import Selection, closest_label
from labelsift.storage import ObjectInfo, Storage, StorageError

__all__ = [
    "SKIP_CODES",
    "Copies",
    "MixedDetectorsError",
    "Outcome",
    "ScanAborted",
    "ScanOptions",
    "ScanProgress",
    "UnsafeSource",
    "check_source",
    "is_hit",
    "label_image",
    "scan",
]


class UnsafeSource(UsageError):
    """A source that carries credentials (a presigned URL) or is not something labelsift reads."""


def check_source(source: str) -> str:
    """`source` if labelsift may record it (see `labelsift.uri.parse`); UnsafeSource otherwise."""
    try:
        uri.parse(source, what="source")
    except UsageError as exc:
        raise UnsafeSource(str(exc)) from None
    return source


class ScanAborted(CannotProceed):
    """A fault that no further image can get past (credentials, access, a missing bucket)."""

    def __init__(self, message: str, summary: RunSummary) -> None:
        super().__init__(message)
        self.summary = summary


class MixedDetectorsError(CannotProceed):
    pass


def _load_prior(
    manifest: str,
    selection: Selection | None,
    detector: Detector,
    allow_mixed: bool,
    seen: Counter[str],
    remember: Callable[[ImageRecord], None] | None = None,
) -> SourceIndex:
    """Index what the manifest already holds and whether each earlier record is a hit now; count
    the labels it saw into `seen`; hand each record to `remember` (the run's `Duplicates`)."""
    index = SourceIndex()
    other_detectors: set[str] = set()
    try:
        for record in iter_records(manifest):
            index.add(record.source, record.etag, record.status.value, hit=is_hit(selection, record))
            if remember is not None:
                remember(record)
            seen.update(label.name for label in record.labels)
            if record.detector is not None and record.detector.name != detector.info.name:
                other_detectors.add(record.detector.name)
    except BaseException:
        index.close()
        raise
    if other_detectors and not allow_mixed:
        index.close()
        raise MixedDetectorsError(
            f"{manifest} already holds records made by {', '.join(sorted(other_detectors))}; this scan "
            f"uses {detector.info.name}. Write to a new manifest, or pass --allow-mixed-detectors to "
            "keep both in one file."
        )
    return index


def scan(
    source: str,
    manifest: str,
    detector: Detector,
    storage: Storage,
    options: ScanOptions,
    *,
    on_progress: Callable[[ScanProgress], None] | None = None,
    on_hit: Callable[[ObjectInfo], None] | None = None,
    stop: threading.Event | None = None,
    notes: ListingNotes | None = None,
    lock: ManifestLock | None = None,
    objects: Iterable[ObjectInfo] | None = None,
) -> RunSummary:
    """Scan `source` into `manifest` (a local path, appended to) and return what the run did.

    Requests run in a bounded pool; the stopping rules are evaluated in source order, and after a
    stop only the requests already in flight are spent. Limits count the sources considered in
    source order, earlier records included, so rerunning the same command resumes instead of
    extending: sources recorded with the same ETag are not sent again.

    Args:
        source: an `s3://bucket/prefix`, a local folder or a file (`labelsift.uri.parse`).
        manifest: the local JSON Lines manifest to append to. It is locked for the run
            (`ManifestLock`), so a second writer raises ManifestInUse (exit 3) before anything is
            listed or paid for; a torn last line is repaired first.
        detector: what labels each image (`labelsift.detectors`).
        storage: reads the source's objects.
        options: the spending controls and rules (`ScanOptions`); `budget` is what this run may
            spend.
        on_progress: called with the run's `ScanProgress` after every batch of answers.
        on_hit: called in source order for every hit up to the stop point, including hits an
            earlier run recorded.
        stop: set it (e.g. on Ctrl-C) to stop after the requests in flight, which are written.
        notes: collects the entries the listing passes over (links, unreadable folders, other
            formats).
        lock: the manifest's lock, when the caller already holds it.
        objects: stands in for the listing of `source` (e.g. `inventory.list_source`): they are
            scanned in the order given, and `source` is not listed.

    Returns:
        The run's `RunSummary` (what was listed, scanned, billed, and why it stopped).

    Raises:
        UnsafeSource: `source` carries credentials or is not something labelsift reads.
        MixedDetectorsError: the manifest holds another detector's records (see
            `allow_mixed_detectors`).
        ScanAborted: a fault no image can get past (credentials, access, a missing bucket, an
            outage, a manifest that cannot be written), with the summary so far.
    """
    check_source(source)
    started_at = datetime.now(UTC)
    progress = ScanProgress()
    rules = StoppingRules(options, progress)
    # The lock first (a second writer stops here, before any listing or call), then the repair of
    # a torn last line, then what the manifest already holds.
    writer = ManifestWriter(manifest, purpose="scan", lock=lock)
    copies = Copies(Duplicates()) if options.dedupe else None
    try:
        prior = _load_prior(
            manifest, options.selection, detector, options.allow_mixed_detectors, rules.seen_labels,
            copies.duplicates.remember if copies is not None else None,
        )  # fmt: skip
    except BaseException:
        writer.close()
        if copies is not None:
            copies.duplicates.close()
        raise
    budget = Budget(progress, options.prices, options.budget if detector.billable else None)
    listing = iter(objects) if objects is not None else storage.list(source, notes=notes)
    run = _ScanRun(storage, detector, options, writer, prior, copies, rules, budget, listing, on_hit)
    with writer, ThreadPoolExecutor(options.workers, "labelsift-scan") as pool:
        try:
            run.loop(pool, stop or threading.Event(), on_progress)
        finally:
            run.close()  # before the pool waits: requests not started are cancelled
    # a fatal error, an outage or a manifest that cannot be written set `rules.stopped` to FAILED
    stopped = rules.stopped or (StopReason.BUDGET if run.out_of_budget else StopReason.EXHAUSTED)
    progress.after_stop = progress.scanned - rules.fed_fresh
    summary = _summary(source, manifest, detector, options, progress, rules, stopped, run.listed, started_at)
    _raise_if_aborted(manifest, options, run, summary)
    return summary


class _ScanRun:
    """One scan's loop: takes sources into the window (resume, duplicates, budget), sends them to
    the pool, keeps each answer in the manifest, and feeds outcomes to the rules in source order."""

    def __init__(
        self,
        storage: Storage,
        detector: Detector,
        options: ScanOptions,
        writer: ManifestWriter,
        prior: SourceIndex,
        copies: Copies | None,
        rules: StoppingRules,
        budget: Budget,
        listing: Iterator[ObjectInfo],
        on_hit: Callable[[ObjectInfo], None] | None,
    ) -> None:
        self.storage, self.detector, self.options = storage, detector, options
        self.writer, self.prior, self.copies = writer, prior, copies
        self.rules, self.budget, self.progress = rules, budget, rules.progress
        self.listing, self.on_hit = listing, on_hit
        self.window: InOrderWindow[tuple[ImageRecord, bool]] = InOrderWindow()
        self.listed = 0
        self.listing_done = False  # the listing ran out, or --max-images was reached
        self.out_of_budget = False
        self.fatal: DetectorError | StorageError | None = None
        self.unwritten: OSError | None = None  # why the manifest could not be written

    def loop(
        self,
        pool: ThreadPoolExecutor,
        stop: threading.Event,
        on_progress: Callable[[ScanProgress], None] | None,
    ) -> None:
        rules, window = self.rules, self.window
        while True:
            if stop.is_set() and rules.stopped is None:
                rules.stopped = StopReason.INTERRUPTED
            self._fill(pool)
            self._evaluate_ready()
            if rules.stopped is not None:
                for at in window.drop_cancelled():
                    self.budget.release(at)
            if not window.pending:
                if (self.listing_done and not self._copies_to_label()) or rules.stopped is not None:
                    return
                continue
            for future, at, info in window.wait(timeout=0.5):
                self._collect(future, at, info)
            self._evaluate_ready()
            if on_progress is not None:
                on_progress(self.progress)

    def close(self) -> None:
        self.window.cancel_all()
        self.prior.close()
        if self.copies is not None:
            self.copies.duplicates.close()
        if self.unwritten is not None:  # closing flushes the line that did not fit: it fails again
            with suppress(OSError, StorageError):
                self.writer.close()

    def _copies_to_label(self) -> bool:
        return self.copies is not None and bool(self.copies.to_label)

    def _fill(self, pool: ThreadPoolExecutor) -> None:
        """Send requests until the window is full, the listing is done or the budget holds no more."""
        while self.rules.stopped is None and (
            self._copies_to_label()
            or (not self.listing_done and self.window.has_room(self.rules.lookahead()))
        ):
            taken = self._take()
            if taken is None:
                return
            at, info, earlier = taken
            if earlier is not None:
                self.window.settle(at, earlier)
                continue
            if not self._needs_request(at, info):
                continue
            if not self.budget.hold(at):
                self.listing_done = self.out_of_budget = True
                if self.copies is not None:
                    self.copies.to_label.clear()
                return
            self.window.send(pool.submit(label_image, self.storage, self.detector, info), at, info)
            if self.copies is not None:
                self.copies.in_flight.add(info.uri)

    def _take(self) -> tuple[int, ObjectInfo, Outcome | None] | None:
        """The next source to consider, with its position and the outcome an earlier run recorded
        for it: a copy whose first was not labelled, else the listing's next (None: it is done)."""
        if self.copies is not None and self.copies.to_label:
            at, copy = self.copies.to_label.popleft()
            return at, copy, None
        max_images = self.options.max_images
        reached = max_images is not None and self.window.next_in >= max_images
        info = None if reached else next(self.listing, None)
        if info is None:
            self.listing_done = True
            return None
        self.listed += 1
        return self.window.take_position(), info, self._recorded_before(info)

    def _recorded_before(self, info: ObjectInfo) -> Outcome | None:
        """The outcome an earlier run recorded for this version of `info` (None: label it)."""
        known = self.prior.get(info.uri)
        if known is None or known.etag != info.etag:
            return None
        if known.status is ScanStatus.ERROR and self.options.retry_errors:
            return None
        self.progress.already_done += 1
        return Outcome(info, None, known.hit, billed=False, fresh=False)

    def _needs_request(self, at: int, info: ObjectInfo) -> bool:
        """False when a duplicate settles `info` without a request (or makes it wait for its first)."""
        placed = self.copies.place(at, info) if self.copies is not None else False
        if placed is False:
            return True
        if placed is not True:
            self._keep_copy(at, info, placed)
        return False

    def _collect(self, future: Future[tuple[ImageRecord, bool]], at: int, info: ObjectInfo) -> None:
        """Keep one answer: pay for it, write it, watch for an outage, and release its copies."""
        try:
            record, billed = future.result()
        except (DetectorError, StorageError) as exc:
            self.budget.release(at)
            self.fatal = self.fatal or exc
            self.rules.stopped = StopReason.FAILED
            return
        self.budget.settle(at, billed)
        if not self._keep(record):
            return
        self.rules.answered(record)
        self.window.settle(
            at, Outcome(info, record, is_hit(self.options.selection, record), billed, fresh=True)
        )
        for copy_at, copy, copy_record in self.copies.finished(info, record) if self.copies else []:
            self._keep_copy(copy_at, copy, copy_record)

    def _keep(self, record: ImageRecord) -> bool:
        """Append `record` and count it; once the manifest cannot be written (disk full, read-only,
        I/O error), stop and count the answers that could not be kept instead."""
        if self.unwritten is None:
            try:
                self.writer.append(record)
            except (OSError, StorageError) as exc:  # the writer names the file: a StorageError
                cause = exc.__cause__ if isinstance(exc, StorageError) else exc
                self.unwritten = cause if isinstance(cause, OSError) else OSError(str(exc))
                self.rules.stopped = StopReason.FAILED
                self.window.cancel_all()
        if self.unwritten is not None:
            self.progress.unrecorded += 1
            return False
        self.rules.written(record)
        return True

    def _keep_copy(self, at: int, info: ObjectInfo, record: ImageRecord) -> None:
        if self._keep(record):
            self.progress.duplicates += 1
            outcome = Outcome(info, record, is_hit(self.options.selection, record), billed=False, fresh=True)
            self.window.settle(at, outcome)

    def _evaluate_ready(self) -> None:
        """Feed the rules every outcome whose turn has come, until they stop."""
        while self.rules.stopped is None:
            outcome = self.window.next_in_order()
            if outcome is None:
                return
            self.rules.feed(outcome)
            if outcome.hit and self.on_hit is not None:
                self.on_hit(outcome.info)


def _raise_if_aborted(manifest: str, options: ScanOptions, run: _ScanRun, summary: RunSummary) -> None:
    if run.unwritten is not None:
        raise ScanAborted(_unwritable(manifest, run.unwritten, run.progress), summary) from run.unwritten
    if run.fatal is not None:
        raise ScanAborted(str(run.fatal), summary) from run.fatal
    outage = run.rules.outage
    if outage is not None and outage.error is not None:
        raise ScanAborted(
            f"Stopped: {options.max_errors_in_row} images in a row failed, the last "
            f"{outage.error.code}: {outage.error.message} The detector or the network looks down, "
            "so going on would only record an error per image. The manifest holds everything done "
            "so far; fix the cause, then rerun the same command with --retry-errors.",
            summary,
        )


def _unwritable(manifest: str, error: OSError, progress: ScanProgress) -> str:
    lost = progress.unrecorded
    return (
        f"cannot write {manifest}: {error.strerror or error}. The manifest holds every record written "
        f"before ({progress.scanned} this run); {lost} answer{'s' if lost != 1 else ''} that came after "
        f"could not be recorded and will be asked again. Free space (or fix the disk), then rerun the "
        "same command to resume: nothing recorded is sent again."
    )


def _summary(
    source: str,
    manifest: str,
    detector: Detector,
    options: ScanOptions,
    progress: ScanProgress,
    rules: StoppingRules,
    stopped: StopReason,
    listed: int,
    started_at: datetime,
) -> RunSummary:
    asked = list(options.selection.labels) if options.selection else []
    top = rules.seen_labels.most_common(10)
    return RunSummary(
        source=source,
        manifest=manifest,
        detector=detector.info,
        labels=asked,
        threshold=options.selection.threshold if options.selection else None,
        listed=listed,
        already_done=progress.already_done,
        scanned=progress.scanned,
        billed=progress.billed,
        after_stop=progress.after_stop,
        unrecorded=progress.unrecorded,
        labeled=progress.scanned - progress.errors - progress.skipped,
        duplicates=progress.duplicates,
        skipped=progress.skipped,
        errors=progress.errors,
        hits=progress.hits,
        cost_usd=round(progress.cost_usd, 6),
        stopped=stopped,
        started_at=started_at,
        finished_at=datetime.now(UTC),
        top_labels=top,
        suggestion=closest_label(asked, rules.seen_labels) if asked else None,
    )

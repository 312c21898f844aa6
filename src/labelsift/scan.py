"""The scan stage: ask a detector about every image of a source, appending one record per image.

Requests run in a bounded pool; the stopping rules (max images, target hits, patience, budget)
are evaluated in source order, so the same input stops at the same place whatever the thread
timing, and after a stop only the requests already in flight are spent. Rerunning with the same
manifest resumes: sources recorded with the same etag are not sent to the detector again.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from labelsift import uri
from labelsift.cost import PriceTable
from labelsift.dedupe import Duplicates, duplicate_record
from labelsift.detectors.base import Detector, DetectorError, ImageInput
from labelsift.errors import CannotProceed, UsageError
from labelsift.imagelimits import MAX_OBJECT_BYTES
from labelsift.listing import ListingNotes
from labelsift.manifest import ManifestLock, ManifestWriter, SourceIndex, iter_records
from labelsift.models import ImageRecord, Reason, RunSummary, ScanStatus, StopReason
from labelsift.probe import ProbeError, probe
from labelsift.select import Selection, closest_label
from labelsift.storage import ObjectInfo, Storage, StorageError
from labelsift.views import label_views

# Skipped: the object itself cannot be labelled as it is; rescanning it unchanged would give the same
# answer (a changed object gets a new etag and is scanned again anyway). Every other code is an
# error: this attempt failed, and `--retry-errors` tries it again.
SKIP_CODES = frozenset(
    {
        "EmptyObject",
        "NotAnImage",
        "TruncatedHeader",
        "CorruptImage",
        "TooLarge",
        "ImageTooLarge",
        "ImageTooSmall",
        "UnsupportedFormat",
        "ArchivedObject",
        "Vanished",
    }
)
_STORAGE_SKIPS = {"NoSuchKey": "Vanished", "NotFound": "Vanished", "InvalidObjectState": "ArchivedObject"}


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


@dataclass(frozen=True)
class ScanOptions:
    selection: Selection | None = None
    max_images: int | None = None
    target: int | None = None
    patience: int | None = None
    budget: float | None = None
    workers: int = 16
    retry_errors: bool = False
    allow_mixed_detectors: bool = False
    prices: PriceTable = field(default_factory=PriceTable)
    # Stop when this many images in a row end in `error` (service down, network gone, throttled
    # past every retry): going on would only write an error record per image. None: never stop.
    max_errors_in_row: int | None = 50
    # Objects holding the same bytes (same ETag and size; local: same SHA-256) are labelled once,
    # the others get the first's labels in a record marked `same_as` (`labelsift.dedupe`).
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
    """What one source came to, in source order: a hit, a miss or neither (skipped/error)."""

    info: ObjectInfo
    record: ImageRecord | None
    hit: bool | None
    billed: bool
    fresh: bool


def _is_hit(selection: Selection | None, record: ImageRecord) -> bool | None:
    if record.status is not ScanStatus.LABELED:
        return None
    if selection is None or not selection.labels:
        return None
    return bool(selection.hits(label_views(record.labels)))


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
            index.add(record.source, record.etag, record.status.value, hit=_is_hit(selection, record))
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


def label_image(storage: Storage, detector: Detector, info: ObjectInfo) -> tuple[ImageRecord, bool]:
    """Probe and label one image; returns its record and whether the detector call was billed.

    The probe reads only the version the listing saw (its etag): an object replaced since is
    looked up again and the new version labelled, recorded with its own etag and size.
    """
    try:
        return _label_version(storage, detector, info)
    except _Replaced:
        pass
    try:
        fresh = storage.stat(info.uri)
    except StorageError as exc:
        if exc.fatal:
            raise
        base = {"source": info.uri, "etag": info.etag, "version_id": info.version_id, "size": info.size}
        return _failed(base, _STORAGE_SKIPS.get(exc.code, exc.code), str(exc)), False
    try:
        return _label_version(storage, detector, replace(info, size=fresh.size, etag=fresh.etag))
    except _Replaced as exc:  # replaced again within moments: record it, the next run rescans it
        base = {"source": info.uri, "etag": fresh.etag, "version_id": info.version_id, "size": fresh.size}
        return _failed(base, "Changed", str(exc.__cause__)), False


class _Replaced(Exception):
    """The object is no longer the version that was listed."""


def _label_version(storage: Storage, detector: Detector, info: ObjectInfo) -> tuple[ImageRecord, bool]:
    base: dict[str, Any] = {"source": info.uri, "etag": info.etag, "version_id": info.version_id}
    base["size"] = info.size
    try:
        header = probe(storage, info.uri, size=info.size, etag=info.etag)
    except ProbeError as exc:
        return _failed(base, exc.code, str(exc)), False
    except StorageError as exc:
        if exc.fatal:
            raise
        if exc.code == "Changed":
            raise _Replaced from exc
        return _failed(base, _STORAGE_SKIPS.get(exc.code, exc.code), str(exc)), False
    base |= {
        "width": header.width,
        "height": header.height,
        "format": header.format,
        "orientation": header.orientation,
    }
    image = ImageInput(
        uri=info.uri,
        read=lambda: storage.read(info.uri, limit=MAX_OBJECT_BYTES),
        open=lambda: storage.open_read(info.uri, limit=MAX_OBJECT_BYTES),
        format=header.format,
        size=info.size,
        version_id=info.version_id,
        width=header.width,
        height=header.height,
    )
    try:
        detection = detector.detect(image)
    except DetectorError as exc:
        if exc.fatal:
            raise
        return _failed(base, exc.code, exc.message), exc.billable and detector.billable
    except StorageError as exc:
        if exc.fatal:
            raise
        return _failed(base, _STORAGE_SKIPS.get(exc.code, exc.code), str(exc)), False
    info_used = detector.info
    if detection.model_version and info_used.model_version != detection.model_version:
        info_used = info_used.model_copy(update={"model_version": detection.model_version})
    record = ImageRecord(
        **base,
        status=ScanStatus.LABELED,
        detector=info_used,
        labels=detection.labels,
        image_properties=detection.image_properties,
    )
    return record, detector.billable


def _failed(base: dict[str, Any], code: str, message: str) -> ImageRecord:
    """A skipped or error record; its message always names the object (producers need not)."""
    status = ScanStatus.SKIPPED if code in SKIP_CODES else ScanStatus.ERROR
    source = str(base["source"])
    if source not in message:
        message = f"{source}: {message}"
    return ImageRecord(**base, status=status, error=Reason(code=code, message=message))


@dataclass
class _Rules:
    """The stopping rules, fed outcomes in source order."""

    options: ScanOptions
    progress: ScanProgress
    seen_labels: Counter[str] = field(default_factory=Counter)
    stopped: StopReason | None = None
    fed_fresh: int = 0  # records of this run the rules have seen (the rest are past the stop)

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


@dataclass
class Copies:
    """A scan's duplicates: a copy waits for its first's record, or is labelled itself when the
    first was not labelled (skipped, failed, or replaced by other bytes since it was listed)."""

    duplicates: Duplicates
    flying: set[str] = field(default_factory=set)  # firsts being labelled
    parked: dict[str, list[tuple[int, ObjectInfo]]] = field(default_factory=dict)
    again: deque[tuple[int, ObjectInfo]] = field(default_factory=deque)  # to label after all

    def place(self, position: int, info: ObjectInfo) -> ImageRecord | bool:
        """A duplicate's record, True when it waits for its first, False when it must be labelled."""
        owner = self.duplicates.claim(info)
        if owner is None:
            return False
        first = self.duplicates.record_of(owner)
        if first is not None:
            return duplicate_record(first, info)
        if owner in self.flying:
            self.parked.setdefault(owner, []).append((position, info))
            return True
        self.duplicates.release(owner)  # an earlier first that was never labelled: this one is
        self.duplicates.claim(info)
        return False

    def finished(self, info: ObjectInfo, record: ImageRecord) -> list[tuple[int, ObjectInfo, ImageRecord]]:
        """The records of the copies that waited for `info`, now that its record is `record`."""
        self.flying.discard(info.uri)
        if record.etag == info.etag:
            self.duplicates.labelled(record)
        else:  # labelled, but another version than the one listed: not the copies' bytes
            self.duplicates.release(info.uri)
        waiting = self.parked.pop(info.uri, [])
        if record.status is ScanStatus.LABELED and record.etag == info.etag:
            return [(at, copy, duplicate_record(record, copy)) for at, copy in waiting]
        self.again.extend(waiting)
        return []


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

    The manifest is locked for the run (`ManifestLock`; `lock` if the caller already holds it):
    a second writer on it raises ManifestInUse (exit 3) before anything is listed or paid for.

    `on_hit` is called in source order for every hit up to the stop point, including hits that
    an earlier run recorded. Limits count the sources considered in source order, earlier records
    included, so rerunning the same command resumes instead of extending; `budget` is what this
    run may spend. Raises ScanAborted (with the summary so far) on a fault no image can get past.
    Entries the listing passes over (links, unreadable folders, other formats) go into `notes`.
    `objects`, when given, stands in for the listing of `source` (e.g. `inventory.list_source`):
    they are scanned in the order given, and `source` is not listed.
    """
    check_source(source)
    started_at = datetime.now(UTC)
    progress = ScanProgress()
    rules = _Rules(options, progress)
    stop = stop or threading.Event()
    billable_budget = options.budget is not None and detector.billable
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
    listed = 0
    out_of_budget = False
    fatal: DetectorError | StorageError | None = None
    errors_in_row = 0
    outage: ImageRecord | None = None
    pending: dict[Future[tuple[ImageRecord, bool]], tuple[int, ObjectInfo, float]] = {}
    ready: dict[int, Outcome] = {}
    next_to_evaluate = 0
    unwritten: OSError | None = None  # why the manifest could not be written

    def keep(record: ImageRecord) -> bool:
        """Append `record` and count it; once the manifest cannot be written (disk full, read-only,
        I/O error), stop and count the answers that could not be kept instead."""
        nonlocal unwritten
        if unwritten is None:
            try:
                writer.append(record)
            except (OSError, StorageError) as exc:  # the writer names the file: a StorageError
                cause = exc.__cause__ if isinstance(exc, StorageError) else exc
                unwritten = cause if isinstance(cause, OSError) else OSError(str(exc))
                rules.stopped = StopReason.FAILED
                for future in pending:  # at once: a worker that frees up must not start another
                    future.cancel()
        if unwritten is not None:
            progress.unrecorded += 1
            return False
        rules.written(record)
        return True

    def evaluate_ready() -> None:
        nonlocal next_to_evaluate
        while rules.stopped is None and next_to_evaluate in ready:
            outcome = ready.pop(next_to_evaluate)
            next_to_evaluate += 1
            rules.feed(outcome)
            if outcome.hit and on_hit is not None:
                on_hit(outcome.info)

    def earlier_outcome(info: ObjectInfo) -> Outcome | None:
        known = prior.get(info.uri)
        if known is None or known.etag != info.etag:
            return None
        if known.status is ScanStatus.ERROR and options.retry_errors:
            return None
        progress.already_done += 1
        return Outcome(info, None, known.hit, billed=False, fresh=False)

    def window() -> int:
        """How far past the next outcome to evaluate requests may run: never so far that a stop
        found in source order leaves more than `workers` requests spent beyond it."""
        ahead = max(1, options.workers) * 4
        if options.target is not None:
            ahead = min(ahead, options.workers + options.target - progress.hits)
        if options.patience is not None:
            ahead = min(ahead, options.workers + options.patience - progress.misses_in_row)
        if options.max_errors_in_row is not None:  # an outage: as few requests past the stop
            ahead = min(ahead, options.workers + options.max_errors_in_row - errors_in_row)
        return max(1, ahead)

    def reserved() -> float:
        return sum(price for _, _, price in pending.values())

    def again() -> bool:
        return copies is not None and bool(copies.again)

    def keep_copy(at: int, info: ObjectInfo, record: ImageRecord) -> None:
        if keep(record):
            progress.duplicates += 1
            ready[at] = Outcome(info, record, _is_hit(options.selection, record), billed=False, fresh=True)

    with writer, ThreadPoolExecutor(options.workers, "labelsift-scan") as pool:
        sources: Iterator[ObjectInfo] = (
            iter(objects) if objects is not None else storage.list(source, notes=notes)
        )
        exhausted = False
        position = 0
        try:
            while True:
                if stop.is_set() and rules.stopped is None:
                    rules.stopped = StopReason.INTERRUPTED
                while (
                    rules.stopped is None
                    and (again() or (not exhausted and position < next_to_evaluate + window()))
                ):  # fmt: skip
                    if copies is not None and copies.again:  # a copy whose first was not labelled
                        at, info = copies.again.popleft()
                    else:
                        if options.max_images is not None and position >= options.max_images:
                            exhausted = True
                            break
                        listed_next = next(sources, None)
                        if listed_next is None:
                            exhausted = True
                            break
                        info = listed_next
                        listed += 1
                        at, position = position, position + 1
                        known = earlier_outcome(info)
                        if known is not None:
                            ready[at] = known
                            continue
                    placed = copies.place(at, info) if copies is not None else False
                    if placed is True:
                        continue
                    if placed is not False:
                        keep_copy(at, info, placed)
                        continue
                    price = 0.0
                    if billable_budget:
                        price = options.prices.price_of_image(progress.billed + len(pending))
                        if progress.cost_usd + reserved() + price > (options.budget or 0.0) + 1e-9:
                            exhausted = out_of_budget = True
                            if copies is not None:
                                copies.again.clear()
                            break
                    pending[pool.submit(label_image, storage, detector, info)] = (at, info, price)
                    if copies is not None:
                        copies.flying.add(info.uri)
                evaluate_ready()
                if rules.stopped is not None:
                    for future in [f for f in pending if f.cancel()]:
                        pending.pop(future)
                if not pending:
                    if (exhausted and not again()) or rules.stopped is not None:
                        break
                    continue
                done, _ = wait(list(pending), timeout=0.5, return_when=FIRST_COMPLETED)
                for future in done:
                    at, info, _ = pending.pop(future)
                    try:
                        record, billed = future.result()
                    except (DetectorError, StorageError) as exc:
                        fatal = fatal or exc
                        rules.stopped = StopReason.FAILED
                        continue
                    if billed:
                        progress.cost_usd += options.prices.price_of_image(progress.billed)
                        progress.billed += 1
                    if not keep(record):
                        continue
                    errors_in_row = errors_in_row + 1 if record.status is ScanStatus.ERROR else 0
                    limit = options.max_errors_in_row
                    if outage is None and limit is not None and errors_in_row >= limit:
                        outage = record
                        rules.stopped = StopReason.FAILED
                    ready[at] = Outcome(info, record, _is_hit(options.selection, record), billed, fresh=True)
                    for copy_at, copy, copy_record in copies.finished(info, record) if copies else []:
                        keep_copy(copy_at, copy, copy_record)
                evaluate_ready()
                if on_progress is not None:
                    on_progress(progress)
        finally:
            for future in pending:
                future.cancel()
            prior.close()
            if copies is not None:
                copies.duplicates.close()
            if unwritten is not None:  # closing flushes the line that did not fit: it fails again
                with suppress(OSError, StorageError):
                    writer.close()
    # a fatal error, an outage or a manifest that cannot be written set `rules.stopped` to FAILED
    stopped = rules.stopped or (StopReason.BUDGET if out_of_budget else StopReason.EXHAUSTED)
    progress.after_stop = progress.scanned - rules.fed_fresh
    summary = _summary(source, manifest, detector, options, progress, rules, stopped, listed, started_at)
    if unwritten is not None:
        raise ScanAborted(_unwritable(manifest, unwritten, progress), summary) from unwritten
    if fatal is not None:
        raise ScanAborted(str(fatal), summary) from fatal
    if outage is not None and outage.error is not None:
        raise ScanAborted(
            f"Stopped: {options.max_errors_in_row} images in a row failed, the last "
            f"{outage.error.code}: {outage.error.message} The detector or the network looks down, "
            "so going on would only record an error per image. The manifest holds everything done "
            "so far; fix the cause, then rerun the same command with --retry-errors.",
            summary,
        )
    return summary


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
    rules: _Rules,
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

"""One streaming pass over a manifest: the counts, curves and samples a report shows.

Memory is bounded by the label vocabulary and the sample sizes, never by the number of records:
counters per status, reason, detector and label; a 101-bucket histogram per selected label; a
reservoir of samples per confidence band; the first `failure_rows` failed or skipped records.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from labelsift.models import ImageRecord, ScanStatus
from labelsift.select import Selection, accepted
from labelsift.views import InstanceView, label_views

from .advice import advice_for

# (name, low, high): a sample's best confidence c is in the band when low <= c < high
BANDS: tuple[tuple[str, float, float], ...] = (
    ("≥ 95", 95.0, 101.0),
    ("80–95", 80.0, 95.0),
    ("60–80", 60.0, 80.0),
    ("below 60", 0.0, 60.0),
)
BILLED_DETECTORS = frozenset({"rekognition"})
# bounds for a manifest someone else wrote: distinct label names tracked, parents kept per label,
# characters kept of a message
MAX_DISTINCT_LABELS = 50_000
MAX_PARENTS = 20
MAX_MESSAGE = 300
MAX_NAME = 500  # characters kept of a source or label name shown on the page
MAX_KINDS = 1_000  # distinct reasons, distinct detectors


@dataclass
class Sample:
    source: str
    confidence: float
    boxes: tuple[InstanceView, ...]
    verdict: bool | None  # a person's newest verdict on this label; None: nobody decided
    thumbnail: bytes | None = None  # JPEG with the label's boxes drawn (see `thumbs`)
    problem: str | None = None  # why no thumbnail could be made


@dataclass
class Band:
    name: str
    low: float
    high: float
    images: int = 0
    samples: list[Sample] = field(default_factory=list)


@dataclass
class LabelReport:
    """One selected label: how confident the detector was, and what each threshold keeps."""

    name: str
    threshold: float
    image_buckets: list[int] = field(default_factory=lambda: [0] * 101)  # floor(confidence) -> images
    box_buckets: list[int] = field(default_factory=lambda: [0] * 101)
    kept_images: int = 0  # exactly at or above `threshold` (the buckets round to whole points)
    kept_boxes: int = 0
    accepted: int = 0  # people's verdicts
    rejected: int = 0
    bands: list[Band] = field(default_factory=lambda: [Band(*band) for band in BANDS])

    @property
    def images(self) -> int:
        return sum(self.image_buckets)

    def curve(self) -> list[tuple[int, int, int]]:
        """(threshold, images kept, boxes kept) for every whole threshold 0..100."""
        points: list[tuple[int, int, int]] = []
        images = boxes = 0
        for t in range(100, -1, -1):
            images += self.image_buckets[t]
            boxes += self.box_buckets[t]
            points.append((t, images, boxes))
        return points[::-1]

    def kept(self, threshold: float) -> tuple[int, int]:
        """Images and boxes at or above `threshold`: exact for the chosen one and whole numbers."""
        if threshold == self.threshold:
            return self.kept_images, self.kept_boxes
        start = min(101, max(0, int(-(-threshold // 1))))
        return sum(self.image_buckets[start:]), sum(self.box_buckets[start:])


@dataclass
class ReasonRow:
    code: str
    status: str
    count: int = 0
    examples: list[str] = field(default_factory=list)
    message: str = ""

    @property
    def advice(self) -> str:
        return advice_for(self.code, error=self.status == ScanStatus.ERROR.value)


@dataclass
class FailureRow:
    source: str
    status: str
    code: str
    message: str
    advice: str


QUALITY_METRICS = ("sharpness", "brightness", "contrast")


@dataclass
class Tally:
    """What the pass counted; `labels` are the selected labels' reports, in the order asked."""

    manifest: str
    records: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    reasons: dict[tuple[str, str], ReasonRow] = field(default_factory=dict)
    detectors: Counter[tuple[str, str]] = field(default_factory=Counter)
    billed: int = 0
    first_scan: datetime | None = None
    last_scan: datetime | None = None
    label_images: Counter[str] = field(default_factory=Counter)
    label_boxes: Counter[str] = field(default_factory=Counter)
    parents: dict[str, set[str]] = field(default_factory=dict)
    labels: list[LabelReport] = field(default_factory=list)
    failures: list[FailureRow] = field(default_factory=list)
    failures_total: int = 0
    untracked_labels: int = 0  # label names met after MAX_DISTINCT_LABELS others (not counted)
    quality: dict[str, list[int]] = field(
        default_factory=lambda: {name: [0] * 101 for name in QUALITY_METRICS}
    )  # metric -> floor(score) -> images, from Rekognition's IMAGE_PROPERTIES
    with_quality: int = 0

    def at_least(self, metric: str, score: int) -> int:
        """Images whose `metric` is `score` or more (what `--min-METRIC score` keeps)."""
        return sum(self.quality[metric][score:])


@dataclass
class Collector:
    """Feed it records (`add`) in manifest order; read `tally` at the end."""

    tally: Tally
    selection: Selection | None
    samples_per_band: int = 8
    failure_rows: int = 500
    examples_per_reason: int = 3
    rng: random.Random = field(default_factory=lambda: random.Random(0))

    def add(self, record: ImageRecord) -> None:
        tally = self.tally
        tally.records += 1
        tally.by_status[record.status.value] += 1
        when = record.scanned_at
        if tally.first_scan is None or when < tally.first_scan:
            tally.first_scan = when
        if tally.last_scan is None or when > tally.last_scan:
            tally.last_scan = when
        if record.status is ScanStatus.LABELED:
            self._labeled(record)
        else:
            self._failed(record)

    def _labeled(self, record: ImageRecord) -> None:
        tally = self.tally
        detector = record.detector
        if detector is not None:
            key = (detector.name, detector.model_version or "")
            if key not in tally.detectors and len(tally.detectors) >= MAX_KINDS:
                key = ("other", "")
            tally.detectors[key] += 1
            tally.billed += detector.name in BILLED_DETECTORS and record.same_as is None
        seen: set[str] = set()
        for label in record.labels:
            name = label.name[:MAX_NAME]
            if name not in tally.label_images and len(tally.label_images) >= MAX_DISTINCT_LABELS:
                tally.untracked_labels += 1
                continue
            if name not in seen:
                seen.add(name)
                tally.label_images[name] += 1
            tally.label_boxes[name] += len(label.instances)
            if label.parents:
                parents = tally.parents.setdefault(name, set())
                if len(parents) < MAX_PARENTS:
                    parents.update(p[:MAX_NAME] for p in label.parents[: MAX_PARENTS - len(parents)])
        if record.image_properties is not None:
            self._quality(record.image_properties.quality.model_dump())
        if self.selection is not None:
            self._selected(record)

    def _quality(self, scores: dict[str, float | None]) -> None:
        self.tally.with_quality += 1
        for metric in QUALITY_METRICS:
            score = scores.get(metric)
            if score is not None:
                self.tally.quality[metric][min(100, int(score))] += 1

    def _selected(self, record: ImageRecord) -> None:
        assert self.selection is not None
        by_query = {hit.query: hit for hit in self.selection.hits(label_views(record.labels))}
        for report in self.tally.labels:
            hit = by_query.get(report.name)
            if hit is None:
                continue
            boxes = tuple(hit.label["instances"])
            report.image_buckets[min(100, int(hit.confidence))] += 1
            report.kept_images += hit.confidence >= report.threshold
            for box in boxes:
                report.box_buckets[min(100, int(box["confidence"]))] += 1
                report.kept_boxes += box["confidence"] >= report.threshold
            verdict = accepted(record.review, report.name)
            report.accepted += verdict is True
            report.rejected += verdict is False
            self._sample(report, Sample(record.source, hit.confidence, boxes, verdict))

    def _sample(self, report: LabelReport, sample: Sample) -> None:
        band = next(b for b in report.bands if b.low <= sample.confidence < b.high)
        band.images += 1
        if len(band.samples) < self.samples_per_band:
            band.samples.append(sample)
            return
        slot = self.rng.randrange(band.images)  # reservoir sampling (Algorithm R)
        if slot < self.samples_per_band:
            band.samples[slot] = sample

    def _failed(self, record: ImageRecord) -> None:
        tally = self.tally
        error = record.error
        code, message = (
            (error.code[:80], error.message[:MAX_MESSAGE]) if error is not None else ("unknown", "")
        )
        key = (record.status.value, code)
        if key not in tally.reasons and len(tally.reasons) >= MAX_KINDS:
            key = (record.status.value, code := "other")
        row = tally.reasons.setdefault(key, ReasonRow(code, record.status.value))
        row.count += 1
        if len(row.examples) < self.examples_per_reason:
            row.examples.append(record.source[:MAX_NAME])
            row.message = row.message or message
        tally.failures_total += 1
        if len(tally.failures) < self.failure_rows:
            source = record.source[:MAX_NAME]
            tally.failures.append(FailureRow(source, record.status.value, code, message, row.advice))

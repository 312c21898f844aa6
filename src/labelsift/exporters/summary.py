"""What an export did: per label and split counts, and every image or box it left out, with why.

Counts are always complete. Per-item details (skips, warnings, violations, planned copies) are
kept up to `detail_limit` each so memory stays flat on huge manifests; `details_truncated` says
when some were left out of the lists (never out of the counts).
"""

from __future__ import annotations

from pydantic import BaseModel, Field

DEFAULT_DETAIL_LIMIT = 10_000
ALL = "all"  # the split name of formats that have no train/val split


class LabelCounts(BaseModel):
    images: dict[str, int] = Field(default_factory=dict, description="Images exported, per split.")
    boxes: dict[str, int] = Field(default_factory=dict, description="Boxes exported, per split.")
    held_out: int = Field(default=0, description="Images in the review band, left for people.")
    human: int = Field(default=0, description="Exported images whose decision was a person's.")
    without_boxes: int = Field(default=0, description="Selected images with no usable box for it.")


class ImageIssue(BaseModel):
    """An image skipped (not exported) or exported with a warning."""

    source: str
    code: str
    message: str
    label: str | None = None


class Violation(BaseModel):
    """A written line that breaks a rule of the target service (line 0 = the whole file)."""

    line: int
    rule: str
    message: str
    source: str | None = None


class PlannedCopy(BaseModel):
    source: str
    destination: str
    label: str


def _add_counts(into: dict[str, int], more: dict[str, int]) -> None:
    for key, n in more.items():
        into[key] = into.get(key, 0) + n


class ExportSummary(BaseModel):
    format: str
    manifest: str
    destination: str
    classes: list[str] = Field(description="The one class order used in every file and split.")
    records: int = Field(default=0, description="Effective manifest records read.")
    images: dict[str, int] = Field(default_factory=dict, description="Distinct images exported, per split.")
    per_label: dict[str, LabelCounts] = Field(default_factory=dict)
    dropped_boxes: dict[str, int] = Field(default_factory=dict, description="Boxes left out, by reason.")
    skipped: dict[str, int] = Field(default_factory=dict, description="Images left out, by reason.")
    skipped_images: list[ImageIssue] = Field(default_factory=list)
    warnings: list[ImageIssue] = Field(default_factory=list)
    violations: dict[str, int] = Field(default_factory=dict, description="Rule -> lines breaking it.")
    violation_lines: list[Violation] = Field(default_factory=list)
    lines_written: int = 0
    invalid_lines: int = Field(default=0, description="Written lines that break at least one rule.")
    files_written: int = 0
    copied: int = 0
    already_there: int = Field(default=0, description="Copies skipped: the same object was there.")
    replaced: int = Field(
        default=0,
        description="Files of an earlier export (its receipt) deleted: this one no longer writes them.",
    )
    sources: dict[str, int] = Field(
        default_factory=dict,
        description="Where the exported images are (copied or named): `s3://bucket/` or a folder -> images.",
    )
    workers: int = Field(default=1, description="Processes that did the per-record work (1: this one).")
    dry_run: bool = False
    plan: list[PlannedCopy] = Field(default_factory=list)
    details_truncated: bool = False
    detail_limit: int = DEFAULT_DETAIL_LIMIT
    detail_room: dict[str, int] = Field(
        default_factory=dict,
        exclude=True,
        repr=False,
        description="A part's room per detail list (`empty_part`): what the export it is part of has left.",
    )

    @classmethod
    def start(
        cls, fmt: str, manifest: str, destination: str, classes: list[str], *, detail_limit: int
    ) -> ExportSummary:
        return cls(
            format=fmt,
            manifest=manifest,
            destination=destination,
            classes=classes,
            per_label={name: LabelCounts() for name in classes},
            detail_limit=detail_limit,
        )

    def _keep(self, name: str, items: list[ImageIssue] | list[Violation] | list[PlannedCopy]) -> bool:
        if len(items) < self.detail_room.get(name, self.detail_limit):
            return True
        self.details_truncated = True
        return False

    def count_image(self, label: str, split: str, boxes: int, *, human: bool) -> None:
        counts = self.per_label[label]
        counts.images[split] = counts.images.get(split, 0) + 1
        counts.boxes[split] = counts.boxes.get(split, 0) + boxes
        if human:
            counts.human += 1

    def count_export(self, split: str) -> None:
        self.images[split] = self.images.get(split, 0) + 1

    def drop_boxes(self, reasons: dict[str, int]) -> None:
        for reason, n in reasons.items():
            self.dropped_boxes[reason] = self.dropped_boxes.get(reason, 0) + n

    def skip(self, source: str, code: str, message: str, label: str | None = None) -> None:
        self.skipped[code] = self.skipped.get(code, 0) + 1
        if self._keep("skipped_images", self.skipped_images):
            self.skipped_images.append(ImageIssue(source=source, code=code, message=message, label=label))

    def warn(self, source: str, code: str, message: str, label: str | None = None) -> None:
        if self._keep("warnings", self.warnings):
            self.warnings.append(ImageIssue(source=source, code=code, message=message, label=label))

    def violate(self, line: int, rule: str, message: str, source: str | None = None) -> None:
        self.violations[rule] = self.violations.get(rule, 0) + 1
        if self._keep("violation_lines", self.violation_lines):
            self.violation_lines.append(Violation(line=line, rule=rule, message=message, source=source))

    def add_plan(self, source: str, destination: str, label: str) -> None:
        if self._keep("plan", self.plan):
            self.plan.append(PlannedCopy(source=source, destination=destination, label=label))

    def empty_part(self) -> ExportSummary:
        """An empty summary of the same export, for a part of it counted elsewhere (`add_part`). Each
        of its detail lists has the room this one's has left: once a list is full here, parts keep
        none of its details (which `add_part` would drop), only the counts and `details_truncated`."""
        part = ExportSummary.start(
            self.format, self.manifest, self.destination, self.classes, detail_limit=self.detail_limit
        )
        part.detail_room = {name: max(0, self.detail_limit - len(getattr(self, name))) for name in _DETAILS}
        return part

    def add_part(self, part: ExportSummary) -> None:
        """Add the counts and details of `part` (a `empty_part()` filled by a worker) to this one."""
        for name in _COUNTS:
            setattr(self, name, getattr(self, name) + getattr(part, name))
        for name in _TALLIES:
            _add_counts(getattr(self, name), getattr(part, name))
        for label, counts in part.per_label.items():
            mine = self.per_label[label]
            _add_counts(mine.images, counts.images)
            _add_counts(mine.boxes, counts.boxes)
            mine.held_out += counts.held_out
            mine.human += counts.human
            mine.without_boxes += counts.without_boxes
        for name in _DETAILS:
            mine_items, items = getattr(self, name), getattr(part, name)
            room = max(0, self.detail_limit - len(mine_items))
            mine_items.extend(items[:room])
            if len(items) > room:
                self.details_truncated = True
        self.details_truncated = self.details_truncated or part.details_truncated

    @property
    def total_images(self) -> int:
        return sum(self.images.values())


_COUNTS = (
    "records",
    "lines_written",
    "invalid_lines",
    "files_written",
    "copied",
    "already_there",
    "replaced",
)
_TALLIES = ("images", "dropped_boxes", "skipped", "violations")
_DETAILS = ("skipped_images", "warnings", "violation_lines", "plan")

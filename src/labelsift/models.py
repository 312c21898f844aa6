"""The manifest's data model: what a detector saw in one image, and what a run did.

Every backend returns these models; every exporter reads them. `schemas/` is generated from here
(`python -m labelsift.schemas`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Confidence = Annotated[
    float, Field(ge=0.0, le=100.0, allow_inf_nan=False, description="Confidence in percent, 0-100.")
]
# Rekognition documents that box ratios may fall slightly outside [0, 1]; exporters clip them.
Ratio = Annotated[
    float, Field(ge=-0.5, le=1.5, allow_inf_nan=False, description="A fraction of the image side.")
]
Extent = Annotated[
    float, Field(ge=0.0, le=2.0, allow_inf_nan=False, description="A fraction of the image side.")
]
NonEmpty = Annotated[str, Field(min_length=1)]
Pixels = Annotated[int, Field(gt=0)]
ByteCount = Annotated[int, Field(ge=0)]


def utc_now() -> datetime:
    return datetime.now(UTC)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Instance(_Model):
    """One occurrence of a label in the image: a box as ratios of the displayed image."""

    left: Ratio
    top: Ratio
    width: Extent
    height: Extent
    confidence: Confidence


class Label(_Model):
    """A label as the detector named it, with its place in the detector's taxonomy."""

    name: NonEmpty
    confidence: Confidence
    parents: list[str] = Field(default_factory=list)
    aliases: list[str] = Field(default_factory=list)
    categories: list[str] = Field(default_factory=list)
    instances: list[Instance] = Field(default_factory=list)


class ScanStatus(StrEnum):
    LABELED = "labeled"
    SKIPPED = "skipped"
    ERROR = "error"


class Reason(_Model):
    """Why an image was skipped or failed: a stable code for programs, a message for people."""

    code: Annotated[str, Field(min_length=1, description="Stable machine-readable code.")]
    message: str


class DetectorInfo(_Model):
    name: Annotated[str, Field(min_length=1)]
    model_version: str | None = None


class Verdict(_Model):
    """A person's decision about one label on one image."""

    label: Annotated[str, Field(min_length=1)]
    accepted: bool
    who: str = "reviewer"
    at: datetime = Field(default_factory=utc_now)
    instances: list[Instance] | None = Field(
        default=None, description="Boxes a person drew or confirmed; null keeps the detector's."
    )


Percent = Annotated[float, Field(ge=0.0, le=100.0, allow_inf_nan=False)]


class ImageQuality(_Model):
    """Rekognition's image quality scores (0-100); a region may lack some of them."""

    brightness: Percent | None = None
    sharpness: Percent | None = None
    contrast: Percent | None = None


class DominantColor(_Model):
    red: Annotated[int, Field(ge=0, le=255)]
    green: Annotated[int, Field(ge=0, le=255)]
    blue: Annotated[int, Field(ge=0, le=255)]
    hex_code: str | None = None
    css_color: str | None = None
    simplified_color: str | None = None
    pixel_percent: Percent | None = None


class RegionProperties(_Model):
    quality: ImageQuality = Field(default_factory=ImageQuality)
    dominant_colors: list[DominantColor] = Field(default_factory=list)


class ImageProperties(_Model):
    """Rekognition DetectLabels' IMAGE_PROPERTIES: quality and colours of the image and its regions."""

    quality: ImageQuality = Field(default_factory=ImageQuality)
    dominant_colors: list[DominantColor] = Field(default_factory=list)
    foreground: RegionProperties | None = None
    background: RegionProperties | None = None


class ImageRecord(_Model):
    """One line of the manifest: everything known about one source image."""

    source: Annotated[NonEmpty, Field(description="URI of the image: s3://bucket/key or a path.")]
    etag: str | None = None
    version_id: str | None = None
    size: ByteCount | None = None
    width: Pixels | None = Field(default=None, description="Displayed width in pixels.")
    height: Pixels | None = Field(default=None, description="Displayed height, pixels.")
    format: str | None = None
    orientation: Annotated[int, Field(ge=1, le=8)] | None = Field(
        default=None, description="EXIF orientation tag of the stored image (1 = as stored)."
    )
    status: ScanStatus
    error: Reason | None = None
    detector: DetectorInfo | None = None
    labels: list[Label] = Field(default_factory=list)
    image_properties: ImageProperties | None = Field(
        default=None, description="Quality and colours, when the detector was asked for them."
    )
    review: list[Verdict] = Field(default_factory=list)
    scanned_at: datetime = Field(default_factory=utc_now)
    same_as: NonEmpty | None = Field(
        default=None,
        exclude_if=lambda value: value is None,  # written only on a duplicate's record
        description="A duplicate: the source whose record this reuses (same bytes, labelled once this "
        "run; this record was not billed).",
    )

    @model_validator(mode="after")
    def _status_is_consistent(self) -> ImageRecord:
        if self.status is ScanStatus.LABELED:
            if self.error is not None:
                raise ValueError("error: must be null when status is 'labeled'")
            if self.detector is None:
                raise ValueError("detector: required when status is 'labeled'")
        elif self.error is None:
            raise ValueError(f"error: a reason is required when status is '{self.status.value}'")
        elif self.labels:
            raise ValueError(f"labels: must be empty when status is '{self.status.value}'")
        return self


class VerdictEntry(_Model):
    """A manifest line that records a person's verdict on an image already in the manifest."""

    kind: Literal["verdict"] = "verdict"
    source: Annotated[str, Field(min_length=1)]
    verdict: Verdict


class StopReason(StrEnum):
    EXHAUSTED = "exhausted"  # every source was scanned
    MAX_IMAGES = "max_images"
    TARGET = "target"
    PATIENCE = "patience"
    BUDGET = "budget"
    INTERRUPTED = "interrupted"
    FAILED = "failed"


class RunSummary(_Model):
    """What one scan did: counts, money and why it stopped."""

    source: str
    manifest: str
    detector: DetectorInfo
    labels: list[str] = Field(default_factory=list)
    threshold: Confidence | None = None
    listed: Annotated[int, Field(ge=0)] = 0
    already_done: Annotated[int, Field(ge=0, description="Skipped because the manifest had them.")] = 0
    scanned: Annotated[int, Field(ge=0, description="Records written by this run.")] = 0
    billed: Annotated[int, Field(ge=0, description="Detector calls that cost money.")] = 0
    after_stop: Annotated[
        int,
        Field(ge=0, description="Of `scanned`: records past the stop point (in flight when it came)."),
    ] = 0
    unrecorded: Annotated[
        int,
        Field(
            ge=0,
            description="Answers not written (the manifest could not be); a rerun asks again.",
        ),
    ] = 0
    labeled: Annotated[int, Field(ge=0)] = 0
    duplicates: Annotated[
        int,
        Field(ge=0, description="Of `labeled`: records reusing an identical image's labels (not billed)."),
    ] = 0
    skipped: Annotated[int, Field(ge=0)] = 0
    errors: Annotated[int, Field(ge=0)] = 0
    hits: Annotated[int, Field(ge=0)] = 0
    cost_usd: Annotated[float, Field(ge=0)] = 0.0
    stopped: StopReason
    started_at: datetime
    finished_at: datetime
    top_labels: list[tuple[str, int]] = Field(default_factory=list)
    suggestion: str | None = Field(default=None, description="A seen label close to the asked one.")

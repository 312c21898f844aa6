"""What an export reads of a manifest record: typed dicts validated straight from the line's JSON.

An export reads a few fields of every record in its hot loop. Building the full models
(`models.ImageRecord`, its labels and boxes) costs twice what parsing the line does; plain dicts
of the fields an export reads cost little more than the parse. Every field here keeps its model's
constraints, so each value an export uses is validated as strictly as the scan wrote it; the
fields no export reads (detector, categories, ...) are not read at all.

`view_of` turns a model into its view, for callers that hold models (the scan, the review server,
tests).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, cast

from pydantic import Field, TypeAdapter
from typing_extensions import TypedDict

from labelsift.models import (
    ByteCount,
    Confidence,
    Extent,
    ImageRecord,
    Instance,
    Label,
    NonEmpty,
    Pixels,
    Ratio,
    ScanStatus,
    Verdict,
    utc_now,
)


class InstanceView(TypedDict):
    left: Ratio
    top: Ratio
    width: Extent
    height: Extent
    confidence: Confidence


class LabelView(TypedDict):
    name: NonEmpty
    confidence: Confidence
    parents: Annotated[list[str], Field(default_factory=list)]
    aliases: Annotated[list[str], Field(default_factory=list)]
    instances: Annotated[list[InstanceView], Field(default_factory=list)]


class QualityView(TypedDict):
    brightness: Annotated[float | None, Field(default=None)]
    sharpness: Annotated[float | None, Field(default=None)]
    contrast: Annotated[float | None, Field(default=None)]


class PropertiesView(TypedDict):
    quality: Annotated[QualityView, Field(default_factory=dict)]


class RecordView(TypedDict):
    source: NonEmpty
    etag: Annotated[str | None, Field(default=None)]  # which version of the source the labels are of
    status: ScanStatus
    width: Annotated[Pixels | None, Field(default=None)]
    height: Annotated[Pixels | None, Field(default=None)]
    size: Annotated[ByteCount | None, Field(default=None)]
    format: Annotated[str | None, Field(default=None)]
    orientation: Annotated[int | None, Field(default=None, ge=1, le=8)]
    scanned_at: Annotated[datetime, Field(default_factory=utc_now)]
    labels: Annotated[list[LabelView], Field(default_factory=list)]
    review: Annotated[list[Verdict], Field(default_factory=list)]
    image_properties: Annotated[PropertiesView | None, Field(default=None)]
    # as written, not validated (exports do not depend on it): Label Studio's `model_version` only
    detector: Annotated[Any, Field(default=None)]


RECORD_VIEW: TypeAdapter[RecordView] = TypeAdapter(RecordView)
_FIELDS = frozenset(RecordView.__annotations__)
_LABEL_FIELDS = frozenset(LabelView.__annotations__)


def view_of(record: ImageRecord) -> RecordView:
    """The view of a record held as a model (its verdicts stay `Verdict` models)."""
    view = cast(
        RecordView, record.model_dump(include=set(_FIELDS - {"labels", "review", "image_properties"}))
    )
    properties = record.image_properties
    view["image_properties"] = (
        cast(PropertiesView, {"quality": properties.quality.model_dump()}) if properties is not None else None
    )
    view["labels"] = label_views(record.labels)
    view["review"] = list(record.review)
    return view


def label_views(labels: list[Label]) -> list[LabelView]:
    return [cast(LabelView, label.model_dump(include=set(_LABEL_FIELDS))) for label in labels]


def instance_view(instance: Instance) -> InstanceView:
    return cast(InstanceView, instance.model_dump())

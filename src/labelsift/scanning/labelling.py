"""One image, probed and sent to the detector, as the record the manifest keeps (`label_image`)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from labelsift.detectors.base import Detector, DetectorError, ImageInput
from labelsift.imagelimits import MAX_OBJECT_BYTES
from labelsift.models import ImageRecord, Reason, ScanStatus
from labelsift.probe import ProbeError, probe
from labelsift.select import Selection
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


def is_hit(selection: Selection | None, record: ImageRecord) -> bool | None:
    """Whether `record` holds a selected label: None when it was not labelled or nothing is selected."""
    if record.status is not ScanStatus.LABELED:
        return None
    if selection is None or not selection.labels:
        return None
    return bool(selection.hits(label_views(record.labels)))


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

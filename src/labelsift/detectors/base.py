"""The contract every detector backend implements."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Protocol

from labelsift.errors import CannotProceed
from labelsift.models import DetectorInfo, ImageProperties, Label


@dataclass(frozen=True)
class ImageInput:
    """One image handed to a detector.

    `uri` is `s3://bucket/key` or a local path. `read` returns the bytes to send when the
    backend needs them (the local model always; Rekognition for local files, other regions
    and transcoded images); `open`, when given, returns them as a file instead (see
    `open_input`). `format` is Pillow's name for the stored format (JPEG, PNG, ...).
    """

    uri: str
    read: Callable[[], bytes]
    format: str | None = None
    size: int | None = None
    version_id: str | None = None
    width: int | None = None
    height: int | None = None
    open: Callable[[], IO[bytes]] | None = None


def open_input(image: ImageInput) -> IO[bytes]:
    """The image as a seekable binary file: `image.open()` when given, else `read()`'s bytes.

    Detectors use this instead of `read`, so a scan never holds a whole object in memory: the scan
    passes `open`, which refuses objects over `imagelimits.MAX_OBJECT_BYTES` (StorageError
    "TooLarge") and spools S3 objects to disk.
    """
    return image.open() if image.open is not None else io.BytesIO(image.read())


@dataclass(frozen=True)
class Detection:
    labels: list[Label]
    model_version: str | None = None
    image_properties: ImageProperties | None = None


class DetectorError(CannotProceed):
    """The detector could not label this image.

    `code` is stable (it lands in the manifest's `error.code`); `billable` says whether the
    failed call still cost money; `fatal` means no further image can succeed (bad credentials,
    access denied) and the run must stop instead of recording an error per image.
    """

    def __init__(self, code: str, message: str, *, billable: bool = False, fatal: bool = False) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.billable = billable
        self.fatal = fatal


class Limiter(Protocol):
    """Paces a detector's calls; one may be shared by many processes (a Ray actor holds the rate)."""

    def acquire(self) -> None:
        """Return when the next call may start."""
        ...


class Detector(Protocol):
    @property
    def info(self) -> DetectorInfo: ...

    @property
    def billable(self) -> bool:
        """Whether each call costs money (Rekognition) or not (the local model)."""
        ...

    def detect(self, image: ImageInput) -> Detection:
        """Label one image. Safe to call from several threads at once. Raises DetectorError."""
        ...

"""Build a detector by name; each backend is imported only when it is asked for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from labelsift.detectors.base import Detector
from labelsift.storage import Storage

DetectorName = Literal["local", "rekognition"]


@dataclass(frozen=True)
class DetectorSettings:
    min_confidence: float = 50.0
    max_labels: int = 1000
    retry_mode: Literal["standard", "adaptive"] = "standard"
    max_attempts: int = 5
    rate_limit: float | None = None
    max_pool_connections: int = 50


def build_detector(
    name: DetectorName, storage: Storage, settings: DetectorSettings | None = None
) -> Detector:
    settings = settings or DetectorSettings()
    if name == "local":
        from labelsift.detectors.local import LocalDetector

        return LocalDetector()
    if name == "rekognition":
        from labelsift.detectors.rekognition import RekognitionDetector

        return RekognitionDetector(
            storage=storage,
            min_confidence=settings.min_confidence,
            max_labels=settings.max_labels,
            retry_mode=settings.retry_mode,
            max_attempts=settings.max_attempts,
            rate_limit=settings.rate_limit,
            max_pool_connections=settings.max_pool_connections,
        )
    raise ValueError(f"unknown detector {name!r}: choose 'local' or 'rekognition'")

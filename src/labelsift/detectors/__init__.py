"""Detectors: every backend answers `detect(image) -> Detection` with the models of `models.py`."""

from labelsift.detectors.base import Detection, Detector, DetectorError, ImageInput

__all__ = ["Detection", "Detector", "DetectorError", "ImageInput"]

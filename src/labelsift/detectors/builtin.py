"""The detectors labelsift ships, registered under `labelsift.detectors` like any plugin's."""

from __future__ import annotations

from pathlib import Path

from labelsift.detectors.base import Detector
from labelsift.detectors.factory import DetectorPlugin, DetectorRequest
from labelsift.errors import UsageError


def _local(request: DetectorRequest) -> Detector:
    if request.argument:
        raise UsageError(f"--detector local:{request.argument}: the local detector takes no argument.")
    from labelsift.detectors.local import LocalDetector

    return LocalDetector(providers=request.settings.providers or None)


def _rekognition(request: DetectorRequest) -> Detector:
    if request.argument:
        raise UsageError(
            f"--detector rekognition:{request.argument}: Rekognition takes no argument; the region and "
            "endpoint come from the AWS configuration (AWS_REGION, AWS_ENDPOINT_URL_REKOGNITION, profiles)."
        )
    from labelsift.detectors.rekognition import RekognitionDetector

    settings = request.settings
    return RekognitionDetector(
        storage=request.storage,
        min_confidence=settings.min_confidence,
        max_labels=settings.max_labels,
        retry_mode=settings.retry_mode,
        max_attempts=settings.max_attempts,
        rate_limit=settings.rate_limit,
        limiter=settings.limiter,
        max_pool_connections=settings.max_pool_connections,
        image_properties=settings.image_properties,
    )


def _onnx(request: DetectorRequest) -> Detector:
    from labelsift.detectors.onnx_file import OnnxDetector

    settings = request.settings
    return OnnxDetector(
        Path(request.argument or ""),
        classes_file=Path(settings.classes_file) if settings.classes_file else None,
        taxonomy_file=Path(settings.taxonomy_file) if settings.taxonomy_file else None,
        providers=settings.providers or None,
        score_threshold=settings.score_threshold,
    )


def _custom_labels(request: DetectorRequest) -> Detector:
    from labelsift.detectors.custom_labels import CustomLabelsDetector

    settings = request.settings
    return CustomLabelsDetector(
        storage=request.storage,
        project_version_arn=request.argument or "",
        min_confidence=settings.min_confidence,
        retry_mode=settings.retry_mode,
        max_attempts=settings.max_attempts,
        rate_limit=settings.rate_limit,
        limiter=settings.limiter,
        max_pool_connections=settings.max_pool_connections,
    )


LOCAL = DetectorPlugin(_local, "free", "the offline NanoDet + EfficientNet models shipped in the package")
REKOGNITION = DetectorPlugin(_rekognition, "per_image", "Amazon Rekognition DetectLabels")
ONNX = DetectorPlugin(_onnx, "free", "an ONNX detector file (YOLOv5/v8/11, RT-DETR): onnx:PATH", True)
CUSTOM_LABELS = DetectorPlugin(
    _custom_labels,
    "per_hour",
    "a running Rekognition Custom Labels model: custom-labels:PROJECT_VERSION_ARN",
    True,
)

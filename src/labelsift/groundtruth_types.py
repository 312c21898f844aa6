"""The `type` strings of SageMaker Ground Truth label metadata that labelsift writes and reads."""

from __future__ import annotations

CLASSIFICATION = "groundtruth/image-classification"
MULTILABEL = "groundtruth/image-classification-multilabel"
DETECTION = "groundtruth/object-detection"

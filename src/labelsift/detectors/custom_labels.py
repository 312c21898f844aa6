"""`--detector custom-labels:PROJECT_VERSION_ARN`: a trained Rekognition Custom Labels model.

Images go to DetectCustomLabels exactly as to DetectLabels (S3Object where the bucket's region
allows, prepared bytes otherwise; the same errors, retries and `--rate`). Each custom label becomes
a manifest label; a label with a `Geometry` becomes one instance per answer, its confidence the
answer's. The model must be RUNNING (`labelsift custom-labels start ARN`): a stopped model stops
the scan at its first image with what to do. Custom Labels bills the hours the model runs, not
the images: `billable` is False, so `--budget` cannot cap it (the CLI refuses the pair).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from labelsift.detectors.base import Detection, DetectorError
from labelsift.detectors.rekognition import RekognitionDetector, _clip, _map_botocore, _map_client_error
from labelsift.errors import UsageError
from labelsift.models import DetectorInfo, Instance, Label

if TYPE_CHECKING:
    from mypy_boto3_rekognition.type_defs import ImageTypeDef

VERSION_ARN = re.compile(r"^arn:aws[a-z-]*:rekognition:[a-z0-9-]+:\d{12}:project/[^/]+/version/[^/]+/\d+$")


def check_version_arn(arn: str) -> str:
    if not VERSION_ARN.match(arn):
        raise UsageError(
            f"--detector custom-labels:{arn}: give a model's ProjectVersionArn, "
            "arn:aws:rekognition:REGION:ACCOUNT:project/NAME/version/VERSION/NUMBER "
            "(labelsift custom-labels status --project NAME prints it)."
        )
    return arn


def custom_labels(answers: list[Mapping[str, Any]]) -> list[Label]:
    """DetectCustomLabels' answers as labels: one per name, an instance per answer with a box."""
    confidences: dict[str, float] = {}
    instances: dict[str, list[Instance]] = {}
    for answer in answers:
        name = str(answer["Name"])
        confidence = _clip(float(answer.get("Confidence", 0.0)), 0.0, 100.0)
        confidences[name] = max(confidences.get(name, 0.0), confidence)
        box = (answer.get("Geometry") or {}).get("BoundingBox")
        if box:
            instances.setdefault(name, []).append(
                Instance(
                    left=_clip(float(box.get("Left", 0.0)), -0.5, 1.5),
                    top=_clip(float(box.get("Top", 0.0)), -0.5, 1.5),
                    width=_clip(float(box.get("Width", 0.0)), 0.0, 2.0),
                    height=_clip(float(box.get("Height", 0.0)), 0.0, 2.0),
                    confidence=confidence,
                )
            )
    return [
        Label(name=name, confidence=confidence, instances=instances.get(name, []))
        for name, confidence in confidences.items()
    ]


class CustomLabelsDetector(RekognitionDetector):
    """`Detector` backed by DetectCustomLabels on one running model version."""

    OPERATION = "DetectCustomLabels"

    def __init__(self, *, project_version_arn: str, **options: Any) -> None:
        super().__init__(**options)
        self.project_version_arn = check_version_arn(project_version_arn)

    @property
    def info(self) -> DetectorInfo:
        return DetectorInfo(name="custom-labels", model_version=self.project_version_arn)

    @property
    def billable(self) -> bool:
        return False  # billed per inference hour while the model runs, not per image

    def _call(self, region: str, image: ImageTypeDef, uri: str) -> Detection:
        client = self.client(region)
        try:
            response = client.detect_custom_labels(
                ProjectVersionArn=self.project_version_arn, Image=image, MinConfidence=self.min_confidence
            )
        except ClientError as error:
            mapped = _map_client_error(error, uri, region)
            if mapped.code == "ResourceNotFoundException":
                raise DetectorError(
                    mapped.code,
                    f"no Custom Labels model {self.project_version_arn} in {region}: check the ARN and the "
                    "region (`labelsift custom-labels status --project NAME` lists the versions).",
                    fatal=True,
                ) from error
            if mapped.code == "ResourceNotReadyException":
                raise DetectorError(
                    mapped.code,
                    f"the model {self.project_version_arn} is not running: start it with "
                    f"`labelsift custom-labels start {self.project_version_arn}`, wait for RUNNING "
                    "(`labelsift custom-labels status`), then scan again. It bills per hour while it runs.",
                    fatal=True,
                ) from error
            raise mapped from error
        except (BotoCoreError, ParamValidationError) as error:
            raise _map_botocore(error, uri) from error
        answers: list[Mapping[str, Any]] = list(response.get("CustomLabels", []))
        return Detection(labels=custom_labels(answers), model_version=self.project_version_arn)

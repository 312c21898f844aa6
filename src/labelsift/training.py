"""The Custom Labels loop: a manifest's hits become a project's datasets, a trained model, its scores.

1. `create_datasets`: the project (made if missing), its TRAIN dataset from a Ground Truth
   manifest in S3 (`labelsift export groundtruth` writes one), and its TEST dataset from a second
   manifest or, when none is given, an empty one filled by DistributeDatasetEntries (Rekognition
   moves about a fifth of the training entries into it). Waits until both are created and returns
   their entry counts.
2. `train`: CreateProjectVersion, with the evaluation written under an S3 prefix.
3. `versions`: DescribeProjectVersions, with F1 and the per-label metrics read from the
   evaluation summary file the service writes.
4. `start` / `stop`: the model bills per inference hour while it runs.

Clients come from the standard AWS configuration (`AWS_ENDPOINT_URL_REKOGNITION` included).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from labelsift.errors import CannotProceed, UsageError
from labelsift.storage import Storage, is_s3, split_s3

if TYPE_CHECKING:
    from mypy_boto3_rekognition import RekognitionClient

WAIT_SECONDS = 600.0


class CustomLabelsError(CannotProceed):
    """A Custom Labels call failed; the message names the call, the resource and what to do."""


@dataclass(frozen=True)
class DatasetStats:
    arn: str
    kind: str
    entries: int
    labeled: int
    labels: int
    errors: int


@dataclass(frozen=True)
class Datasets:
    project_arn: str
    created_project: bool
    train: DatasetStats
    test: DatasetStats
    distributed: bool


@dataclass(frozen=True)
class LabelMetrics:
    label: str
    f1: float | None
    precision: float | None
    recall: float | None
    threshold: float | None
    test_images: int | None


@dataclass(frozen=True)
class VersionStatus:
    arn: str
    status: str
    message: str
    f1: float | None
    labels: list[LabelMetrics] = field(default_factory=list)


def client(region: str | None = None) -> RekognitionClient:
    config = Config(retries={"mode": "standard", "total_max_attempts": 5}, user_agent_extra="labelsift")
    return boto3.session.Session().client("rekognition", region_name=region, config=config)


def _call(what: str, function: Callable[..., Any], **request: Any) -> Any:
    try:
        return function(**request)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise CustomLabelsError(
            f"{what}: Rekognition refused it: {error.get('Code', 'Unknown')}: {error.get('Message', '')}"
        ) from exc
    except BotoCoreError as exc:
        raise CustomLabelsError(f"{what}: the call failed: {exc}") from exc


def ensure_project(rekognition: RekognitionClient, name: str) -> tuple[str, bool]:
    """The project's ARN, made if it does not exist; and whether it was made now."""
    found = _call(f"DescribeProjects {name}", rekognition.describe_projects, ProjectNames=[name])
    for project in found.get("ProjectDescriptions", []):
        return str(project["ProjectArn"]), False
    made = _call(f"CreateProject {name}", rekognition.create_project, ProjectName=name)
    return str(made["ProjectArn"]), True


def _s3_object(uri: str, what: str) -> dict[str, str]:
    if not is_s3(uri):
        raise UsageError(f"{what} {uri}: Custom Labels reads datasets from S3; give an s3:// manifest.")
    bucket, key = split_s3(uri)
    return {"Bucket": bucket, "Name": key}


def _dataset(rekognition: RekognitionClient, project_arn: str, kind: str, manifest: str | None) -> str:
    request: dict[str, Any] = {"ProjectArn": project_arn, "DatasetType": kind}
    if manifest is not None:
        s3 = _s3_object(manifest, f"the {kind.lower()} manifest")
        request["DatasetSource"] = {"GroundTruthManifest": {"S3Object": s3}}
    made = _call(f"CreateDataset {kind} in {project_arn}", rekognition.create_dataset, **request)
    return str(made["DatasetArn"])


def dataset_stats(
    rekognition: RekognitionClient, arn: str, kind: str, *, wait: float = WAIT_SECONDS
) -> DatasetStats:
    """The dataset's counts once it is created (polls while in progress); an error if creation failed."""
    deadline = time.monotonic() + wait
    while True:
        described = _call(f"DescribeDataset {arn}", rekognition.describe_dataset, DatasetArn=arn)
        description = described["DatasetDescription"]
        status = description.get("Status", "")
        if status.endswith("_FAILED"):
            raise CustomLabelsError(f"the {kind} dataset {arn} failed: {description.get('StatusMessage')}")
        if not status.endswith("_IN_PROGRESS"):
            stats = description.get("DatasetStats", {})
            return DatasetStats(
                arn, kind, int(stats.get("TotalEntries", 0)), int(stats.get("LabeledEntries", 0)),
                int(stats.get("TotalLabels", 0)), int(stats.get("ErrorEntries", 0)),
            )  # fmt: skip
        if time.monotonic() > deadline:
            raise CustomLabelsError(f"the {kind} dataset {arn} is still {status} after {wait:.0f} s.")
        time.sleep(2.0)


def create_datasets(
    rekognition: RekognitionClient, project: str, train_manifest: str, test_manifest: str | None = None
) -> Datasets:
    """The project's TRAIN and TEST datasets (see the module's step 1)."""
    _s3_object(train_manifest, "the training manifest")
    project_arn, created = ensure_project(rekognition, project)
    train_arn = _dataset(rekognition, project_arn, "TRAIN", train_manifest)
    test_arn = _dataset(rekognition, project_arn, "TEST", test_manifest)
    dataset_stats(rekognition, train_arn, "TRAIN")
    distributed = test_manifest is None
    if distributed:
        _call(
            f"DistributeDatasetEntries {project}",
            rekognition.distribute_dataset_entries,
            Datasets=[{"Arn": train_arn}, {"Arn": test_arn}],
        )
    train = dataset_stats(rekognition, train_arn, "TRAIN")
    test = dataset_stats(rekognition, test_arn, "TEST")
    return Datasets(project_arn, created, train, test, distributed)


def project_arn(rekognition: RekognitionClient, name: str) -> str:
    found = _call(f"DescribeProjects {name}", rekognition.describe_projects, ProjectNames=[name])
    for project in found.get("ProjectDescriptions", []):
        return str(project["ProjectArn"])
    raise UsageError(f"--project {name}: no such Custom Labels project; make it with `custom-labels create`.")


def train(rekognition: RekognitionClient, project: str, version: str, output: str) -> str:
    """Start training a model version; its ProjectVersionArn."""
    if not is_s3(output):
        raise UsageError(f"--output {output}: training results go to S3; give an s3://bucket/prefix/.")
    bucket, prefix = split_s3(output)
    arn = project_arn(rekognition, project)
    made = _call(
        f"CreateProjectVersion {project}/{version}",
        rekognition.create_project_version,
        ProjectArn=arn,
        VersionName=version,
        OutputConfig={"S3Bucket": bucket, "S3KeyPrefix": prefix},
    )
    return str(made["ProjectVersionArn"])


def _metrics(storage: Storage, summary: dict[str, Any] | None) -> list[LabelMetrics]:
    s3 = (summary or {}).get("S3Object")
    if not s3:
        return []
    uri = f"s3://{s3['Bucket']}/{s3['Name']}"
    try:
        document = json.loads(storage.read(uri, limit=16 << 20))
    except (OSError, ValueError, CannotProceed) as exc:
        raise CustomLabelsError(f"the evaluation summary {uri} could not be read: {exc}") from exc
    found = []
    for item in document.get("LabelEvaluationResults", []):
        metrics = item.get("Metrics", {})
        found.append(
            LabelMetrics(
                str(item.get("Label")),
                metrics.get("F1Score"),
                metrics.get("Precision"),
                metrics.get("Recall"),
                metrics.get("Threshold"),
                item.get("NumberOfTestingImages"),
            )
        )
    return found


def versions(
    rekognition: RekognitionClient, storage: Storage, project: str, version: str | None = None
) -> list[VersionStatus]:
    """The project's model versions, newest first, with their scores once trained."""
    request: dict[str, Any] = {"ProjectArn": project_arn(rekognition, project)}
    if version is not None:
        request["VersionNames"] = [version]
    found = _call(f"DescribeProjectVersions {project}", rekognition.describe_project_versions, **request)
    statuses = []
    for item in found.get("ProjectVersionDescriptions", []):
        evaluation = item.get("EvaluationResult") or {}
        statuses.append(
            VersionStatus(
                str(item["ProjectVersionArn"]),
                str(item.get("Status", "")),
                str(item.get("StatusMessage", "")),
                evaluation.get("F1Score"),
                _metrics(storage, evaluation.get("Summary")),
            )
        )
    return statuses


def start(rekognition: RekognitionClient, version_arn: str, units: int = 1) -> str:
    answer = _call(
        f"StartProjectVersion {version_arn}",
        rekognition.start_project_version,
        ProjectVersionArn=version_arn,
        MinInferenceUnits=units,
    )
    return str(answer["Status"])


def stop(rekognition: RekognitionClient, version_arn: str) -> str:
    answer = _call(
        f"StopProjectVersion {version_arn}", rekognition.stop_project_version, ProjectVersionArn=version_arn
    )
    return str(answer["Status"])

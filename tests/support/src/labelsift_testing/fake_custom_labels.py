"""Rekognition Custom Labels for the local endpoint: projects, datasets, training, a running model.

The operations labelsift's `custom-labels` commands and `--detector custom-labels:ARN` call, with
the service model's exact shapes: every request is validated against botocore's input shape (the
service would refuse what botocore's model refuses) and answers carry only the model's members.

What it simulates:
- CreateDataset reads the Ground Truth manifest from S3 (the endpoint's S3 server) and counts its
  entries and labels as the service does (`DatasetStats`); a line without `source-ref` or without
  a label is an error entry. An empty TEST dataset is made when no source is given, and
  DistributeDatasetEntries moves every fifth training entry into it.
- Training completes after `training_polls` DescribeProjectVersions calls; it fails, with the
  service's message, when the test dataset is empty or has no labels. On completion the
  evaluation summary file is written to the version's OutputConfig location, in the documented
  layout (AggregatedEvaluationResults, EvaluationDetails, LabelEvaluationResults).
- StartProjectVersion makes the model RUNNING after `start_polls` describes; DetectCustomLabels
  answers only while it runs (ResourceNotReadyException otherwise), with the labels of the image's
  scene (the same scenes as DetectLabels) that the model was trained on.
"""

from __future__ import annotations

import functools
import hashlib
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.model import ServiceModel
from botocore.session import get_session
from botocore.validate import ParamValidator

ACCOUNT = "123456789012"
OPERATIONS = frozenset(
    {
        "CreateProject",
        "DescribeProjects",
        "CreateDataset",
        "DescribeDataset",
        "DistributeDatasetEntries",
        "CreateProjectVersion",
        "DescribeProjectVersions",
        "StartProjectVersion",
        "StopProjectVersion",
        "DetectCustomLabels",
    }
)


class CustomLabelsError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass
class Entry:
    source: str
    labels: frozenset[str]
    boxes: bool


@dataclass
class Dataset:
    arn: str
    kind: str
    created: float
    entries: list[Entry] = field(default_factory=list)
    errors: int = 0


@dataclass
class Version:
    arn: str
    name: str
    created: float
    output: dict[str, str]
    labels: tuple[str, ...]
    training: int
    testing: int
    status: str = "TRAINING_IN_PROGRESS"
    message: str = "The model is being trained."
    polls: int = 0
    summary_key: str | None = None
    f1: float | None = None
    units: int | None = None


@dataclass
class Project:
    name: str
    arn: str
    created: float
    feature: str
    datasets: dict[str, Dataset] = field(default_factory=dict)  # TRAIN / TEST
    versions: dict[str, Version] = field(default_factory=dict)


@functools.cache
def service_model() -> ServiceModel:
    """botocore's Rekognition model, loaded once per process."""
    return get_session().get_service_model("rekognition")


def _unit(text: str) -> float:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") / 2**32


def entry_of(line: str) -> Entry | None:
    """A Ground Truth manifest line as Custom Labels reads it; None for an error entry."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict) or not isinstance(record.get("source-ref"), str):
        return None
    labels: set[str] = set()
    boxes = False
    for key, value in record.items():
        meta = record.get(f"{key}-metadata")
        if not isinstance(meta, dict):
            continue
        if isinstance(value, dict) and "annotations" in value:
            class_map = meta.get("class-map") or {}
            for annotation in value["annotations"]:
                name = class_map.get(str(annotation.get("class_id")))
                if isinstance(name, str):
                    labels.add(name)
                    boxes = True
        elif isinstance(meta.get("class-name"), str):
            labels.add(meta["class-name"])
    return Entry(record["source-ref"], frozenset(labels), boxes) if labels else None


class CustomLabelsService:
    """The state and answers of Custom Labels; `FakeRekognition` routes these operations here."""

    def __init__(
        self,
        read_s3: Callable[[str, str], bytes],
        write_s3: Callable[[str, str, bytes], None],
        labels_for: Callable[[bytes], list[dict[str, Any]]],
    ) -> None:
        self._read_s3 = read_s3
        self._write_s3 = write_s3
        self._labels_for = labels_for
        self._lock = threading.RLock()
        self.projects: dict[str, Project] = {}
        self.training_polls = 1
        self.start_polls = 1
        self.region = "us-east-1"

    def handle(
        self, operation: str, request: Mapping[str, Any], image: bytes | None = None
    ) -> dict[str, Any]:
        shape = service_model().operation_model(operation).input_shape
        assert shape is not None
        report = ParamValidator().validate(dict(request), shape)
        if report.has_errors():
            raise CustomLabelsError("ValidationException", report.generate_report())
        handler = getattr(self, f"_{operation}")
        with self._lock:
            result: dict[str, Any] = (
                handler(request, image) if operation == "DetectCustomLabels" else handler(request)
            )
            return result

    # ---- projects ------------------------------------------------------------------------

    def _project_by_arn(self, arn: str) -> Project:
        for project in self.projects.values():
            if project.arn == arn:
                return project
        raise CustomLabelsError("ResourceNotFoundException", f"The project {arn} does not exist.")

    def _CreateProject(self, request: Mapping[str, Any]) -> dict[str, Any]:
        name = request["ProjectName"]
        if name in self.projects:
            raise CustomLabelsError("ResourceInUseException", f"The project {name} already exists.")
        created = time.time()
        arn = f"arn:aws:rekognition:{self.region}:{ACCOUNT}:project/{name}/{int(created * 1000)}"
        self.projects[name] = Project(name, arn, created, request.get("Feature", "CUSTOM_LABELS"))
        return {"ProjectArn": arn}

    def _DescribeProjects(self, request: Mapping[str, Any]) -> dict[str, Any]:
        names = request.get("ProjectNames")
        chosen = [p for p in self.projects.values() if names is None or p.name in names]
        return {"ProjectDescriptions": [self._describe_project(p) for p in chosen]}

    def _describe_project(self, project: Project) -> dict[str, Any]:
        datasets = [
            {
                "CreationTimestamp": d.created,
                "DatasetType": d.kind,
                "DatasetArn": d.arn,
                "Status": "CREATE_COMPLETE",
                "StatusMessage": "The dataset was successfully created.",
                "StatusMessageCode": "SUCCESS",
            }
            for d in project.datasets.values()
        ]
        return {
            "ProjectArn": project.arn,
            "CreationTimestamp": project.created,
            "Status": "CREATED",
            "Datasets": datasets,
            "Feature": project.feature,
        }

    # ---- datasets ------------------------------------------------------------------------

    def _CreateDataset(self, request: Mapping[str, Any]) -> dict[str, Any]:
        project = self._project_by_arn(request["ProjectArn"])
        kind = request["DatasetType"]
        if kind in project.datasets:
            raise CustomLabelsError(
                "ResourceAlreadyExistsException", f"The project already has a {kind} dataset."
            )
        created = time.time()
        arn = f"{project.arn.rsplit('/', 1)[0]}/dataset/{kind.lower()}/{int(created * 1000)}"
        dataset = Dataset(arn, kind, created)
        source = request.get("DatasetSource") or {}
        s3 = (source.get("GroundTruthManifest") or {}).get("S3Object")
        if s3:
            try:
                text = self._read_s3(s3["Bucket"], s3["Name"]).decode("utf-8")
            except Exception as exc:
                raise CustomLabelsError(
                    "InvalidS3ObjectException", f"Unable to read s3://{s3['Bucket']}/{s3['Name']}."
                ) from exc
            for line in text.splitlines():
                if line.strip():
                    entry = entry_of(line)
                    if entry is None:
                        dataset.errors += 1
                    else:
                        dataset.entries.append(entry)
        project.datasets[kind] = dataset
        return {"DatasetArn": arn}

    def _dataset_by_arn(self, arn: str) -> tuple[Project, Dataset]:
        for project in self.projects.values():
            for dataset in project.datasets.values():
                if dataset.arn == arn:
                    return project, dataset
        raise CustomLabelsError("ResourceNotFoundException", f"The dataset {arn} does not exist.")

    def _DescribeDataset(self, request: Mapping[str, Any]) -> dict[str, Any]:
        _, dataset = self._dataset_by_arn(request["DatasetArn"])
        labels = {label for entry in dataset.entries for label in entry.labels}
        return {
            "DatasetDescription": {
                "CreationTimestamp": dataset.created,
                "LastUpdatedTimestamp": dataset.created,
                "Status": "CREATE_COMPLETE",
                "StatusMessage": "The dataset was successfully created.",
                "StatusMessageCode": "SUCCESS",
                "DatasetStats": {
                    "LabeledEntries": len(dataset.entries),
                    "TotalEntries": len(dataset.entries) + dataset.errors,
                    "TotalLabels": len(labels),
                    "ErrorEntries": dataset.errors,
                },
            }
        }

    def _DistributeDatasetEntries(self, request: Mapping[str, Any]) -> dict[str, Any]:
        pairs = [self._dataset_by_arn(item["Arn"]) for item in request["Datasets"]]
        kinds = {dataset.kind: dataset for _, dataset in pairs}
        if len(pairs) != 2 or set(kinds) != {"TRAIN", "TEST"} or pairs[0][0] is not pairs[1][0]:
            raise CustomLabelsError(
                "InvalidParameterException", "Give the TRAIN and the TEST dataset of one project."
            )
        train, test = kinds["TRAIN"], kinds["TEST"]
        if test.entries:
            raise CustomLabelsError("InvalidParameterException", "The test dataset must be empty.")
        test.entries = train.entries[4::5]
        train.entries = [entry for index, entry in enumerate(train.entries) if index % 5 != 4]
        return {}

    # ---- versions ------------------------------------------------------------------------

    def _CreateProjectVersion(self, request: Mapping[str, Any]) -> dict[str, Any]:
        project = self._project_by_arn(request["ProjectArn"])
        name = request["VersionName"]
        if name in project.versions:
            raise CustomLabelsError("ResourceInUseException", f"The version {name} already exists.")
        train = project.datasets.get("TRAIN")
        if train is None or not train.entries:
            raise CustomLabelsError("InvalidParameterException", "The project has no training dataset.")
        test = project.datasets.get("TEST")
        created = time.time()
        arn = f"{project.arn.rsplit('/', 1)[0]}/version/{name}/{int(created * 1000)}"
        labels = tuple(sorted({label for entry in train.entries for label in entry.labels}))
        version = Version(
            arn, name, created, dict(request["OutputConfig"]), labels, len(train.entries),
            len(test.entries) if test else 0,
        )  # fmt: skip
        project.versions[name] = version
        return {"ProjectVersionArn": arn}

    def _advance(self, project: Project, version: Version) -> None:
        version.polls += 1
        if version.status == "TRAINING_IN_PROGRESS" and version.polls > self.training_polls:
            self._finish_training(project, version)
        elif version.status == "STARTING" and version.polls > self.start_polls:
            version.status, version.message = "RUNNING", "The model is running."
        elif version.status == "STOPPING":
            version.status, version.message = "STOPPED", "The model is stopped."

    def _finish_training(self, project: Project, version: Version) -> None:
        test = project.datasets.get("TEST")
        if test is None or not test.entries:
            version.status = "TRAINING_FAILED"
            version.message = "The test dataset is empty: add test images or distribute the training dataset."
            return
        per_label: list[dict[str, Any]] = []
        for label in version.labels:
            images = sum(1 for entry in test.entries if label in entry.labels)
            f1 = round(0.7 + 0.29 * _unit(version.arn + label), 3)
            per_label.append(
                {
                    "Label": label,
                    "NumberOfTestingImages": images,
                    "Metrics": {"F1Score": f1, "Precision": f1, "Recall": f1, "Threshold": 0.5},
                }
            )
        version.f1 = round(sum(item["Metrics"]["F1Score"] for item in per_label) / max(1, len(per_label)), 3)
        summary = {
            "Version": 1,
            "AggregatedEvaluationResults": {
                "F1Score": version.f1,
                "Precision": version.f1,
                "Recall": version.f1,
            },
            "EvaluationDetails": {
                "EvaluationEndTimestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
                "Labels": list(version.labels),
                "NumberOfTestingImages": len(test.entries),
                "NumberOfTrainingImages": version.training,
                "ProjectVersionArn": version.arn,
            },
            "LabelEvaluationResults": per_label,
        }
        prefix = version.output.get("S3KeyPrefix", "")
        key = f"{prefix}EvaluationResultSummary-{project.name}-{version.name}.json"
        self._write_s3(version.output["S3Bucket"], key, json.dumps(summary).encode())
        version.summary_key = key
        version.status, version.message = "TRAINING_COMPLETED", "The model is ready to run."

    def _describe_version(self, version: Version) -> dict[str, Any]:
        description: dict[str, Any] = {
            "ProjectVersionArn": version.arn,
            "CreationTimestamp": version.created,
            "Status": version.status,
            "StatusMessage": version.message,
            "OutputConfig": version.output,
            "BillableTrainingTimeInSeconds": 3600 if version.f1 is not None else 0,
        }
        if version.units is not None:
            description["MinInferenceUnits"] = version.units
        if version.f1 is not None and version.summary_key:
            description["TrainingEndTimestamp"] = version.created + 3600
            description["EvaluationResult"] = {
                "F1Score": version.f1,
                "Summary": {"S3Object": {"Bucket": version.output["S3Bucket"], "Name": version.summary_key}},
            }
        return description

    def _DescribeProjectVersions(self, request: Mapping[str, Any]) -> dict[str, Any]:
        project = self._project_by_arn(request["ProjectArn"])
        names = request.get("VersionNames")
        chosen = [v for v in project.versions.values() if names is None or v.name in names]
        for version in chosen:
            self._advance(project, version)
        chosen.sort(key=lambda v: -v.created)
        return {"ProjectVersionDescriptions": [self._describe_version(v) for v in chosen]}

    def _version_by_arn(self, arn: str) -> Version:
        for project in self.projects.values():
            for version in project.versions.values():
                if version.arn == arn:
                    return version
        raise CustomLabelsError("ResourceNotFoundException", f"The model {arn} does not exist.")

    def _StartProjectVersion(self, request: Mapping[str, Any]) -> dict[str, Any]:
        version = self._version_by_arn(request["ProjectVersionArn"])
        if version.status not in ("TRAINING_COMPLETED", "STOPPED"):
            raise CustomLabelsError("ResourceInUseException", f"The model is {version.status}.")
        version.status, version.message, version.polls = "STARTING", "The model is starting.", 0
        version.units = int(request["MinInferenceUnits"])
        return {"Status": version.status}

    def _StopProjectVersion(self, request: Mapping[str, Any]) -> dict[str, Any]:
        version = self._version_by_arn(request["ProjectVersionArn"])
        if version.status != "RUNNING":
            raise CustomLabelsError("ResourceInUseException", f"The model is {version.status}.")
        version.status, version.message = "STOPPING", "The model is stopping."
        return {"Status": version.status}

    def _DetectCustomLabels(self, request: Mapping[str, Any], image: bytes | None) -> dict[str, Any]:
        version = self._version_by_arn(request["ProjectVersionArn"])
        if version.status != "RUNNING":
            raise CustomLabelsError(
                "ResourceNotReadyException", f"The model {version.arn} is {version.status}, not RUNNING."
            )
        minimum = float(request.get("MinConfidence", 50.0))
        trained = {name.lower(): name for name in version.labels}
        found: list[dict[str, Any]] = []
        for label in self._labels_for(image or b""):
            name = trained.get(label["Name"].lower())
            if name is None or label["Confidence"] < minimum:
                continue
            if not label["Instances"]:
                found.append({"Name": name, "Confidence": label["Confidence"]})
            for instance in label["Instances"]:
                box = instance["BoundingBox"]
                corners = [
                    {"X": box["Left"], "Y": box["Top"]},
                    {"X": box["Left"] + box["Width"], "Y": box["Top"]},
                    {"X": box["Left"] + box["Width"], "Y": box["Top"] + box["Height"]},
                    {"X": box["Left"], "Y": box["Top"] + box["Height"]},
                ]
                geometry = {"BoundingBox": dict(box), "Polygon": corners}
                found.append({"Name": name, "Confidence": instance["Confidence"], "Geometry": geometry})
        limit = request.get("MaxResults")
        return {"CustomLabels": found[:limit] if limit else found}

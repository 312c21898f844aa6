"""Rekognition beyond labels: IMAGE_PROPERTIES, and the Custom Labels create → train → status → detect loop.

Everything goes over real HTTP through boto3 to the local endpoint, which reads and writes the
session's SeaweedFS server; the endpoint's answers are checked against botocore's service model.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from mypy_boto3_s3 import S3Client
from typer.testing import CliRunner

from labelsift.cli import app
from labelsift.cost import PriceTable
from labelsift.manifest import iter_records
from labelsift_testing.fake_rekognition import FakeRekognition, make_image

runner = CliRunner()
SCENES = ["robin", "dog", "robin", "dog", "robin", "dog", "bird", "dog", "robin", "dog", "campfire"]


def words(text: str) -> str:
    return " ".join(text.split())


def rekognition() -> Any:
    return boto3.session.Session().client("rekognition")


def put_images(s3_client: S3Client, bucket: str, prefix: str, scenes: list[str]) -> list[bytes]:
    images = [make_image(scene, seed=index) for index, scene in enumerate(scenes)]
    for index, image in enumerate(images):
        s3_client.put_object(Bucket=bucket, Key=f"{prefix}{index:03d}.jpg", Body=image)
    return images


def scan(source: str, manifest: Path, *options: str) -> Any:
    return runner.invoke(app, ["scan", source, "-o", str(manifest), "--workers", "4", *options])


def test_image_properties_are_asked_for_kept_priced_and_selectable(
    fake_rekognition_s3: FakeRekognition, s3_client: S3Client, bucket: str, tmp_path: Path
) -> None:
    images = put_images(s3_client, bucket, "pile/", SCENES[:6])
    manifest = tmp_path / "m.jsonl"
    result = scan(f"s3://{bucket}/pile/", manifest, "-d", "rekognition", "--image-properties")
    assert result.exit_code == 0, result.output
    records = {record.source: record for record in iter_records(str(manifest))}
    client = rekognition()
    for index, image in enumerate(images):
        answer = client.detect_labels(Image={"Bytes": image}, Features=["GENERAL_LABELS", "IMAGE_PROPERTIES"])
        expected = answer["ImageProperties"]
        kept = records[f"s3://{bucket}/pile/{index:03d}.jpg"].image_properties
        assert kept is not None
        assert kept.quality.sharpness == expected["Quality"]["Sharpness"]
        assert kept.quality.brightness == expected["Quality"]["Brightness"]
        assert kept.foreground is not None
        assert kept.foreground.quality.contrast == expected["Foreground"]["Quality"]["Contrast"]
        assert [c.hex_code for c in kept.dominant_colors] == [
            c["HexCode"] for c in expected["DominantColors"]
        ]
    plain = tmp_path / "plain.jsonl"
    assert scan(f"s3://{bucket}/pile/", plain, "-d", "rekognition").exit_code == 0
    assert all(record.image_properties is None for record in iter_records(str(plain)))

    # Priced on top of the labels: estimate and the budget count both features.
    both = PriceTable(include_image_properties=True)
    assert both.price_of_image(0) == pytest.approx(0.001 + 0.00075)
    estimate = runner.invoke(app, ["estimate", f"s3://{bucket}/pile/", "--image-properties"])
    assert estimate.exit_code == 0, estimate.output
    assert f"${6 * 0.00175:,.2f}" in estimate.output
    budget = tmp_path / "budget.jsonl"
    capped = scan(f"s3://{bucket}/pile/", budget, "-d", "rekognition", "--image-properties",
                  "--budget", f"{3 * 0.00175 + 0.0001}", "--workers", "1")  # fmt: skip
    assert capped.exit_code == 0, capped.output
    assert len(list(iter_records(str(budget)))) == 3  # without properties the budget buys 5

    # --min-sharpness keeps the sharp ones and leaves out records without properties.
    sharpness = sorted(r.image_properties.quality.sharpness for r in records.values() if r.image_properties)
    cut = (sharpness[2] + sharpness[3]) / 2
    want = {
        s for s, r in records.items() if r.image_properties and r.image_properties.quality.sharpness >= cut
    }
    for source_manifest, expected_count in ((manifest, len(want)), (plain, 0)):
        out = tmp_path / f"gt-{source_manifest.stem}.manifest"
        command = ["export", "groundtruth", str(source_manifest), str(out), "-l", "Animal"]
        exported = runner.invoke(app, [*command, "--task", "classification", "--min-sharpness", f"{cut}"])
        assert exported.exit_code == 0, exported.output
        lines = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
        assert len(lines) == expected_count
        assert {line["source-ref"] for line in lines} <= want
    # The report shows how many images each minimum keeps.
    page = tmp_path / "report.html"
    assert runner.invoke(app, ["report", str(manifest), "-o", str(page)]).exit_code == 0
    html = page.read_text()
    quality = html[html.index('<section id="quality">') :].split("</section>")[0]
    assert "6 of 6 records" in quality
    row = re.search(r"<tr><td>sharpness</td>(.*?)</tr>", quality)
    assert row is not None
    kept = [int(cell.replace(",", "")) for cell in re.findall(r"<td[^>]*>([\d,]+)</td>", row.group(1))]
    assert kept == [sum(1 for s in sharpness if s >= step) for step in range(0, 100, 10)]
    refused = scan(f"s3://{bucket}/pile/", tmp_path / "x.jsonl", "--image-properties")
    assert refused.exit_code == 2 and "only --detector rekognition" in words(refused.output)


def test_custom_labels_create_train_status_start_detect_stop(
    fake_rekognition_s3: FakeRekognition, s3_client: S3Client, bucket: str, tmp_path: Path
) -> None:
    put_images(s3_client, bucket, "seed/", SCENES)
    manifest = tmp_path / "seed.jsonl"
    assert scan(f"s3://{bucket}/seed/", manifest, "-d", "rekognition").exit_code == 0
    train_manifest = f"s3://{bucket}/cl/train.manifest"
    created = runner.invoke(app, ["custom-labels", "create", str(manifest), "--project", "birds-and-dogs",
                                  "-o", train_manifest, "-l", "Bird", "-l", "Dog"])  # fmt: skip
    assert created.exit_code == 0, created.output
    text = words(created.output)
    hits = sum(1 for scene in SCENES if scene != "campfire")
    train_count, test_count = hits - hits // 5, hits // 5
    assert f"train: {train_count} entries, {train_count} labeled, 2 labels, 0 errors" in text
    assert f"test: {test_count} entries" in text
    assert "split off the training set" in text
    project = fake_rekognition_s3.custom_labels.projects["birds-and-dogs"]
    assert len(project.datasets["TRAIN"].entries) + len(project.datasets["TEST"].entries) == hits

    trained = runner.invoke(app, ["custom-labels", "train", "--project", "birds-and-dogs", "--version", "v1",
                                  "-o", f"s3://{bucket}/cl/eval/"])  # fmt: skip
    assert trained.exit_code == 0, trained.output
    match = re.search(r"arn:aws:rekognition:\S+/version/v1/\d+", trained.output)
    assert match is not None
    arn = match.group(0)
    status = runner.invoke(app, ["custom-labels", "status", "--project", "birds-and-dogs", "--version", "v1",
                                 "--wait", "--poll-seconds", "0"])  # fmt: skip
    assert status.exit_code == 0, status.output
    text = words(status.output)
    assert "TRAINING_COMPLETED F1 0." in text
    summary = json.loads(
        s3_client.get_object(Bucket=bucket, Key="cl/eval/EvaluationResultSummary-birds-and-dogs-v1.json")[
            "Body"
        ].read()
    )
    for item in summary["LabelEvaluationResults"]:
        assert f"{item['Label']}: F1 {item['Metrics']['F1Score']}" in text

    put_images(s3_client, bucket, "rest/", ["dog", "robin", "campfire", "dog"])
    labelled = tmp_path / "rest.jsonl"
    stopped = scan(f"s3://{bucket}/rest/", labelled, "-d", f"custom-labels:{arn}")
    assert stopped.exit_code != 0, stopped.output
    assert f"labelsiftcustom-labelsstart{arn}" in "".join(stopped.output.split())  # wrapped at 80 columns
    started = runner.invoke(app, ["custom-labels", "start", arn])
    assert started.exit_code == 0 and "STARTING" in started.output
    running = runner.invoke(app, ["custom-labels", "status", "--project", "birds-and-dogs", "--wait",
                                  "--poll-seconds", "0"])  # fmt: skip
    assert "RUNNING" in running.output, running.output
    before = fake_rekognition_s3.calls_by_target()["RekognitionService.DetectCustomLabels"]
    result = scan(f"s3://{bucket}/rest/", labelled, "-d", f"custom-labels:{arn}", "--label", "Dog")
    assert result.exit_code == 0, result.output
    assert fake_rekognition_s3.calls_by_target()["RekognitionService.DetectCustomLabels"] - before == 4
    records = sorted(iter_records(str(labelled)), key=lambda r: r.source)
    assert [r.detector.name if r.detector else None for r in records] == ["custom-labels"] * 4
    assert [[label.name for label in r.labels] for r in records] == [["Dog"], ["Bird"], [], ["Dog"]]
    assert all(label.instances for r in records for label in r.labels)

    refused = scan(
        f"s3://{bucket}/rest/", tmp_path / "y.jsonl", "-d", f"custom-labels:{arn}", "--budget", "1"
    )
    assert refused.exit_code == 2 and "bills the hours the model runs" in words(refused.output)
    estimate = runner.invoke(app, ["estimate", f"s3://{bucket}/rest/", "-d", f"custom-labels:{arn}"])
    assert "per inference hour" in words(estimate.output)
    assert runner.invoke(app, ["custom-labels", "stop", arn]).exit_code == 0
    bad = scan(f"s3://{bucket}/rest/", tmp_path / "z.jsonl", "-d", "custom-labels:not-an-arn")
    assert bad.exit_code == 2 and "ProjectVersionArn" in words(bad.output)


def test_custom_labels_answers_match_the_botocore_service_model(
    fake_rekognition_s3: FakeRekognition, s3_client: S3Client, bucket: str
) -> None:
    fake_rekognition_s3.custom_labels.training_polls = 0
    fake_rekognition_s3.custom_labels.start_polls = 0
    s3_client.put_object(
        Bucket=bucket,
        Key="gt.manifest",
        Body=b"".join(
            json.dumps(
                {"source-ref": f"s3://{bucket}/{i}.jpg", "dog": 0, "dog-metadata": {"class-name": "Dog"}}
            ).encode()
            + b"\n"
            for i in range(10)
        )
        + b"not json\n",
    )
    image = make_image("dog", seed=3)
    client = rekognition()
    calls: list[tuple[str, dict[str, Any]]] = []

    def call(operation: str, **request: Any) -> dict[str, Any]:
        answer = dict(getattr(client, operation)(**request))
        answer.pop("ResponseMetadata")
        calls.append((operation, answer))
        return answer

    project = call("create_project", ProjectName="p")["ProjectArn"]
    source = {"GroundTruthManifest": {"S3Object": {"Bucket": bucket, "Name": "gt.manifest"}}}
    train = call("create_dataset", ProjectArn=project, DatasetType="TRAIN", DatasetSource=source)[
        "DatasetArn"
    ]
    test = call("create_dataset", ProjectArn=project, DatasetType="TEST")["DatasetArn"]
    call("distribute_dataset_entries", Datasets=[{"Arn": train}, {"Arn": test}])
    stats = call("describe_dataset", DatasetArn=train)["DatasetDescription"]["DatasetStats"]
    assert stats == {"LabeledEntries": 8, "TotalEntries": 9, "TotalLabels": 1, "ErrorEntries": 1}
    call("describe_projects", ProjectNames=["p"])
    version = call("create_project_version", ProjectArn=project, VersionName="v1",
                   OutputConfig={"S3Bucket": bucket, "S3KeyPrefix": "out/"})["ProjectVersionArn"]  # fmt: skip
    call("describe_project_versions", ProjectArn=project)
    call("start_project_version", ProjectVersionArn=version, MinInferenceUnits=1)
    call("describe_project_versions", ProjectArn=project, VersionNames=["v1"])
    found = call("detect_custom_labels", ProjectVersionArn=version, Image={"Bytes": image})
    assert {label["Name"] for label in found["CustomLabels"]} == {"Dog"}
    call("stop_project_version", ProjectVersionArn=version)
    with pytest.raises(client.exceptions.ResourceNotReadyException):
        client.detect_custom_labels(ProjectVersionArn=version, Image={"Bytes": image})

    stubber = Stubber(rekognition())
    for operation, answer in calls:
        stubber.add_response(operation, answer)  # raises when an answer breaks the service model
    assert len(calls) == 12
    with pytest.raises(Exception, match="Status"):  # and the check can fail: a wrong type, a stray member
        stubber.add_response("stop_project_version", {"Status": 5})
    with pytest.raises(Exception, match="Bogus"):
        stubber.add_response("create_project", {"ProjectArn": project, "Bogus": 1})

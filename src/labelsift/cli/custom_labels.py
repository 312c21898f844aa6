"""The Custom Labels loop: create a project's datasets from a manifest, train, status, start, stop."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from labelsift import training
from labelsift.cli.common import (
    REDO_EXPORT,
    ExitCode,
    ManifestArgument,
    ParentsOption,
    ThresholdOption,
    fail,
    friendly_errors,
    out,
)
from labelsift.cli.exporting import ExportLabels, export_selection, print_export
from labelsift.exporters.groundtruth import export_groundtruth
from labelsift.storage import Storage

custom_labels_app = typer.Typer(
    help="Train a Rekognition Custom Labels model on a manifest's hits, then label the rest with it."
)


@custom_labels_app.command("create")
def custom_labels_create_command(
    manifest: ManifestArgument,
    project: Annotated[str, typer.Option(help="Custom Labels project (made if it does not exist).")],
    output: Annotated[
        str, typer.Option("--output", "-o", help="s3:// Ground Truth manifest to write for the training set.")
    ],
    label: ExportLabels,
    threshold: ThresholdOption = 50.0,
    task: Annotated[
        str, typer.Option(help="boxes (object detection) | classification | multilabel")
    ] = "boxes",
    test_manifest: Annotated[
        str | None,
        typer.Option(
            help="s3:// Ground Truth manifest for the test set (default: Rekognition splits off ~20%)."
        ),
    ] = None,
    parents: ParentsOption = True,
    overwrite: Annotated[bool, typer.Option(help="Replace OUTPUT if an earlier create wrote it.")] = False,
) -> None:
    """Write the hits as a Ground Truth manifest in S3 and make the project's datasets from it."""
    if task not in ("boxes", "classification", "multilabel"):
        fail(f"--task {task!r}: choose boxes, classification or multilabel.", ExitCode.USAGE)
    for option, value in (("--output", output), ("--test-manifest", test_manifest)):
        if value is not None and not value.startswith("s3://"):
            fail(
                f"{option} {value}: Custom Labels reads datasets from S3; give s3://bucket/key.",
                ExitCode.USAGE,
            )
    with friendly_errors(REDO_EXPORT):
        selection = export_selection(label, threshold, parents, None)
        summary = export_groundtruth(
            manifest,
            output,
            selection,
            task=task,  # type: ignore[arg-type]
            overwrite=overwrite,
            storage=Storage(),
        )
        print_export(summary, label, parents, manifest, threshold)
        made = training.create_datasets(training.client(), project, output, test_manifest)
    out.print(
        f"project {project}{' (made now)' if made.created_project else ''}: {made.project_arn}",
        soft_wrap=True,
    )
    for stats in (made.train, made.test):
        out.print(
            f"{stats.kind.lower()}: {stats.entries} entries, {stats.labeled} labeled, {stats.labels} labels, "
            f"{stats.errors} errors", highlight=False,
        )  # fmt: skip
    if made.distributed:
        out.print("the test set was split off the training set by Rekognition (DistributeDatasetEntries)")
    out.print(
        f"next: labelsift custom-labels train --project {project} --version v1 --output s3://…/", markup=False
    )


@custom_labels_app.command("train")
def custom_labels_train_command(
    project: Annotated[str, typer.Option(help="Custom Labels project.")],
    version: Annotated[str, typer.Option(help="Name of the new model version.")],
    output: Annotated[str, typer.Option("--output", "-o", help="s3://bucket/prefix/ for the evaluation.")],
) -> None:
    """Start training a model version (CreateProjectVersion); training bills per hour."""
    with friendly_errors():
        arn = training.train(training.client(), project, version, output)
    out.print(f"training {arn}", highlight=False, soft_wrap=True)
    out.print(
        f"follow it: labelsift custom-labels status --project {project} --version {version}", markup=False
    )


@custom_labels_app.command("status")
def custom_labels_status_command(
    project: Annotated[str, typer.Option(help="Custom Labels project.")],
    version: Annotated[str | None, typer.Option(help="One version (default: every one).")] = None,
    wait: Annotated[bool, typer.Option(help="Poll until training or starting ends.")] = False,
    poll_seconds: Annotated[float, typer.Option(help="Seconds between polls with --wait.", min=0)] = 30.0,
) -> None:
    """Each model version's status, F1 and per-label metrics (DescribeProjectVersions)."""
    with friendly_errors():
        while True:
            found = training.versions(training.client(), Storage(), project, version)
            busy = [v for v in found if v.status in ("TRAINING_IN_PROGRESS", "STARTING", "STOPPING")]
            if not (wait and busy):
                break
            time.sleep(poll_seconds)
    if not found:
        out.print(f"{project}: no model versions yet (labelsift custom-labels train)")
    for item in found:
        f1 = "" if item.f1 is None else f" F1 {item.f1:.3f}"
        out.print(
            f"{item.arn}: {item.status}{f1} — {item.message}", highlight=False, markup=False, soft_wrap=True
        )
        for metrics in item.labels:
            out.print(
                f"  {metrics.label}: F1 {metrics.f1}, precision {metrics.precision}, "
                f"recall {metrics.recall}, threshold {metrics.threshold}, {metrics.test_images} test images",
                highlight=False, markup=False, soft_wrap=True,
            )  # fmt: skip


@custom_labels_app.command("start")
def custom_labels_start_command(
    version_arn: Annotated[str, typer.Argument(help="The model's ProjectVersionArn.")],
    units: Annotated[int, typer.Option(help="Inference units (each bills per hour).", min=1)] = 1,
) -> None:
    """Start a trained model so `--detector custom-labels:ARN` can use it (bills per hour while it runs)."""
    with friendly_errors():
        status = training.start(training.client(), version_arn, units)
    out.print(
        f"{version_arn}: {status}; stop it when done: labelsift custom-labels stop {version_arn}",
        markup=False,
    )


@custom_labels_app.command("stop")
def custom_labels_stop_command(
    version_arn: Annotated[str, typer.Argument(help="The model's ProjectVersionArn.")],
) -> None:
    """Stop a running model (it stops billing once STOPPED)."""
    with friendly_errors():
        status = training.stop(training.client(), version_arn)
    out.print(f"{version_arn}: {status}", markup=False, soft_wrap=True)

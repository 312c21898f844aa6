"""The export commands: one per layout, all reading a manifest, none calling a detector."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer

from labelsift.cli.common import (
    REDO_EXPORT,
    RESUME_COPY,
    ExitCode,
    ManifestArgument,
    ParentsOption,
    ThresholdOption,
    WorkersOption,
    err,
    fail,
    friendly_errors,
    out,
)
from labelsift.cli.scanning import report_hint
from labelsift.display import (
    export_details,
    export_table,
)
from labelsift.errors import LabelsiftError
from labelsift.exporters.coco import export_coco
from labelsift.exporters.custom_labels import export_custom_labels
from labelsift.exporters.groundtruth import export_groundtruth
from labelsift.exporters.huggingface import export_hf
from labelsift.exporters.label_studio import export_label_studio
from labelsift.exporters.pipeline import Parallel
from labelsift.exporters.review_queue import export_review_queue
from labelsift.exporters.summary import ExportSummary
from labelsift.exporters.voc import export_voc
from labelsift.exporters.yolo import export_yolo
from labelsift.select import Selection, unmatched_in_manifest
from labelsift.storage import Storage

export_app = typer.Typer(help="Build a training-set layout from a manifest; never calls a detector.")

ExportLabels = Annotated[
    list[str], typer.Option("--label", "-l", help="Label to export; repeatable, in class order.")
]
NamesOption = Annotated[
    list[str] | None, typer.Option("--name", help="Rename a class in the output: LABEL=NAME; repeatable.")
]
ValFraction = Annotated[
    float, typer.Option(help="Share of images in the val split (by a hash of the source).")
]
BandOption = Annotated[str | None, typer.Option(help="LOW:HIGH confidences held out for people.")]
MinSharpness = Annotated[
    float | None,
    typer.Option(help="Leave out images whose Rekognition sharpness (0-100) is below this.", min=0, max=100),
]
MinBrightness = Annotated[
    float | None,
    typer.Option(help="Leave out images whose Rekognition brightness (0-100) is below this.", min=0, max=100),
]


def review_band(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    low, sep, high = text.partition(":")
    try:
        band = (float(low), float(high))
    except ValueError:
        band = (-1.0, -1.0)
    if not sep or not 0 <= band[0] < band[1] <= 100:
        fail(
            f"--band {text!r}: give LOW:HIGH confidences with 0 <= LOW < HIGH <= 100, e.g. 50:80.",
            ExitCode.USAGE,
        )
    return band


def _names(pairs: list[str] | None) -> dict[str, str] | None:
    if not pairs:
        return None
    names: dict[str, str] = {}
    for pair in pairs:
        label, sep, name = pair.partition("=")
        if not sep or not label or not name:
            fail(f"--name {pair!r}: write LABEL=NAME, e.g. --name Bird=robin.", ExitCode.USAGE)
        if any(0xDC80 <= ord(char) <= 0xDCFF for char in pair):  # bytes that were not UTF-8
            fail(f"--name {pair!r}: not UTF-8 text; type the names in UTF-8.", ExitCode.USAGE)
        twice = [given for given in names if given.lower() == label.lower()]
        if twice:
            fail(f"--name: {label} is renamed twice ({twice[0]}={names[twice[0]]} and {pair}); "
                 "give each label one name.", ExitCode.USAGE)  # fmt: skip
        names[label] = name
    return names


def export_selection(
    labels: list[str],
    threshold: float,
    parents: bool,
    band: str | None,
    quality: tuple[float | None, float | None] = (None, None),
) -> Selection:
    sharpness, brightness = quality
    if sharpness is not None or brightness is not None:
        err.print(
            "[bold yellow]note:[/] --min-sharpness/--min-brightness leave out every record without image "
            "properties (scan with --detector rekognition --image-properties to have them)."
        )
    return Selection(
        labels=tuple(labels), threshold=threshold, include_parents=parents, band=review_band(band),
        min_sharpness=sharpness, min_brightness=brightness,
    )  # fmt: skip


def print_export(
    summary: ExportSummary, labels: list[str], parents: bool, manifest: str, threshold: float | None = None
) -> None:
    out.print(export_table(summary))
    if summary.sources:
        roots = ", ".join(f"{root} ({n})" for root, n in summary.sources.items())
        out.print(f"images from: {roots}", highlight=False)
    for line in export_details(summary):
        out.print(line, highlight=False)
    _warn_unmatched(summary, labels, parents)
    report_hint(manifest, labels, threshold)


def _warn_unmatched(summary: ExportSummary, labels: list[str], parents: bool) -> None:
    """A warning for each label that exported nothing because no record has it (a typo?)."""
    empty = [
        query
        for query, name in zip(labels, summary.classes, strict=True)
        if not any(summary.per_label[name].images.values()) and not summary.per_label[name].held_out
    ]
    if not empty:
        return
    try:
        missing = unmatched_in_manifest(summary.manifest, Selection(tuple(empty), include_parents=parents))
    except LabelsiftError as exc:  # a line the export did not need to read: the export stands
        err.print(f"[bold yellow]warning:[/] could not look for {', '.join(empty)} in every record: {exc}")
        return
    for label in missing:
        err.print(f"[bold yellow]warning:[/] {label.message(summary.manifest)}", highlight=False)


@export_app.command("custom-labels")
def export_custom_labels_command(
    manifest: ManifestArgument,
    dest: Annotated[str, typer.Argument(help="s3://bucket/prefix or a local folder: DEST/<label>/<key>.")],
    label: ExportLabels,
    threshold: ThresholdOption = 50.0,
    parents: ParentsOption = True,
    band: BandOption = None,
    min_sharpness: MinSharpness = None,
    min_brightness: MinBrightness = None,
    name: NamesOption = None,
    overwrite: Annotated[
        bool, typer.Option(help="Also delete the earlier exports' copies this one no longer makes.")
    ] = False,
    dry_run: Annotated[bool, typer.Option(help="Print the plan and counts; copy nothing.")] = False,
) -> None:
    """Rekognition Custom Labels folders: one folder per label, images copied server-side."""
    with friendly_errors(RESUME_COPY):
        selection = export_selection(label, threshold, parents, band, (min_sharpness, min_brightness))
        summary = export_custom_labels(
            manifest, dest, selection, storage=Storage(),
            names=_names(name), overwrite=overwrite, dry_run=dry_run,
        )  # fmt: skip
    print_export(summary, label, parents, manifest, threshold)


@export_app.command("groundtruth")
def export_groundtruth_command(
    manifest: ManifestArgument,
    output: Annotated[str, typer.Argument(help="Output manifest (local or s3://).")],
    label: ExportLabels,
    task: Annotated[str, typer.Option(help="classification | multilabel | per-label | boxes")] = "boxes",
    attribute: Annotated[str | None, typer.Option(help="Label attribute name in the manifest.")] = None,
    threshold: ThresholdOption = 50.0,
    parents: ParentsOption = True,
    band: BandOption = None,
    min_sharpness: MinSharpness = None,
    min_brightness: MinBrightness = None,
    name: NamesOption = None,
    overwrite: Annotated[bool, typer.Option(help="Replace OUTPUT if it exists.")] = False,
    workers: WorkersOption = None,
) -> None:
    """SageMaker Ground Truth output manifest, checked against the Custom Labels rules."""
    if task not in ("classification", "multilabel", "per-label", "boxes"):
        fail(f"--task {task!r}: choose classification, multilabel, per-label or boxes.", ExitCode.USAGE)
    with friendly_errors(REDO_EXPORT):
        selection = export_selection(label, threshold, parents, band, (min_sharpness, min_brightness))
        summary = export_groundtruth(
            manifest, output, selection, task=task,  # type: ignore[arg-type]
            attribute=attribute, names=_names(name), overwrite=overwrite, parallel=Parallel(workers),
            storage=Storage(),
        )  # fmt: skip
    print_export(summary, label, parents, manifest, threshold)


def _annotation_command(fmt: str) -> Callable[..., None]:
    exporter = {"coco": export_coco, "yolo": export_yolo, "voc": export_voc}[fmt]

    def command(
        manifest: ManifestArgument,
        dest: Annotated[str, typer.Argument(help="Output folder (local or s3://).")],
        label: ExportLabels,
        threshold: ThresholdOption = 50.0,
        parents: ParentsOption = True,
        band: BandOption = None,
        min_sharpness: MinSharpness = None,
        min_brightness: MinBrightness = None,
        name: NamesOption = None,
        val: ValFraction = 0.2,
        copy_images: Annotated[bool, typer.Option(help="Copy the images beside the annotations.")] = True,
        upright: Annotated[
            bool,
            typer.Option(
                help="Write EXIF-rotated copies in their displayed frame (tag dropped), so loaders that "
                "ignore EXIF see boxes and pixels in one frame; --no-upright copies bytes unchanged."
            ),
        ] = True,
        keep_partial: Annotated[
            bool,
            typer.Option(
                help="Export images where a selected label has no box passing the threshold (without "
                "that label); by default they are held out for people."
            ),
        ] = False,
        overwrite: Annotated[
            bool,
            typer.Option(
                help="Replace an earlier export in DEST (only the files its receipt lists; "
                "copies of unchanged sources are reused)."
            ),
        ] = False,
        workers: WorkersOption = None,
    ) -> None:
        with friendly_errors(REDO_EXPORT):
            selection = export_selection(label, threshold, parents, band, (min_sharpness, min_brightness))
            summary = exporter(
                manifest, dest, selection, storage=Storage(),
                names=_names(name), val_fraction=val, copy_images=copy_images, upright=upright,
                keep_partial=keep_partial, overwrite=overwrite, parallel=Parallel(workers),
            )  # fmt: skip
        print_export(summary, label, parents, manifest, threshold)

    command.__doc__ = {
        "coco": "COCO detection JSON (category ids from 1, unique annotation ids).",
        "yolo": "Ultralytics YOLO: images/<split>, labels/<split>, data.yaml.",
        "voc": "Pascal VOC XML, one file per image, 1-based pixel corners.",
    }[fmt]
    return command


for _fmt in ("coco", "yolo", "voc"):
    export_app.command(_fmt)(_annotation_command(_fmt))


@export_app.command("hf")
def export_hf_command(
    manifest: ManifestArgument,
    dest: Annotated[str, typer.Argument(help="Output folder (local or s3://).")],
    label: ExportLabels,
    task: Annotated[str, typer.Option(help="classification | multilabel | detection")] = "classification",
    threshold: ThresholdOption = 50.0,
    parents: ParentsOption = True,
    band: BandOption = None,
    min_sharpness: MinSharpness = None,
    min_brightness: MinBrightness = None,
    name: NamesOption = None,
    val: ValFraction = 0.2,
    upright: Annotated[bool, typer.Option(help="Write EXIF-rotated copies in their displayed frame.")] = True,
    keep_partial: Annotated[
        bool, typer.Option(help="detection: export images where a selected label has no passing box.")
    ] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an earlier export in DEST.")] = False,
    workers: WorkersOption = None,
) -> None:
    """Hugging Face imagefolder (train/, validation/ with metadata.parquet) for datasets.load_dataset."""
    with friendly_errors(REDO_EXPORT):
        selection = export_selection(label, threshold, parents, band, (min_sharpness, min_brightness))
        summary = export_hf(
            manifest, dest, selection, task=task, storage=Storage(), names=_names(name),  # type: ignore[arg-type]
            val_fraction=val, upright=upright, keep_partial=keep_partial, overwrite=overwrite,
            parallel=Parallel(workers),
        )  # fmt: skip
    print_export(summary, label, parents, manifest, threshold)


@export_app.command("label-studio")
def export_label_studio_command(
    manifest: ManifestArgument,
    output: Annotated[str, typer.Argument(help="Tasks file OUT.json (local or s3://); OUT.xml beside it.")],
    label: ExportLabels,
    threshold: ThresholdOption = 50.0,
    parents: ParentsOption = True,
    band: Annotated[
        str | None, typer.Option(help="LOW:HIGH confidences also sent, for people to decide in Label Studio.")
    ] = None,
    min_sharpness: MinSharpness = None,
    min_brightness: MinBrightness = None,
    local_files_root: Annotated[
        str | None,
        typer.Option(
            help="Folder Label Studio serves (LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT), for local files."
        ),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option(help="Replace an earlier export of OUT.json and OUT.xml.")
    ] = False,
    workers: WorkersOption = None,
) -> None:
    """Label Studio tasks with the detector's boxes as pre-annotations, and the labeling config."""
    with friendly_errors(REDO_EXPORT):
        selection = export_selection(label, threshold, parents, band, (min_sharpness, min_brightness))
        summary = export_label_studio(
            manifest, output, selection, local_files_root=local_files_root, overwrite=overwrite,
            parallel=Parallel(workers), storage=Storage(),
        )  # fmt: skip
    print_export(summary, label, parents, manifest, threshold)


@export_app.command("review")
def export_review_command(
    manifest: ManifestArgument,
    output: Annotated[str, typer.Argument(help="Labelling-job input manifest to write.")],
    label: ExportLabels,
    band: Annotated[str, typer.Option(help="LOW:HIGH confidences to send to people.")] = "50:80",
    min_sharpness: MinSharpness = None,
    min_brightness: MinBrightness = None,
    parents: ParentsOption = True,
    allow_local: Annotated[bool, typer.Option(help="Allow local sources (a GT job needs s3://).")] = False,
    missing_boxes: Annotated[
        bool,
        typer.Option(
            help="Also queue images selected at --threshold for a label with no usable box (what "
            "coco/yolo/voc hold out as label_without_boxes), for people to box."
        ),
    ] = False,
    threshold: Annotated[
        float, typer.Option(help="With --missing-boxes: the detection export's threshold.", min=0, max=100)
    ] = 0.0,
    overwrite: Annotated[bool, typer.Option(help="Replace OUTPUT if it exists.")] = False,
) -> None:
    """A Ground Truth labelling-job input manifest of the uncertain images (source-ref lines)."""
    with friendly_errors(REDO_EXPORT):
        selection = export_selection(label, threshold, parents, band, (min_sharpness, min_brightness))
        summary = export_review_queue(
            manifest, output, selection, allow_local=allow_local, missing_boxes=missing_boxes,
            overwrite=overwrite, storage=Storage(),
        )  # fmt: skip
    print_export(summary, label, parents, manifest)

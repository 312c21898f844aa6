"""The command line: parse, call the library, print. No logic of its own."""

from __future__ import annotations

import logging
import re
import shlex
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import IntEnum
from types import FrameType
from typing import Annotated, Any, Literal, NoReturn

import typer
from rich.console import Console
from rich.logging import RichHandler

from labelsift import cost as cost_module
from labelsift import training, uri
from labelsift.demo import run_demo
from labelsift.detectors.factory import DetectorSettings, billing_of, build_detector
from labelsift.display import (
    export_details,
    export_table,
    label_hint,
    reason_lines,
    scan_progress,
    summary_table,
)
from labelsift.errors import LabelsiftError, UsageError
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
from labelsift.gt_import import import_review
from labelsift.hitcopy import HitCopier, refuse_inside
from labelsift.inventory import list_source
from labelsift.listing import ListingNotes
from labelsift.ls_import import import_label_studio
from labelsift.manifest import ManifestLock, local_manifest, merge
from labelsift.models import RunSummary, StopReason
from labelsift.redact import RedactSecrets
from labelsift.review import run_review
from labelsift.scan import ScanAborted, ScanOptions, ScanProgress, scan
from labelsift.select import Selection, unmatched_in_manifest
from labelsift.storage import ObjectInfo, Storage, StorageError


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1
    USAGE = 2
    CANNOT_PROCEED = 3
    BAD_MANIFEST = 4
    INTERRUPTED = 130


app = typer.Typer(
    name="labelsift",
    help="Turn a dirty pile of images into clean, annotated training data.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
out = Console()
err = Console(stderr=True)


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")] = False,
) -> None:
    handler = RichHandler(console=err, show_path=False, show_time=False)
    handler.addFilter(RedactSecrets())  # no token, signature or secret in any log line
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING, format="%(message)s", handlers=[handler]
    )
    logging.getLogger().setLevel(logging.DEBUG if debug else logging.WARNING)  # basicConfig acts once only
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer", "smart_open"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if debug else logging.WARNING)


def fail(message: str, code: ExitCode) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(int(code))


_STOPPED = "interrupted by Ctrl-C before the end; rerun the same command."
_RESUME = "interrupted by Ctrl-C: the manifest is complete up to there; rerun the same command to resume."
_REDO_EXPORT = (
    "interrupted by Ctrl-C: the export did not finish. A local destination keeps its earlier state; "
    "on S3 what it wrote is listed in a pending receipt. Rerun the same command (no --overwrite "
    "needed for what it left)."
)
_MERGE_STOPPED = (
    "interrupted by Ctrl-C: nothing was written (an earlier output is untouched); rerun the same command."
)
_REPORT_STOPPED = "interrupted by Ctrl-C: no report was written (an earlier one is untouched)."
_RESUME_COPY = (
    "interrupted by Ctrl-C: every image copied so far is whole; rerun the same command (on S3 it "
    "copies only the rest; a local destination keeps its earlier state until an export finishes)."
)


@contextmanager
def friendly_errors(interrupted: str = _STOPPED) -> Iterator[None]:
    """Turn the library's errors into one paragraph and a documented exit code (Ctrl-C: 130)."""
    try:
        yield
    except typer.Exit:
        raise
    except KeyboardInterrupt:
        fail(interrupted, ExitCode.INTERRUPTED)
    except LabelsiftError as exc:
        _traceback_if_debug()
        if isinstance(exc, ScanAborted):
            out.print(summary_table(exc.summary))
        fail(str(exc), ExitCode(exc.exit_code))
    except FileNotFoundError as exc:
        _traceback_if_debug()
        fail(f"{exc.filename}: no such file or folder.", ExitCode.CANNOT_PROCEED)
    except Exception as exc:
        _traceback_if_debug()
        fail(
            f"unexpected {type(exc).__name__}: {exc}. Rerun with --debug for the traceback.", ExitCode.FAILED
        )


def _traceback_if_debug() -> None:
    """With --debug, the traceback of the error being handled; the exit code stays the same."""
    if logging.getLogger("labelsift").isEnabledFor(logging.DEBUG):  # the root's level, set by `main`
        err.print_exception()


@contextmanager
def graceful_interrupt() -> Iterator[threading.Event]:
    """The first Ctrl-C asks the run to stop cleanly; the second stops at once."""
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        err.print("stopping: finishing the requests in flight (Ctrl-C again to quit now)…")

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


InventoryOption = Annotated[
    str | None,
    typer.Option(
        help="s3://…/manifest.json of an S3 Inventory report of the bucket: read the objects from it "
        "(CSV, Parquet, ORC) instead of listing the bucket."
    ),
]
FreeImagesOption = Annotated[
    int | None, typer.Option(help="Free-tier images you still have this month.", min=0)
]
MaxErrorsOption = Annotated[
    int, typer.Option(help="Stop after N images in a row fail (service down); 0 never stops.", min=0)
]
WorkersOption = Annotated[
    int | None,
    typer.Option(
        help="Processes that parse and format records (default: one per core, at most 4 per core; "
        "1: this one only).",
        min=1,
    ),
]
LabelOption = Annotated[
    list[str] | None,
    typer.Option("--label", "-l", help="Label to look for (name, alias or parent); repeatable."),
]
ThresholdOption = Annotated[float, typer.Option(help="Minimum confidence (0-100) for a hit.", min=0, max=100)]
DetectorOption = Annotated[
    str,
    typer.Option(
        "--detector",
        "-d",
        help="local: offline model (default, free). rekognition: Amazon Rekognition. onnx:PATH: your "
        "ONNX detector (YOLOv5/v8/11, RT-DETR). custom-labels:ARN: a running Custom Labels model. "
        "NAME[:ARG]: a plugin registered under the entry-point group labelsift.detectors.",
    ),
]
ClassesOption = Annotated[
    str | None, typer.Option("--classes", help="onnx: class names, one a line, when the model has none.")
]
TaxonomyOption = Annotated[
    str | None,
    typer.Option("--taxonomy", help='onnx: JSON {"name": ["Parent", ...]} giving labels their parents.'),
]
ProvidersOption = Annotated[
    str | None,
    typer.Option(
        "--providers", help="onnx/local: onnxruntime providers in order, e.g. cuda,cpu (default cpu)."
    ),
]
MinScoreOption = Annotated[
    float | None,
    typer.Option(
        "--min-score", help="onnx: keep boxes scoring at least this (0-1; default 0.25).", min=0, max=1
    ),
]
ImagePropertiesOption = Annotated[
    bool,
    typer.Option(
        "--image-properties",
        help="rekognition: also ask for IMAGE_PROPERTIES (brightness, sharpness, contrast, colours); "
        "priced per image on top of labels.",
    ),
]


def _selection(labels: list[str] | None, threshold: float, parents: bool) -> Selection | None:
    return Selection(labels=tuple(labels), threshold=threshold, include_parents=parents) if labels else None


def _settings(
    min_confidence: float,
    retry_mode: Literal["standard", "adaptive"],
    max_attempts: int,
    rate: float | None,
    **detector_options: Any,
) -> DetectorSettings:
    providers = detector_options.pop("providers", None)
    return DetectorSettings(
        min_confidence=min_confidence,
        retry_mode=retry_mode,
        max_attempts=max_attempts,
        rate_limit=rate,
        providers=tuple(name for name in (providers or "").split(",") if name.strip()),
        **detector_options,
    )


def _run_scan(
    source: str,
    manifest: str,
    detector_spec: str,
    options: ScanOptions,
    settings: DetectorSettings,
    on_hit: Callable[[ObjectInfo], None] | None = None,
    inventory: str | None = None,
) -> RunSummary:
    with ManifestLock(local_manifest(manifest, purpose="scan"), purpose="scan") as held:
        return _scan_locked(source, manifest, detector_spec, options, settings, on_hit, held, inventory)


def _scan_locked(
    source: str,
    manifest: str,
    detector_spec: str,
    options: ScanOptions,
    settings: DetectorSettings,
    on_hit: Callable[[ObjectInfo], None] | None,
    held: ManifestLock,
    inventory: str | None = None,
) -> RunSummary:
    storage = Storage()
    detector = build_detector(detector_spec, storage, settings)
    last: list[ScanProgress] = []
    notes = ListingNotes()
    objects = None if inventory is None else list_source(storage, inventory, source, notes=notes)

    def count_total() -> int:
        return sum(1 for _ in Storage().list(source))

    with (
        graceful_interrupt() as stop,
        scan_progress(out, count_total if inventory is None else None, options.max_images) as show,
    ):

        def progress(snapshot: ScanProgress) -> None:
            last[:] = [snapshot]
            show(snapshot)

        summary = scan(
            source, manifest, detector, storage, options, on_progress=progress, on_hit=on_hit, stop=stop,
            notes=notes, lock=held, objects=objects,
        )  # fmt: skip
    out.print(summary_table(summary))
    _print_listing(storage, source, notes, listed=summary.listed, inventory=inventory)
    if last:
        for line in reason_lines(last[0]):
            out.print(line, highlight=False)
    hint = label_hint(summary)
    if hint:
        out.print(hint, highlight=False)
    return summary


def _print_listing(
    storage: Storage, source: str, notes: ListingNotes, *, listed: int, inventory: str | None = None
) -> None:
    """What the listing passed over, and a hint when it found nothing at all."""
    for line in notes.lines():
        out.print(line, highlight=False)
    if listed == 0 and inventory is not None:
        out.print(f"No image under {source} in the inventory {inventory}.", highlight=False)
    elif listed == 0:
        out.print(storage.nothing_listed(source, notes), highlight=False)


def _finish(summary: RunSummary) -> None:
    if summary.stopped is StopReason.INTERRUPTED:
        err.print("interrupted: the manifest is complete up to here; rerun the same command to resume.")
        raise typer.Exit(int(ExitCode.INTERRUPTED))
    _report_hint(summary.manifest, summary.labels, summary.threshold)


def _report_hint(manifest: str, labels: list[str], threshold: float | None) -> None:
    """Where a report of the manifest can be made (what each threshold keeps, as pictures)."""
    words = ["labelsift", "report", manifest, "-o", "report.html"]
    for name in labels:
        words += ["--label", name]
    if threshold is not None and labels:
        words += ["--threshold", f"{threshold:g}"]
    out.print(
        f"to see what the detector saw: {shlex.join(words)}", highlight=False, markup=False, soft_wrap=True
    )


def _check_detector_options(detector: str, budget: float | None, image_properties: bool) -> None:
    billing = billing_of(detector)
    if budget is not None and billing == "per_hour":
        raise UsageError(
            f"--budget with --detector {detector}: Custom Labels bills the hours the model runs, not the "
            "images, so a budget cannot cap it; use --max-images, and stop the model when done "
            "(labelsift custom-labels stop ARN)."
        )
    if image_properties and detector != "rekognition":
        raise UsageError(f"--image-properties: only --detector rekognition has them (not {detector}).")


@app.command("scan")
def scan_command(
    source: Annotated[str, typer.Argument(help="s3://bucket/prefix or a local folder.")],
    output: Annotated[
        str,
        typer.Option(
            "--output",
            "-o",
            help="Local manifest to write (appended; resumes; .jsonl or .jsonl.gz); with --engine ray, "
            "a folder or s3:// prefix of shards.",
        ),
    ],
    detector: DetectorOption = "local",
    label: LabelOption = None,
    threshold: ThresholdOption = 50.0,
    parents: Annotated[bool, typer.Option(help="Let a label's parents match (Animal matches Bird).")] = True,
    max_images: Annotated[int | None, typer.Option(help="Consider at most N images.", min=1)] = None,
    target: Annotated[int | None, typer.Option(help="Stop after N hits.", min=1)] = None,
    patience: Annotated[int | None, typer.Option(help="Stop after N misses in a row.", min=1)] = None,
    budget: Annotated[float | None, typer.Option(help="Spend at most this many US dollars.", min=0)] = None,
    workers: Annotated[int, typer.Option(help="Concurrent requests.", min=1, max=256)] = 16,
    retry_errors: Annotated[bool, typer.Option(help="Try again the images that failed before.")] = False,
    allow_mixed_detectors: Annotated[
        bool, typer.Option(help="Allow several detectors in one manifest.")
    ] = False,
    dedupe: Annotated[
        bool,
        typer.Option(
            help="Label identical objects once and reuse the record (same_as). --no-dedupe labels every "
            "object (no per-image memory: for runs past ~10^7 distinct images on a small machine)."
        ),
    ] = True,
    min_confidence: Annotated[float, typer.Option(help="Rekognition MinConfidence.", min=0, max=100)] = 50.0,
    rate: Annotated[float | None, typer.Option(help="Client-side cap, requests per second.", min=0.1)] = None,
    retry_mode: Annotated[
        Literal["standard", "adaptive"], typer.Option(help="botocore retry mode.")
    ] = "standard",
    max_attempts: Annotated[int, typer.Option(help="botocore max attempts per call.", min=1)] = 5,
    prices: Annotated[str | None, typer.Option(help="JSON price table overriding the defaults.")] = None,
    free_images: FreeImagesOption = None,
    max_errors_in_row: MaxErrorsOption = 50,
    classes: ClassesOption = None,
    taxonomy: TaxonomyOption = None,
    providers: ProvidersOption = None,
    min_score: MinScoreOption = None,
    image_properties: ImagePropertiesOption = False,
    inventory: InventoryOption = None,
    engine: Annotated[
        Literal["threads", "ray"],
        typer.Option(help="threads: this machine. ray: a Ray cluster; -o is then a folder or s3:// prefix."),
    ] = "threads",
    ray_address: Annotated[
        str | None, typer.Option(help="--engine ray: the cluster (default: RAY_ADDRESS, or a local one).")
    ] = None,
    actors: Annotated[
        int | None, typer.Option(help="--engine ray: labelling actors (default 2).", min=1)
    ] = None,
    gpus_per_actor: Annotated[
        float, typer.Option(help="--engine ray: GPUs per actor (local detector on CUDA).", min=0)
    ] = 0.0,
) -> None:
    """Ask a detector what every image shows and record everything in a JSON Lines manifest."""
    with friendly_errors(_RESUME):
        _check_detector_options(detector, budget, image_properties)
        _only_with_ray(engine, ray_address=ray_address, actors=actors, gpus_per_actor=gpus_per_actor or None)
        options = ScanOptions(
            selection=_selection(label, threshold, parents),
            max_images=max_images,
            target=target,
            patience=patience,
            budget=budget,
            workers=workers,
            retry_errors=retry_errors,
            allow_mixed_detectors=allow_mixed_detectors,
            dedupe=dedupe,
            prices=cost_module.load_prices(
                prices, free_images_left=free_images, image_properties=image_properties
            ),
            max_errors_in_row=max_errors_in_row or None,
        )
        settings = _settings(
            min_confidence, retry_mode, max_attempts, rate, classes_file=classes, taxonomy_file=taxonomy,
            providers=providers, score_threshold=min_score, image_properties=image_properties,
        )  # fmt: skip
        if engine == "ray":
            summary = _run_ray_scan(
                source, output, detector, options, settings, ray_address, actors, gpus_per_actor, inventory
            )  # fmt: skip
        else:
            summary = _run_scan(source, output, detector, options, settings, inventory=inventory)
    _finish(summary)


def _only_with_ray(engine: str, **given: object) -> None:
    named = [f"--{name.replace('_', '-')}" for name, value in given.items() if value is not None]
    if engine != "ray" and named:
        raise UsageError(f"{', '.join(named)} only apply with --engine ray; add --engine ray or drop them.")


def _run_ray_scan(
    source: str,
    dest: str,
    detector_spec: str,
    options: ScanOptions,
    settings: DetectorSettings,
    address: str | None,
    actors: int | None,
    gpus: float,
    inventory: str | None,
) -> RunSummary:
    from labelsift.distributed.driver import RayOptions, RayRun, ray_scan

    ray_options = RayOptions(address=address, actors=actors or 2, gpus_per_actor=gpus)
    run = RayRun.for_detector(source, dest, detector_spec, settings, options, ray_options, inventory)
    notes = ListingNotes()
    with graceful_interrupt() as stop, scan_progress(out, None, options.max_images) as show:
        summary = ray_scan(run, stop=stop, on_progress=show, notes=notes)
    out.print(summary_table(summary))
    _print_listing(run.storage, source, notes, listed=summary.listed, inventory=inventory)
    for line in reason_lines(run.progress):
        out.print(line, highlight=False)
    return summary


@app.command("filter")
def filter_command(
    source: Annotated[str, typer.Argument(help="s3://bucket/prefix or a local folder.")],
    dest: Annotated[str, typer.Argument(help="s3://bucket/prefix or a local folder for the hits.")],
    label: Annotated[list[str], typer.Option("--label", "-l", help="Label to keep; repeatable.")],
    name: Annotated[str | None, typer.Option(help="Folder under DEST (default: the label).")] = None,
    manifest: Annotated[
        str | None, typer.Option("--manifest", "-o", help="Local manifest (default beside cwd).")
    ] = None,
    detector: DetectorOption = "local",
    threshold: ThresholdOption = 50.0,
    parents: Annotated[bool, typer.Option(help="Let a label's parents match.")] = True,
    max_images: Annotated[int | None, typer.Option(min=1, help="Consider at most N images.")] = None,
    target: Annotated[int | None, typer.Option(min=1, help="Stop after N hits.")] = None,
    patience: Annotated[int | None, typer.Option(min=1, help="Stop after N misses in a row.")] = None,
    budget: Annotated[float | None, typer.Option(min=0, help="Spend at most this many US dollars.")] = None,
    workers: Annotated[int, typer.Option(min=1, max=256, help="Concurrent requests.")] = 16,
    overwrite: Annotated[
        bool, typer.Option(help="Replace different objects already at the destination.")
    ] = False,
    rate: Annotated[float | None, typer.Option(help="Client-side cap, requests per second.", min=0.1)] = None,
    max_errors_in_row: MaxErrorsOption = 50,
    classes: ClassesOption = None,
    taxonomy: TaxonomyOption = None,
    providers: ProvidersOption = None,
    min_score: MinScoreOption = None,
    inventory: InventoryOption = None,
) -> None:
    """Scan SOURCE and copy each hit to DEST/FOLDER/<key>."""
    folder = name or label[0]
    # one file in the working folder whatever the folder's name (`--name a/b`, `--name ../x`)
    manifest_path = manifest or f"labelsift-{re.sub(r'[^A-Za-z0-9._-]+', '_', folder).strip('.')}.jsonl"
    with friendly_errors(_RESUME):
        _check_detector_options(detector, budget, False)
        options = ScanOptions(
            selection=_selection(label, threshold, parents),
            max_images=max_images,
            target=target,
            patience=patience,
            budget=budget,
            workers=workers,
            max_errors_in_row=max_errors_in_row or None,
        )
        settings = _settings(
            50.0, "standard", 5, rate, classes_file=classes, taxonomy_file=taxonomy, providers=providers,
            score_threshold=min_score,
        )  # fmt: skip
        refuse_inside(source, dest, folder)
        with HitCopier(Storage(), dest, folder, overwrite=overwrite) as copier:
            summary = _run_scan(source, manifest_path, detector, options, settings, copier, inventory)
            try:
                copies = copier.close()
            except StorageError as exc:
                if exc.code != "Exists":
                    raise
                fail(f"{exc} Pass --overwrite to replace it.", ExitCode.CANNOT_PROCEED)
        out.print(
            f"copied {copies.copied} new hits into {copier.destination} "
            f"({copies.already_there} already there, {copies.hits} hits in all)"
        )
    _finish(summary)


@app.command("estimate")
def estimate_command(
    source: Annotated[str, typer.Argument(help="s3://bucket/prefix or a local folder.")],
    rate: Annotated[float, typer.Option(help="Requests per second you expect (your account quota).")] = 50.0,
    detector: DetectorOption = "rekognition",
    prices: Annotated[str | None, typer.Option(help="JSON price table overriding the defaults.")] = None,
    free_images: FreeImagesOption = None,
    image_properties: ImagePropertiesOption = False,
    inventory: InventoryOption = None,
) -> None:
    """Count the images of SOURCE and say what a full scan would cost and take, before spending."""
    storage, notes = Storage(), ListingNotes()
    with friendly_errors():
        cost_module.check_rate(rate)
        table = cost_module.load_prices(
            prices, free_images_left=free_images, image_properties=image_properties
        )
        billing = billing_of(detector)
        objects = None if inventory is None else list_source(storage, inventory, source, notes=notes)
        result = cost_module.estimate_source(
            storage, source, table, rate_per_second=rate, billable=billing == "per_image", notes=notes,
            objects=objects,
        )  # fmt: skip
        out.print(f"{result.images} images, {result.bytes / 1e6:.1f} MB in {source}")
        _print_listing(storage, source, notes, listed=result.images, inventory=inventory)
    hours, rest = divmod(result.seconds, 3600)
    if result.duplicates:
        out.print(
            f"{result.duplicates} duplicate{'s' if result.duplicates != 1 else ''} (the same bytes as "
            "another image, labelled once): "
            f"${result.saved_usd:,.2f} saved"
        )
    if billing == "per_hour":
        out.print(f"{detector}: billed per inference hour while the model runs, not per image; at {rate:g}")
        out.print("images/s the scan keeps it busy for the time below (see the Custom Labels price list)")
    else:
        out.print(f"{detector}: ${result.detector_usd:,.2f} for a full scan")
    out.print(f"time at {rate:g} images/s: {int(hours)} h {rest / 60:.0f} min")
    out.print(f"crowd labelling instead: ${result.crowd_usd_low:,.2f}–${result.crowd_usd_high:,.2f}")


@app.command("merge")
def merge_command(
    shards: Annotated[
        list[str],
        typer.Argument(
            help="Manifests to merge (local, .gz or s3://); a folder or s3:// prefix stands for the "
            "*.jsonl / *.jsonl.gz shards in it."
        ),
    ],
    output: Annotated[
        str, typer.Option("--output", "-o", help="Merged manifest to write (local, .gz or s3://), whole.")
    ],
    overwrite: Annotated[bool, typer.Option(help="Replace OUTPUT if it exists (never an input).")] = False,
) -> None:
    """Merge manifests into one; the newest record per source wins."""
    with friendly_errors(_MERGE_STOPPED):
        for manifest in [*shards, output]:
            uri.parse(manifest, what="manifest")  # a presigned or http(s) URL: exit 2, its query unshown
        result = merge(shards, output, overwrite=overwrite)
    out.print(
        f"{result.records} records, {result.verdicts} verdicts, {result.superseded} superseded → {output}"
    )


@app.command("report")
def report_command(
    manifest: Annotated[str, typer.Argument(help="Manifest to read (local, .gz or s3://).")],
    output: Annotated[str, typer.Option("--output", "-o", help="HTML file to write (opens offline).")],
    label: Annotated[
        list[str] | None,
        typer.Option("--label", "-l", help="Label to show; repeatable (default: the 3 seen most)."),
    ] = None,
    threshold: Annotated[
        float, typer.Option(help="The threshold to mark on each curve (0-100).", min=0, max=100)
    ] = 50.0,
    parents: Annotated[bool, typer.Option(help="Let a label's parents match.")] = True,
    samples: Annotated[int, typer.Option(help="Thumbnails per label and band.", min=0, max=100)] = 8,
    overwrite: Annotated[bool, typer.Option(help="Replace an earlier report at OUTPUT.")] = False,
) -> None:
    """One self-contained HTML page: what the detector saw, what each threshold keeps, what failed."""
    from labelsift.report import make_report  # Pillow drawing and the page: only for this command

    with friendly_errors(_REPORT_STOPPED):
        made = make_report(
            manifest, output, label or [], threshold=threshold, parents=parents, samples_per_band=samples,
            overwrite=overwrite, storage=Storage(),
        )  # fmt: skip
    tally = made.tally
    shown = ", ".join(item.name for item in tally.labels) or "none"
    out.print(f"{tally.records:,} records, labels shown: {shown} → {output}", highlight=False, markup=False)
    for name, closest in made.unmatched.items():
        hint = f" Did you mean {closest!r}?" if closest else ""
        err.print(f"warning: no record has the label {name!r}.{hint}", highlight=False, markup=False)


export_app = typer.Typer(help="Build a training-set layout from a manifest; never calls a detector.")
app.add_typer(export_app, name="export")

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


def _band(text: str | None) -> tuple[float, float] | None:
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


def _export_selection(
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
        labels=tuple(labels), threshold=threshold, include_parents=parents, band=_band(band),
        min_sharpness=sharpness, min_brightness=brightness,
    )  # fmt: skip


def _print_export(
    summary: ExportSummary, labels: list[str], parents: bool, manifest: str, threshold: float | None = None
) -> None:
    out.print(export_table(summary))
    if summary.sources:
        roots = ", ".join(f"{root} ({n})" for root, n in summary.sources.items())
        out.print(f"images from: {roots}", highlight=False)
    for line in export_details(summary):
        out.print(line, highlight=False)
    _warn_unmatched(summary, labels, parents)
    _report_hint(manifest, labels, threshold)


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
    manifest: Annotated[str, typer.Argument(help="Manifest to read (local, .gz or s3://).")],
    dest: Annotated[str, typer.Argument(help="s3://bucket/prefix or a local folder: DEST/<label>/<key>.")],
    label: ExportLabels,
    threshold: ThresholdOption = 50.0,
    parents: Annotated[bool, typer.Option(help="Let a label's parents match.")] = True,
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
    with friendly_errors(_RESUME_COPY):
        selection = _export_selection(label, threshold, parents, band, (min_sharpness, min_brightness))
        summary = export_custom_labels(
            manifest, dest, selection, storage=Storage(),
            names=_names(name), overwrite=overwrite, dry_run=dry_run,
        )  # fmt: skip
    _print_export(summary, label, parents, manifest, threshold)


@export_app.command("groundtruth")
def export_groundtruth_command(
    manifest: Annotated[str, typer.Argument(help="Manifest to read (local, .gz or s3://).")],
    output: Annotated[str, typer.Argument(help="Output manifest (local or s3://).")],
    label: ExportLabels,
    task: Annotated[str, typer.Option(help="classification | multilabel | per-label | boxes")] = "boxes",
    attribute: Annotated[str | None, typer.Option(help="Label attribute name in the manifest.")] = None,
    threshold: ThresholdOption = 50.0,
    parents: Annotated[bool, typer.Option(help="Let a label's parents match.")] = True,
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
    with friendly_errors(_REDO_EXPORT):
        selection = _export_selection(label, threshold, parents, band, (min_sharpness, min_brightness))
        summary = export_groundtruth(
            manifest, output, selection, task=task,  # type: ignore[arg-type]
            attribute=attribute, names=_names(name), overwrite=overwrite, parallel=Parallel(workers),
            storage=Storage(),
        )  # fmt: skip
    _print_export(summary, label, parents, manifest, threshold)


def _annotation_command(fmt: str) -> Callable[..., None]:
    exporter = {"coco": export_coco, "yolo": export_yolo, "voc": export_voc}[fmt]

    def command(
        manifest: Annotated[str, typer.Argument(help="Manifest to read (local, .gz or s3://).")],
        dest: Annotated[str, typer.Argument(help="Output folder (local or s3://).")],
        label: ExportLabels,
        threshold: ThresholdOption = 50.0,
        parents: Annotated[bool, typer.Option(help="Let a label's parents match.")] = True,
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
        with friendly_errors(_REDO_EXPORT):
            selection = _export_selection(label, threshold, parents, band, (min_sharpness, min_brightness))
            summary = exporter(
                manifest, dest, selection, storage=Storage(),
                names=_names(name), val_fraction=val, copy_images=copy_images, upright=upright,
                keep_partial=keep_partial, overwrite=overwrite, parallel=Parallel(workers),
            )  # fmt: skip
        _print_export(summary, label, parents, manifest, threshold)

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
    manifest: Annotated[str, typer.Argument(help="Manifest to read (local, .gz or s3://).")],
    dest: Annotated[str, typer.Argument(help="Output folder (local or s3://).")],
    label: ExportLabels,
    task: Annotated[str, typer.Option(help="classification | multilabel | detection")] = "classification",
    threshold: ThresholdOption = 50.0,
    parents: Annotated[bool, typer.Option(help="Let a label's parents match.")] = True,
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
    with friendly_errors(_REDO_EXPORT):
        selection = _export_selection(label, threshold, parents, band, (min_sharpness, min_brightness))
        summary = export_hf(
            manifest, dest, selection, task=task, storage=Storage(), names=_names(name),  # type: ignore[arg-type]
            val_fraction=val, upright=upright, keep_partial=keep_partial, overwrite=overwrite,
            parallel=Parallel(workers),
        )  # fmt: skip
    _print_export(summary, label, parents, manifest, threshold)


@export_app.command("label-studio")
def export_label_studio_command(
    manifest: Annotated[str, typer.Argument(help="Manifest to read (local, .gz or s3://).")],
    output: Annotated[str, typer.Argument(help="Tasks file OUT.json (local or s3://); OUT.xml beside it.")],
    label: ExportLabels,
    threshold: ThresholdOption = 50.0,
    parents: Annotated[bool, typer.Option(help="Let a label's parents match.")] = True,
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
    with friendly_errors(_REDO_EXPORT):
        selection = _export_selection(label, threshold, parents, band, (min_sharpness, min_brightness))
        summary = export_label_studio(
            manifest, output, selection, local_files_root=local_files_root, overwrite=overwrite,
            parallel=Parallel(workers), storage=Storage(),
        )  # fmt: skip
    _print_export(summary, label, parents, manifest, threshold)


@export_app.command("review")
def export_review_command(
    manifest: Annotated[str, typer.Argument(help="Manifest to read (local, .gz or s3://).")],
    output: Annotated[str, typer.Argument(help="Labelling-job input manifest to write.")],
    label: ExportLabels,
    band: Annotated[str, typer.Option(help="LOW:HIGH confidences to send to people.")] = "50:80",
    min_sharpness: MinSharpness = None,
    min_brightness: MinBrightness = None,
    parents: Annotated[bool, typer.Option(help="Let a label's parents match.")] = True,
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
    with friendly_errors(_REDO_EXPORT):
        selection = _export_selection(label, threshold, parents, band, (min_sharpness, min_brightness))
        summary = export_review_queue(
            manifest, output, selection, allow_local=allow_local, missing_boxes=missing_boxes,
            overwrite=overwrite, storage=Storage(),
        )  # fmt: skip
    _print_export(summary, label, parents, manifest)


@app.command("review")
def review_command(
    manifest: Annotated[str, typer.Argument(help="Local manifest; verdicts are appended to it.")],
    label: Annotated[str, typer.Option("--label", "-l", help="Label to review.")],
    band: Annotated[str, typer.Option(help="LOW:HIGH confidences to review.")] = "50:80",
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0 = any free port).")] = 0,
    who: Annotated[str, typer.Option(help="Name recorded with each verdict.")] = "reviewer",
) -> None:
    """Serve a local page on 127.0.0.1 to accept or reject the uncertain images, one key each."""
    low_high = _band(band)
    assert low_high is not None
    with friendly_errors():
        run_review(manifest, label, low_high, storage=Storage(), port=port, who=who, echo=out.print)


@app.command("import-review")
def import_review_command(
    manifest: Annotated[str, typer.Argument(help="Local manifest to add the verdicts to.")],
    gt_output: Annotated[
        str,
        typer.Argument(help="Ground Truth output manifest, or Label Studio JSON export (local or s3://)."),
    ],
    label: Annotated[
        str | None, typer.Option("--label", "-l", help="The label the job answered about.")
    ] = None,
    source_format: Annotated[
        str, typer.Option("--from", help="groundtruth (output manifest) | label-studio (JSON export)")
    ] = "groundtruth",
    who: Annotated[
        str | None, typer.Option(help="Name recorded with each verdict (default: the tool's name).")
    ] = None,
) -> None:
    """Record people's answers (a Ground Truth job's, or Label Studio's annotations) as verdicts."""
    if source_format not in ("groundtruth", "label-studio"):
        fail(f"--from {source_format!r}: choose groundtruth or label-studio.", ExitCode.USAGE)
    with friendly_errors():
        if source_format == "label-studio":
            labels = [label] if label is not None else None
            summary: Any = import_label_studio(manifest, gt_output, labels=labels, who=who or "label-studio")
        else:
            summary = import_review(manifest, gt_output, label=label, who=who or "groundtruth")
    out.print(summary.report(), highlight=False)


custom_labels_app = typer.Typer(
    help="Train a Rekognition Custom Labels model on a manifest's hits, then label the rest with it."
)
app.add_typer(custom_labels_app, name="custom-labels")


@custom_labels_app.command("create")
def custom_labels_create_command(
    manifest: Annotated[str, typer.Argument(help="Manifest to read (local, .gz or s3://).")],
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
    parents: Annotated[bool, typer.Option(help="Let a label's parents match.")] = True,
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
    with friendly_errors(_REDO_EXPORT):
        selection = _export_selection(label, threshold, parents, None)
        summary = export_groundtruth(
            manifest,
            output,
            selection,
            task=task,  # type: ignore[arg-type]
            overwrite=overwrite,
            storage=Storage(),
        )
        _print_export(summary, label, parents, manifest, threshold)
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


@app.command("demo")
def demo_command(
    output: Annotated[
        str, typer.Argument(help="Folder for the manifest and the exports.")
    ] = "labelsift-demo",
) -> None:
    """The main job on the bundled photos with the offline model: scan, then export two layouts."""
    with friendly_errors():
        folder = uri.parse(output, what="demo folder")
        if not isinstance(folder, uri.LocalLocation):
            fail(f"{folder}: the demo writes into a local folder; give a path.", ExitCode.USAGE)
        result = run_demo(folder.path, on_progress=lambda line: out.print(line, highlight=False))
    out.print(summary_table(result.scan))
    for line in result.report():
        out.print(line, highlight=False)


def run() -> None:
    app(prog_name="labelsift")


if __name__ == "__main__":
    run()

"""The scan, filter and estimate commands."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from typing import Annotated, Literal

import typer

from labelsift import cost as cost_module
from labelsift.cli.common import (
    RESUME,
    ClassesOption,
    DetectorOption,
    ExitCode,
    FreeImagesOption,
    ImagePropertiesOption,
    InventoryOption,
    LabelOption,
    MaxErrorsOption,
    MinScoreOption,
    ParentsOption,
    ProvidersOption,
    TaxonomyOption,
    ThresholdOption,
    detector_settings,
    err,
    fail,
    friendly_errors,
    graceful_interrupt,
    make_selection,
    out,
)
from labelsift.detectors.factory import DetectorSettings, billing_of, build_detector
from labelsift.display import (
    label_hint,
    reason_lines,
    scan_progress,
    summary_table,
)
from labelsift.errors import UsageError
from labelsift.hitcopy import HitCopier, refuse_inside
from labelsift.inventory import list_source
from labelsift.listing import ListingNotes
from labelsift.manifest import ManifestLock, local_manifest
from labelsift.models import RunSummary, StopReason
from labelsift.scan import ScanOptions, ScanProgress, scan
from labelsift.storage import ObjectInfo, Storage, StorageError


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
    report_hint(summary.manifest, summary.labels, summary.threshold)


def report_hint(manifest: str, labels: list[str], threshold: float | None) -> None:
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
    with friendly_errors(RESUME):
        _check_detector_options(detector, budget, image_properties)
        _only_with_ray(engine, ray_address=ray_address, actors=actors, gpus_per_actor=gpus_per_actor or None)
        options = ScanOptions(
            selection=make_selection(label, threshold, parents),
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
        settings = detector_settings(
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
    parents: ParentsOption = True,
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
    with friendly_errors(RESUME):
        _check_detector_options(detector, budget, False)
        options = ScanOptions(
            selection=make_selection(label, threshold, parents),
            max_images=max_images,
            target=target,
            patience=patience,
            budget=budget,
            workers=workers,
            max_errors_in_row=max_errors_in_row or None,
        )
        settings = detector_settings(
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

"""The Ray driver of `labelsift scan --engine ray`: list, drop what is done, feed an actor pool.

The driver lists the source in source order (boto3, as the plain scan does), drops what the shards
already hold (same source and ETag; errors again with `retry_errors`) and feeds the rest, one
window of at most `RayOptions.window` images at a time (the listing is never held whole), to
`map_batches` over an `ActorPoolStrategy` pool of `BatchLabeller` actors. Each batch comes back as
one shard the actor wrote and a few outcome rows the driver counts. Spending limits live in one
`Coordinator` actor; `--rate` in one `RateKeeper` actor.

`--patience` (misses in a row, in source order) is refused: the actors finish images in no
particular order, and stopping in source order at the driver would leave every batch in flight
spent past the stop. Use --target, --max-images or --budget, or the plain engine.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from labelsift.dedupe import Duplicates
from labelsift.detectors.factory import DetectorSettings, build_detector
from labelsift.distributed.actor import ITEM_FIELDS, ActorJob, BatchLabeller, DetectorSpec, ShardWriteFailed
from labelsift.distributed.control import Coordinator, Limits, RateKeeper, Tally
from labelsift.distributed.copies import DriverCopies
from labelsift.distributed.shards import check_dest, load_prior
from labelsift.errors import CannotProceed, UsageError
from labelsift.inventory import list_source
from labelsift.listing import ListingNotes
from labelsift.manifest import SourceIndex
from labelsift.manifest.lock import ManifestLock
from labelsift.models import DetectorInfo, ImageRecord, RunSummary, ScanStatus, StopReason
from labelsift.scan import Copies, ScanAborted, ScanOptions, ScanProgress, check_source
from labelsift.select import closest_label
from labelsift.storage import ObjectInfo, Storage, is_s3

ITEM_SCHEMA = pa.schema(
    [
        ("uri", pa.string()),
        ("key", pa.string()),
        ("size", pa.int64()),
        ("etag", pa.string()),
        ("version_id", pa.string()),
        ("storage_class", pa.string()),
    ]
)


@dataclass(frozen=True)
class RayOptions:
    address: str | None = None  # None: a cluster already initialised, or a local one started here
    actors: int = 2
    gpus_per_actor: float = 0.0
    cpus_per_actor: float | None = None  # None: fractional, so that read tasks always find a CPU
    batch_size: int = 16  # images per batch, and so per shard
    window: int = 20_000  # images the driver hands to one pool run (bounds the driver's memory)
    write_attempts: int = 4  # tries at writing one batch's shard before the run stops (FAILED)
    worker_env: Mapping[str, str] = field(default_factory=dict)  # environment for the actors


def refuse_unsupported(options: ScanOptions, ray_options: RayOptions) -> None:
    """UsageError (exit 2) for what the Ray engine does not do, before anything is listed."""
    if options.patience is not None:
        raise UsageError(
            "--patience is not supported with --engine ray: misses in a row are only defined in source "
            "order, and Ray actors finish images in any order, so a stop there would spend every batch "
            "in flight past it. Use --target, --max-images or --budget, or drop --engine ray."
        )
    if ray_options.actors < 1 or ray_options.batch_size < 1 or ray_options.window < 1:
        raise UsageError("--actors, the batch size and the window must be at least 1.")
    if ray_options.gpus_per_actor < 0:
        raise UsageError("--gpus-per-actor must be 0 or more.")


def connect(address: str | None) -> bool:
    """Join the cluster at `address` (or start a local one); True if this call started Ray."""
    import ray

    if ray.is_initialized():
        return False
    ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=True)
    return True


def _on_this_node() -> Any:
    """Pin the run's control actors (coordinator, rate keeper) to the driver's node: a worker node
    lost mid-job takes its labellers (Ray replaces them) but never the run's counts."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)


def _pool_resources(ray_options: RayOptions) -> tuple[float, float]:
    """(num_cpus, num_gpus) per actor; CannotProceed when the cluster has too few GPUs to start one."""
    import ray

    resources: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
    gpus = ray_options.gpus_per_actor
    if gpus > 0 and resources.get("GPU", 0.0) < gpus:
        raise CannotProceed(
            f"--gpus-per-actor {gpus:g} asks for GPUs, but the Ray cluster has "
            f"{resources.get('GPU', 0.0):g}: no actor could start and Ray would wait for them. Add GPU "
            "nodes to the cluster, or drop --gpus-per-actor to label on the CPUs."
        )
    if ray_options.cpus_per_actor is not None:
        return ray_options.cpus_per_actor, gpus
    cpus = float(resources.get("CPU", 1.0))
    share = (cpus - 0.5) / ray_options.actors  # half a CPU stays free for Ray Data's own tasks
    return round(min(1.0, max(0.05, share)), 3), gpus


@dataclass
class _Feed:
    """What the driver saw while listing."""

    listed: int = 0
    truncated: bool = False  # stopped listing at --max-images


def _windows(
    listing: Iterator[ObjectInfo],
    prior: SourceIndex,
    options: ScanOptions,
    progress: ScanProgress,
    feed: _Feed,
    window: int,
    prior_hits: Callable[[int], bool],
    copies: DriverCopies | None = None,
) -> Iterator[list[ObjectInfo]]:
    """The images still to label, in source order, a window at a time. `prior_hits(n)` reports the
    hits earlier runs found as the listing reaches them and says whether the run may go on. With
    `copies`, a duplicate is held back from the actors (`DriverCopies`); copies whose first was not
    labelled start the next window."""
    chunk: list[ObjectInfo] = []
    hits = 0
    for info in listing:
        if options.max_images is not None and feed.listed >= options.max_images:
            feed.truncated = True
            break
        feed.listed += 1
        progress.considered += 1
        known = prior.get(info.uri)
        redo = known is not None and known.status is ScanStatus.ERROR and options.retry_errors
        if known is not None and known.etag == info.etag and not redo:
            progress.already_done += 1
            progress.hits += bool(known.hit)
            hits += bool(known.hit)
            continue
        if copies is not None and not copies.needs_labelling(info):
            continue
        chunk.append(info)
        if len(chunk) >= window:
            if not prior_hits(hits):
                return
            hits = 0
            yield chunk
            chunk = copies.again() if copies is not None else []
    if not prior_hits(hits):
        return
    while chunk:
        yield chunk
        chunk = copies.again() if copies is not None else []


def _dataset(infos: list[ObjectInfo], batch_size: int) -> Any:
    import ray

    tables = []
    for start in range(0, len(infos), batch_size):
        rows = [
            {name: getattr(info, name) for name in ITEM_FIELDS} for info in infos[start : start + batch_size]
        ]
        tables.append(pa.Table.from_pylist(rows, schema=ITEM_SCHEMA))
    return ray.data.from_arrow(tables)


def _count(
    table: pa.Table,
    progress: ScanProgress,
    seen: Counter[str],
    copies: DriverCopies | None,
    listed: Mapping[str, ObjectInfo],
) -> None:
    for row in table.to_pylist():
        if copies is not None and row["source"] in listed:
            copies.finished(listed[row["source"]], ImageRecord.model_validate_json(row["record"]))
        progress.scanned += 1
        progress.billed += bool(row["billed"])
        progress.hits += bool(row["hit"])
        if row["status"] == ScanStatus.ERROR.value:
            progress.errors += 1
        elif row["status"] == ScanStatus.SKIPPED.value:
            progress.skipped += 1
        if row["code"] is not None:
            progress.reasons[row["code"]] += 1
            progress.examples.setdefault(row["code"], row["message"])
        seen.update(row["labels"])


def _run_window(
    infos: list[ObjectInfo], job: ActorJob, ray_options: RayOptions, resources: tuple[float, float]
) -> Iterator[pa.Table]:
    import ray

    context = ray.data.DataContext.get_current()
    context.actor_task_retry_on_errors = [ShardWriteFailed]  # type: ignore[list-item]
    context.enable_progress_bars = False
    dataset = _dataset(infos, ray_options.batch_size).map_batches(
        BatchLabeller,
        fn_constructor_kwargs={"job": job},
        batch_size=ray_options.batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=ray_options.actors),
        num_cpus=resources[0],
        num_gpus=resources[1],
        runtime_env={"env_vars": dict(ray_options.worker_env)} if ray_options.worker_env else None,
    )
    yield from dataset.iter_batches(batch_size=None, batch_format="pyarrow")


def _watch(stop: threading.Event, finished: threading.Event, coordinator: Any) -> threading.Thread:
    """Tell the coordinator when `stop` is set (Ctrl-C): actors then start no further image."""

    def run() -> None:
        while not finished.wait(0.2):
            if stop.is_set():
                coordinator.stop.remote(StopReason.INTERRUPTED.value)
                return

    thread = threading.Thread(target=run, name="labelsift-ray-stop", daemon=True)
    thread.start()
    return thread


@dataclass
class RayRun:
    """One Ray scan: its inputs, and the actors and counters it holds while it runs."""

    source: str
    dest: str
    spec: DetectorSpec
    detector_info: DetectorInfo
    billable: bool
    options: ScanOptions
    ray_options: RayOptions
    inventory: str | None = None  # an S3 Inventory manifest.json listing the source's bucket
    storage: Storage = field(default_factory=Storage)
    progress: ScanProgress = field(default_factory=ScanProgress)
    seen: Counter[str] = field(default_factory=Counter)
    feed: _Feed = field(default_factory=_Feed)

    @classmethod
    def for_detector(
        cls,
        source: str,
        dest: str,
        detector: str,
        settings: DetectorSettings,
        options: ScanOptions,
        ray_options: RayOptions,
        inventory: str | None = None,
    ) -> RayRun:
        """A run of `detector` (as --detector takes it): built once here for its name and price; the
        actors build their own from the same spec."""
        built = build_detector(detector, Storage(), settings)
        return cls(
            source=source, dest=dest, spec=DetectorSpec(detector, settings, ray_options.gpus_per_actor),
            detector_info=built.info, billable=built.billable, options=options, ray_options=ray_options,
            inventory=inventory,
        )  # fmt: skip

    def limits(self) -> Limits:
        options = self.options
        return Limits(
            images=None,  # the driver stops listing at --max-images, in source order, as `scan` does
            target=options.target,
            budget=options.budget if self.billable else None,
            prices=options.prices,
            max_errors_in_row=options.max_errors_in_row,
        )


def ray_scan(
    run: RayRun,
    *,
    stop: threading.Event | None = None,
    on_progress: Callable[[ScanProgress], None] | None = None,
    notes: ListingNotes | None = None,
) -> RunSummary:
    """Scan `run.source` into shards under `run.dest` on the Ray cluster; what the run did.

    Raises ScanAborted (with the summary so far) when a fault no image can get past stopped it.
    """
    check_source(run.source)
    refuse_unsupported(run.options, run.ray_options)
    run.dest = check_dest(run.dest)
    started_at = datetime.now(UTC)
    stop = stop or threading.Event()
    with _dest_lock(run.dest):
        return _locked(run, stop, on_progress, notes, started_at)


def _dest_lock(dest: str) -> AbstractContextManager[object]:
    """One scan at a time into a local folder (ManifestInUse, exit 3, names the holder). An S3
    prefix cannot be locked: two scans into one prefix only overwrite each other's same shards."""
    return nullcontext() if is_s3(dest) else ManifestLock(Path(dest), purpose="scan")


def _locked(
    run: RayRun,
    stop: threading.Event,
    on_progress: Callable[[ScanProgress], None] | None,
    notes: ListingNotes | None,
    started_at: datetime,
) -> RunSummary:
    import ray

    options = run.options
    duplicates = Duplicates() if options.dedupe else None
    try:
        prior = load_prior(
            run.storage, run.dest, options.selection, run.detector_info.name,
            options.allow_mixed_detectors, run.seen,
            duplicates.remember if duplicates is not None else None,
        )  # fmt: skip
    except BaseException:
        if duplicates is not None:
            duplicates.close()
        raise
    started_ray = False
    finished = threading.Event()
    copies: DriverCopies | None = None
    try:
        started_ray = connect(run.ray_options.address)
        resources = _pool_resources(run.ray_options)
        coordinator, keeper = _control_actors(run)
        job = ActorJob(
            run.dest, run.spec, options.selection, options.workers, coordinator, keeper,
            run.ray_options.write_attempts,
        )  # fmt: skip
        if duplicates is not None:
            copies = DriverCopies(
                Copies(duplicates), run.storage, run.dest, options.selection,
                run.ray_options.batch_size, run.progress, _CoordinatorLink(coordinator),
            )  # fmt: skip
        _watch(stop, finished, coordinator)
        tally = _drive(run, prior, job, resources, on_progress, notes, copies)
        if stop.is_set() and tally.stopped is None:
            tally.stopped = StopReason.INTERRUPTED.value
    finally:
        finished.set()
        prior.close()
        if duplicates is not None:
            duplicates.close()
        if started_ray:
            ray.shutdown()
    return _finish(run, tally, started_at)


def _control_actors(run: RayRun) -> tuple[Any, Any]:
    """The run's coordinator (its limits, stopping rules and counts) and, with a rate limit, the
    keeper of the shared rate; both on this node, named for this run."""
    import ray

    tag = uuid.uuid4().hex[:12]
    here = _on_this_node()
    coordinator = (
        ray.remote(Coordinator)
        .options(name=f"labelsift-coordinator-{tag}", num_cpus=0, scheduling_strategy=here)
        .remote(run.limits())
    )
    if run.spec.settings.rate_limit is None:
        return coordinator, None
    keeper_class: Any = ray.remote(RateKeeper).options(
        name=f"labelsift-rate-{tag}", num_cpus=0, scheduling_strategy=here
    )
    return coordinator, keeper_class.remote(run.spec.settings.rate_limit)


def _drive(
    run: RayRun,
    prior: SourceIndex,
    job: ActorJob,
    resources: tuple[float, float],
    on_progress: Callable[[ScanProgress], None] | None,
    notes: ListingNotes | None,
    copies: DriverCopies | None,
) -> Tally:
    """Feed the windows to the pool until the listing ends or the coordinator stops the run."""
    import ray

    coordinator = job.coordinator

    def go_on(hits: int) -> bool:
        return ray.get(coordinator.add_prior_hits.remote(hits)) is None

    listing = (
        run.storage.list(run.source, notes=notes)
        if run.inventory is None
        else list_source(run.storage, run.inventory, run.source, notes=notes)
    )
    windows = _windows(
        listing, prior, run.options, run.progress, run.feed, run.ray_options.window, go_on, copies
    )  # fmt: skip
    for infos in windows:
        listed = {info.uri: info for info in infos} if copies is not None else {}
        for table in _run_window(infos, job, run.ray_options, resources):
            _count(table, run.progress, run.seen, copies, listed)
            if on_progress is not None:
                on_progress(run.progress)
        if ray.get(coordinator.state.remote()).stopped is not None:
            break
    if copies is not None:
        copies.flush()
    tally: Tally = ray.get(coordinator.state.remote())
    for handle in (coordinator, job.rate_keeper):
        if handle is not None:
            ray.kill(handle)
    return tally


@dataclass(frozen=True)
class _CoordinatorLink:
    """What the driver's copies tell the run's coordinator."""

    coordinator: Any

    def add_hits(self, hits: int) -> None:  # copies that are hits count towards --target
        import ray

        ray.get(self.coordinator.add_prior_hits.remote(hits))

    def fail(self, message: str) -> None:  # the run stops; batches in flight are still written
        self.coordinator.stop.remote(StopReason.FAILED.value, message)


def _finish(run: RayRun, tally: Tally, started_at: datetime) -> RunSummary:
    progress, options = run.progress, run.options
    progress.cost_usd = tally.cost_usd
    progress.after_stop = tally.after_stop
    stopped = StopReason(tally.stopped) if tally.stopped else None
    if stopped is None:
        stopped = StopReason.MAX_IMAGES if run.feed.truncated else StopReason.EXHAUSTED
    asked = list(options.selection.labels) if options.selection else []
    summary = RunSummary(
        source=run.source,
        manifest=run.dest,
        detector=run.detector_info,
        labels=asked,
        threshold=options.selection.threshold if options.selection else None,
        listed=run.feed.listed,
        already_done=progress.already_done,
        scanned=progress.scanned,
        billed=progress.billed,
        after_stop=min(progress.after_stop, progress.scanned),
        labeled=progress.scanned - progress.errors - progress.skipped,
        skipped=progress.skipped,
        errors=progress.errors,
        hits=progress.hits,
        duplicates=progress.duplicates,
        cost_usd=round(progress.cost_usd, 6),
        stopped=stopped,
        started_at=started_at,
        finished_at=datetime.now(UTC),
        top_labels=run.seen.most_common(10),
        suggestion=closest_label(asked, run.seen) if asked else None,
    )
    if stopped is StopReason.FAILED:
        raise ScanAborted(_failure(tally, options), summary)
    return summary


def _failure(tally: Tally, options: ScanOptions) -> str:
    if tally.last_error and options.max_errors_in_row and tally.errors_in_row >= options.max_errors_in_row:
        return (
            f"Stopped: {options.max_errors_in_row} images in a row failed, the last {tally.last_error} "
            "The detector or the network looks down, so going on would only record an error per image. "
            "The shards hold everything done so far; fix the cause, then rerun the same command with "
            "--retry-errors."
        )
    return (
        f"{tally.last_error or 'the scan failed on the Ray cluster.'} The shards hold everything done so far."
    )

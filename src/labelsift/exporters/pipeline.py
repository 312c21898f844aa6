"""Where an export's per-record work runs: in this process, or spread over worker processes.

An export is two halves. The *stage* turns records into what gets written (parsing and validating
each line, selecting, converting boxes, formatting); it depends on nothing but the record, so it
can run anywhere. The *writer* (the exporter's own loop) assigns ids, copies images, writes files
and counts what it wrote; it stays here, in manifest order.

The first `Parallel.inline_first` records run here; if the manifest goes on, the rest are cut into
batches of `Parallel.batch` lines and handed to `Parallel.workers` processes (default: one per
core), at most two batches per worker in flight, so memory stays flat. For a plain local
manifest (no record superseded, no verdict: `FirstPass.plain`, the usual case) a batch is a byte
span of the file that the worker reads itself; otherwise this process reads the lines and sends
them. Results come back in manifest order, so the output is byte for byte what one process
writes, and the worker's part of the summary (skips, drops, held-out images) is added to the
export's (`ExportSummary.add_part`). A bad line raises the same `ManifestError` at the same place
as in one process.
"""

from __future__ import annotations

import ctypes
import gc
import multiprocessing
import os
import signal
import sys
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from typing import TypeVar

from labelsift.errors import UsageError
from labelsift.manifest import Line, Span, effective_lines, first_pass, records_from, span_lines
from labelsift.manifest.inputs import one_manifest
from labelsift.select import Selection
from labelsift.views import RecordView

from .records import require_manifest
from .summary import ExportSummary

T = TypeVar("T")
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
# A stage: records (None for one that names no selected label) -> items to write. It must be a
# module-level function (or a functools.partial of one) so that workers can receive it.
Stage = Callable[[Iterator[RecordView | None], ExportSummary], Iterator[T]]


@dataclass(frozen=True)
class Parallel:
    """How to spread an export: `workers` None = one per available core; 1 = all in this process."""

    workers: int | None = None
    inline_first: int = 2_000  # records done here before any worker starts (small exports: all)
    batch: int = 2_000  # lines per batch handed to a worker

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise UsageError(f"--workers {self.workers}: give a positive number of processes.")
        if self.workers is not None and self.workers > MAX_WORKERS_PER_CORE * cores():
            raise UsageError(
                f"--workers {self.workers}: this machine has {cores()} core{'s' if cores() != 1 else ''}, "
                "and worker processes beyond the cores only add memory (the output is the same "
                f"whatever the count). Give at most {MAX_WORKERS_PER_CORE * cores()}, or leave "
                "--workers out for one per core."
            )
        if self.inline_first < 0 or self.batch < 1:
            raise ValueError("inline_first must be >= 0 and batch >= 1")

    def worker_count(self) -> int:
        """Processes to use: 1 where workers cannot be forked (see `can_fork`)."""
        if not can_fork():
            return 1
        if self.workers is not None:
            return self.workers
        return cores()


# An export's workers parse and format: CPU-bound, so more of them than cores is only memory. A
# few per core are allowed (hyper-threads, a test of two workers on one core); far more is a typo
# or a setting copied from a bigger machine, refused rather than silently clamped.
MAX_WORKERS_PER_CORE = 4


def cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def can_fork() -> bool:
    """Workers are forked: no start-up cost and no re-import of the caller's script (which spawned
    workers need, and an unguarded script cannot give). They only parse, select and format, holding
    no lock another thread could have held at the fork. Elsewhere than Linux (no fork, or macOS,
    where forking is unsafe) all runs in this process."""
    return sys.platform.startswith("linux")


PER_CORE = Parallel()


def staged(
    manifest_uri: str,
    selection: Selection,
    summary: ExportSummary,
    stage: Stage[T],
    parallel: Parallel = PER_CORE,
) -> Iterator[T]:
    """The stage's items for every effective record of the manifest, in manifest order; a folder
    or prefix of shards is read as one manifest (`manifest.inputs.one_manifest`)."""
    require_manifest(manifest_uri)
    with one_manifest(manifest_uri) as readable:
        yield from _staged(readable, selection, summary, stage, parallel)


def _staged(
    manifest_uri: str, selection: Selection, summary: ExportSummary, stage: Stage[T], parallel: Parallel
) -> Iterator[T]:
    words = [query.strip() for query in selection.labels]
    workers = parallel.worker_count()
    found = first_pass(manifest_uri, parallel.batch if workers > 1 else None)
    if workers > 1 and found.plain and found.spans is not None:
        yield from _spans(manifest_uri, words, found.spans, summary, stage, parallel, workers)
        return
    lines = effective_lines(manifest_uri, found)
    first = lines if workers <= 1 else islice(lines, parallel.inline_first)
    yield from stage(records_from(manifest_uri, first, words), summary)
    if workers > 1:
        yield from _in_workers(manifest_uri, words, _batches(lines, parallel.batch), summary, stage, workers)


def _spans(
    manifest_uri: str,
    words: list[str],
    spans: list[Span],
    summary: ExportSummary,
    stage: Stage[T],
    parallel: Parallel,
    workers: int,
) -> Iterator[T]:
    """A plain local manifest: each worker reads the lines of its own spans from the file, so this
    process neither reads them a second time nor sends them."""
    rest = iter(spans)
    done = 0
    while done < parallel.inline_first and (span := next(rest, None)) is not None:
        yield from stage(records_from(manifest_uri, span_lines(manifest_uri, span), words), summary)
        done += span.lines
    yield from _in_workers(manifest_uri, words, rest, summary, stage, workers)


def _in_workers(
    manifest_uri: str,
    words: list[str],
    batches: Iterator[list[Line] | Span],
    summary: ExportSummary,
    stage: Stage[T],
    workers: int,
) -> Iterator[T]:
    first = next(batches, None)
    if first is None:
        return
    context = multiprocessing.get_context("fork")
    pool = ProcessPoolExecutor(
        workers, mp_context=context, initializer=_start_worker, initargs=(os.getpid(),)
    )
    summary.workers = workers
    pending: deque[Future[tuple[list[T], ExportSummary]]] = deque()
    try:
        with _sigint_held():  # the first submit forks the workers
            pending.append(pool.submit(run_batch, manifest_uri, words, first, summary.empty_part(), stage))
        for batch in batches:
            pending.append(pool.submit(run_batch, manifest_uri, words, batch, summary.empty_part(), stage))
            if len(pending) >= 2 * workers:
                yield from _collect(pending.popleft(), summary)
        while pending:
            yield from _collect(pending.popleft(), summary)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@contextmanager
def _sigint_held() -> Iterator[None]:
    """Hold Ctrl-C while the workers are forked: it then arrives after, as KeyboardInterrupt here.
    Arriving during a fork it could be raised inside an at-fork callback, where Python reports it
    as unraisable and drops it, and the export would go on. The workers and the pool's thread
    keep it blocked (they inherit the mask): Ctrl-C is this thread's to handle."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def run_batch(
    manifest_uri: str, words: list[str], batch: list[Line] | Span, part: ExportSummary, stage: Stage[T]
) -> tuple[list[T], ExportSummary]:
    """In a worker: the stage over one batch of lines (or a span of the file to read them from),
    and the summary of that batch alone."""
    lines = span_lines(manifest_uri, batch) if isinstance(batch, Span) else batch
    items = list(stage(records_from(manifest_uri, lines, words), part))
    return items, part


def _collect(future: Future[tuple[list[T], ExportSummary]], summary: ExportSummary) -> list[T]:
    items, part = future.result()
    summary.add_part(part)
    return items


def _batches(lines: Iterator[Line], size: int) -> Iterator[list[Line]]:
    while batch := list(islice(lines, size)):
        yield batch


def _start_worker(parent: int) -> None:
    """Ctrl-C reaches the whole process group: the exporter, not each worker, handles it. A worker
    dies with the exporter (killed, it could not close the queue the worker waits on), and objects
    inherited from the exporter are frozen out of the cyclic collector, which never walks them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the line above
        os._exit(1)
    gc.freeze()

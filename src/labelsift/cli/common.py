"""What every command shares: exit codes, the consoles, friendly errors and Ctrl-C, the options several
commands take."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from enum import IntEnum
from types import FrameType
from typing import Annotated, Any, Literal, NoReturn

import typer
from rich.console import Console

from labelsift.detectors.factory import DetectorSettings
from labelsift.display import (
    summary_table,
)
from labelsift.errors import LabelsiftError
from labelsift.scan import ScanAborted
from labelsift.select import Selection


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1
    USAGE = 2
    CANNOT_PROCEED = 3
    BAD_MANIFEST = 4
    INTERRUPTED = 130


out = Console()
err = Console(stderr=True)


def fail(message: str, code: ExitCode) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(int(code))


_STOPPED = "interrupted by Ctrl-C before the end; rerun the same command."
RESUME = "interrupted by Ctrl-C: the manifest is complete up to there; rerun the same command to resume."
REDO_EXPORT = (
    "interrupted by Ctrl-C: the export did not finish. A local destination keeps its earlier state; "
    "on S3 what it wrote is listed in a pending receipt. Rerun the same command (no --overwrite "
    "needed for what it left)."
)
MERGE_STOPPED = (
    "interrupted by Ctrl-C: nothing was written (an earlier output is untouched); rerun the same command."
)
REPORT_STOPPED = "interrupted by Ctrl-C: no report was written (an earlier one is untouched)."
RESUME_COPY = (
    "interrupted by Ctrl-C: every image copied so far is whole; rerun the same command (on S3 it "
    "copies only the rest; a local destination keeps its earlier state until an export finishes)."
)


DEBUG_RUN: ContextVar[bool] = ContextVar("labelsift_debug_run", default=False)
"""Whether this invocation was given --debug: set by the root callback on every run (a program that
runs the app in-process, or a test, runs it many times), read when an error is reported."""


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
    if DEBUG_RUN.get():
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
ManifestArgument = Annotated[str, typer.Argument(help="Manifest to read (local, .gz or s3://).")]
ParentsOption = Annotated[bool, typer.Option(help="Let a label's parents match.")]
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


def make_selection(labels: list[str] | None, threshold: float, parents: bool) -> Selection | None:
    return Selection(labels=tuple(labels), threshold=threshold, include_parents=parents) if labels else None


def detector_settings(
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

"""Build a detector from `--detector NAME[:ARGUMENT]`, found by name among the installed plugins.

Every detector, the built-in ones included, is a `DetectorPlugin` registered under the entry-point
group `labelsift.detectors` (see `pyproject.toml`). A separate package adds one by declaring, in its
own `pyproject.toml`:

    [project.entry-points."labelsift.detectors"]
    mymodel = "mypkg.labelsift_plugin:PLUGIN"

where `PLUGIN = DetectorPlugin(create=make_detector, summary="...")` and `make_detector(request)`
returns an object with the `Detector` protocol (`labelsift.detectors.base`). Then
`labelsift scan SRC -o out.jsonl --detector mymodel:anything` calls `make_detector` with
`request.argument == "anything"`. A plugin's module is imported only when its name is asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Literal

from labelsift.detectors.base import Detector, Limiter
from labelsift.errors import LabelsiftError, UsageError
from labelsift.storage import Storage

ENTRY_POINT_GROUP = "labelsift.detectors"

Billing = Literal["free", "per_image", "per_hour"]


@dataclass(frozen=True)
class DetectorSettings:
    """What the command line says about detectors; each backend takes what applies to it."""

    min_confidence: float = 50.0
    max_labels: int = 1000
    retry_mode: Literal["standard", "adaptive"] = "standard"
    max_attempts: int = 5
    rate_limit: float | None = None
    max_pool_connections: int = 50
    image_properties: bool = False
    classes_file: str | None = None
    taxonomy_file: str | None = None
    providers: tuple[str, ...] = ()
    score_threshold: float | None = None
    limiter: Limiter | None = None  # takes the place of rate_limit (one rate shared by Ray actors)


@dataclass(frozen=True)
class DetectorRequest:
    """What a plugin's `create` receives: the text after `NAME:` and the command line's settings."""

    name: str
    argument: str | None
    storage: Storage
    settings: DetectorSettings = field(default_factory=DetectorSettings)


@dataclass(frozen=True)
class DetectorPlugin:
    """A detector by name. `billing` tells `estimate` and `--budget` how its calls are paid for."""

    create: Callable[[DetectorRequest], Detector]
    billing: Billing = "free"
    summary: str = ""
    needs_argument: bool = False


def split_spec(spec: str) -> tuple[str, str | None]:
    """`onnx:/models/yolo.onnx` -> ("onnx", "/models/yolo.onnx"); `local` -> ("local", None)."""
    name, colon, argument = spec.partition(":")
    name = name.strip()
    if not name:
        raise UsageError(f"--detector {spec!r}: give a detector name, e.g. local, rekognition or onnx:PATH.")
    return name, (argument if colon else None)


def _registered() -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for point in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(point.name, point)
    return found


def available() -> list[str]:
    """The detector names installed here, sorted."""
    return sorted(_registered())


def find_plugin(spec: str) -> DetectorPlugin:
    """The plugin `spec` names; a UsageError listing the installed names when there is none."""
    name, argument = split_spec(spec)
    point = _registered().get(name)
    if point is None:
        names = ", ".join(available()) or "none (is labelsift installed? pip install -e .)"
        raise UsageError(
            f"--detector {spec!r}: no detector named {name!r} is installed; installed: {names}. "
            f"A plugin package registers one under the entry-point group {ENTRY_POINT_GROUP!r}."
        )
    try:
        plugin = point.load()
    except Exception as exc:  # a broken plugin must name itself, not crash the CLI
        raise UsageError(
            f"--detector {name}: the plugin {point.value!r} could not be loaded: {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(plugin, DetectorPlugin):
        raise UsageError(
            f"--detector {name}: {point.value!r} is a {type(plugin).__name__}, not a "
            "labelsift.detectors.factory.DetectorPlugin."
        )
    if plugin.needs_argument and not argument:
        raise UsageError(f"--detector {name}: give its argument as {name}:VALUE ({plugin.summary}).")
    return plugin


def build_detector(spec: str, storage: Storage, settings: DetectorSettings | None = None) -> Detector:
    """The detector `spec` (`NAME` or `NAME:ARGUMENT`) names, built by its plugin."""
    plugin = find_plugin(spec)
    name, argument = split_spec(spec)
    try:
        return plugin.create(DetectorRequest(name, argument, storage, settings or DetectorSettings()))
    except LabelsiftError:
        raise
    except Exception as exc:  # a plugin's own failure must name the plugin, not end in a traceback
        raise UsageError(
            f"--detector {spec}: the plugin could not make its detector: {type(exc).__name__}: {exc}"
        ) from exc


def billing_of(spec: str) -> Billing:
    """How the detector `spec` names is paid for, without building it (no model loaded, no client)."""
    return find_plugin(spec).billing

"""Bring your own detector: an ONNX file exported from Ultralytics YOLO (v5, v8, 11) or an RT-DETR.

`--detector onnx:PATH`. The output layout is read from the model, never configured by hand:

| layout    | output shape       | rows                                   | preprocessing |
|-----------|--------------------|----------------------------------------|---------------|
| `yolov8`  | `[1, 4+nc, N]`     | cx, cy, w, h (input pixels), nc scores | letterbox     |
| `yolov5`  | `[1, N, 5+nc]`     | cx, cy, w, h (input pixels), objectness, nc scores | letterbox |
| `rtdetr`  | `[1, N, 4+nc]`     | cx, cy, w, h (0-1 of the input), nc scores         | squash    |
| `end2end` | `[1, N, 6]`        | x1, y1, x2, y2 (input pixels), score, class (NMS done) | letterbox |

`nc` is the number of class names, from the model's metadata (`names`, as Ultralytics writes it)
or from `--classes FILE` (one name per line). The YOLO layouts get per-class NMS here; RT-DETR
and `end2end` outputs are final. Letterboxing is Ultralytics' (grey 114 borders, centred); pixels
are RGB scaled to 0-1. Boxes come back as ratios of the *displayed* image (EXIF applied), like
every detector's. Names become labels through the built-in taxonomy where they match a COCO or
Rekognition name (`person` -> `Person`, with parents), or through `--taxonomy FILE` (JSON:
`{"name": ["Parent", ...]}`). Decoding shares the scan's memory limits (`labelsift.imagelimits`).
"""

from __future__ import annotations

import ast
import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from PIL import Image

from labelsift.detectors.base import Detection, DetectorError, ImageInput, open_input
from labelsift.detectors.local import Box, FloatArray, decode, nms, session_options
from labelsift.detectors.providers import session_providers
from labelsift.detectors.taxonomy import ALIASES, CATEGORIES, PARENTS, Taxonomy, coco_label
from labelsift.errors import UsageError
from labelsift.models import DetectorInfo, Instance, Label

Layout = Literal["yolov8", "yolov5", "rtdetr", "end2end"]
DEFAULT_SIZE = 640
PAD_VALUE = 114
MAX_CLASSES_BYTES = 1 << 20


@dataclass(frozen=True)
class ModelSpec:
    """What the file says about itself: input name and size, class names, output layout."""

    input_name: str
    height: int
    width: int
    names: tuple[str, ...]
    layout: Layout


@dataclass(frozen=True)
class Placement:
    """Where the image sits in the model input: scale and padding, in input pixels."""

    scale_x: float
    scale_y: float
    left: float
    top: float
    image_width: int
    image_height: int


def read_names(path: Path) -> tuple[str, ...]:
    """Class names, one a line (blank lines and a trailing newline ignored)."""
    try:
        if path.stat().st_size > MAX_CLASSES_BYTES:
            raise UsageError(f"--classes {path}: over 1 MiB; give one class name a line.")
        names = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--classes {path}: cannot read it ({exc}).") from exc
    if not names:
        raise UsageError(f"--classes {path}: no class names in it; give one a line.")
    return names


def metadata_names(metadata: dict[str, str]) -> tuple[str, ...] | None:
    """Ultralytics' `names` ("{0: 'person', 1: 'bicycle'}") as a tuple in class order."""
    text = metadata.get("names")
    if not text:
        return None
    try:
        parsed = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        try:
            parsed = json.loads(text)
        except ValueError:
            return None
    if isinstance(parsed, dict):
        try:
            ordered = sorted((int(key), str(value)) for key, value in parsed.items())
        except (TypeError, ValueError):
            return None
        if [key for key, _ in ordered] != list(range(len(ordered))):
            return None
        return tuple(value for _, value in ordered)
    if isinstance(parsed, list | tuple):
        return tuple(str(value) for value in parsed)
    return None


def _input_size(shape: Sequence[Any], metadata: dict[str, str]) -> tuple[int, int]:
    height, width = (shape[2], shape[3]) if len(shape) == 4 else (None, None)
    if isinstance(height, int) and isinstance(width, int) and height > 0 and width > 0:
        return height, width
    try:
        size = ast.literal_eval(metadata.get("imgsz", ""))
    except (ValueError, SyntaxError):
        size = None
    if isinstance(size, list | tuple) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size):
        return int(size[0]), int(size[1])
    if isinstance(size, int) and size > 0:
        return size, size
    return DEFAULT_SIZE, DEFAULT_SIZE


def detect_layout(shape: Sequence[Any], classes: int | None, description: str = "") -> tuple[Layout, int]:
    """The output layout and class count of a `[1, A, B]` output (see the module's table)."""
    if len(shape) != 3 or not all(isinstance(v, int) for v in shape[1:]):
        raise UsageError(f"the model's first output has shape {list(shape)}; expected [1, A, B].")
    rows, columns = int(shape[1]), int(shape[2])
    detr = "detr" in description.lower()
    if classes is not None:
        if columns == 6 and not (detr and classes == 2):
            return "end2end", classes
        if rows == 4 + classes and columns != 4 + classes:
            return "yolov8", classes
        if columns == 5 + classes and not (detr and columns == 4 + classes):
            return "yolov5", classes
        if columns == 4 + classes:
            return "rtdetr", classes
        raise UsageError(
            f"the model's output {list(shape)} matches none of the known layouts for {classes} classes "
            "([1, 4+nc, N] YOLOv8/11, [1, N, 5+nc] YOLOv5, [1, N, 4+nc] RT-DETR, [1, N, 6] with NMS); "
            "check --classes."
        )
    if rows > 4 and columns > rows:
        return "yolov8", rows - 4
    raise UsageError(
        f"the model's output {list(shape)} does not say how many classes it has and the file has no "
        "`names` metadata: give --classes FILE (one name a line, in class order)."
    )


def letterbox(image: Image.Image, height: int, width: int) -> tuple[FloatArray, Placement]:
    """(1, 3, H, W) RGB 0-1, the image scaled to fit and centred on grey, as Ultralytics does."""
    scale = min(height / image.height, width / image.width)
    new_width, new_height = round(image.width * scale), round(image.height * scale)
    left, top = round((width - new_width) / 2 - 0.1), round((height - new_height) / 2 - 0.1)
    canvas = Image.new("RGB", (width, height), (PAD_VALUE, PAD_VALUE, PAD_VALUE))
    canvas.paste(image.resize((new_width, new_height), Image.Resampling.BILINEAR), (left, top))
    placement = Placement(
        new_width / image.width, new_height / image.height, left, top, image.width, image.height
    )
    return _planar(canvas), placement


def squashed(image: Image.Image, height: int, width: int) -> tuple[FloatArray, Placement]:
    """(1, 3, H, W) RGB 0-1, the image stretched to the input (RT-DETR's preprocessing)."""
    resized = image.resize((width, height), Image.Resampling.BILINEAR)
    placement = Placement(width / image.width, height / image.height, 0.0, 0.0, image.width, image.height)
    return _planar(resized), placement


def _planar(image: Image.Image) -> FloatArray:
    pixels = np.asarray(image, dtype=np.float32) / np.float32(255.0)
    return np.ascontiguousarray(pixels.transpose(2, 0, 1)[None])


def _rows(output: FloatArray, layout: Layout) -> FloatArray:
    rows = output[0]
    return np.ascontiguousarray(rows.T) if layout == "yolov8" else rows


def _candidates(
    rows: FloatArray, layout: Layout, threshold: float
) -> tuple[FloatArray, FloatArray, npt.NDArray[np.intp]]:
    """(corners x1y1x2y2 in the output's units, scores, class ids) of the rows above `threshold`."""
    if layout == "end2end":
        keep = rows[:, 4] > threshold
        return rows[keep, :4], rows[keep, 4], rows[keep, 5].astype(np.intp)
    scores = rows[:, 5:] * rows[:, 4:5] if layout == "yolov5" else rows[:, 4:]
    anchors, classes = np.nonzero(scores > threshold)
    centre = rows[anchors, :4]
    corners = np.concatenate([centre[:, :2] - centre[:, 2:4] / 2, centre[:, :2] + centre[:, 2:4] / 2], 1)
    return corners, scores[anchors, classes], classes


def output_boxes(
    output: FloatArray,
    spec: ModelSpec,
    placement: Placement,
    threshold: float,
    iou_threshold: float = 0.45,
    max_boxes: int = 300,
) -> list[Box]:
    """Boxes as ratios of the image, from a model output (NMS for the YOLO layouts)."""
    corners, scores, classes = _candidates(
        _rows(output.astype(np.float32), spec.layout), spec.layout, threshold
    )
    if spec.layout == "rtdetr":
        corners = corners * np.array([spec.width, spec.height, spec.width, spec.height], dtype=np.float32)
    valid = (classes >= 0) & (classes < len(spec.names)) & np.isfinite(corners).all(1) & np.isfinite(scores)
    corners, scores, classes = corners[valid], scores[valid], classes[valid]
    offset = np.array([placement.left, placement.top] * 2, dtype=np.float32)
    scale = np.array(
        [placement.scale_x * placement.image_width, placement.scale_y * placement.image_height] * 2,
        dtype=np.float32,
    )
    ratios = np.clip((corners - offset) / scale, 0.0, 1.0)
    kept: list[Box] = []
    for class_id in np.unique(classes):
        members = np.flatnonzero(classes == class_id)
        chosen = (
            range(len(members))
            if spec.layout in ("rtdetr", "end2end")
            else nms(ratios[members], scores[members], iou_threshold)
        )
        for index in chosen:
            x1, y1, x2, y2 = (float(value) for value in ratios[members[index]])
            if x2 > x1 and y2 > y1:
                kept.append(Box(x1, y1, x2, y2, float(scores[members[index]]), int(class_id)))
    kept.sort(key=lambda box: -box.score)
    return kept[:max_boxes]


def load_taxonomy(path: Path | None) -> Taxonomy:
    """The built-in taxonomy, with a user's `{"name": ["Parent", ...]}` file taking precedence."""
    if path is None:
        return Taxonomy()
    try:
        if path.stat().st_size > MAX_CLASSES_BYTES * 16:
            raise UsageError(f"--taxonomy {path}: over 16 MiB.")
        parents = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"--taxonomy {path}: cannot read it as JSON ({exc}).") from exc
    if not isinstance(parents, dict) or not all(
        isinstance(value, list) and all(isinstance(item, str) for item in value) for value in parents.values()
    ):
        raise UsageError(f'--taxonomy {path}: give an object of name -> parents, e.g. {{"Robin": ["Bird"]}}.')
    return Taxonomy({**PARENTS, **parents}, CATEGORIES, ALIASES)


class OnnxDetector:
    """Labels and boxes from a user's ONNX detector, shaped like every other detector's."""

    def __init__(
        self,
        path: Path,
        *,
        classes_file: Path | None = None,
        taxonomy_file: Path | None = None,
        providers: Sequence[str] | None = None,
        score_threshold: float | None = None,
        intra_op_threads: int = 1,
        max_concurrent_runs: int | None = None,
    ) -> None:
        self.path = path
        self.score_threshold = 0.25 if score_threshold is None else score_threshold
        if not 0.0 < self.score_threshold < 1.0:
            raise UsageError("the ONNX detector's score threshold is a probability in (0, 1).")
        self.session = _open_session(path, intra_op_threads, session_providers(providers))
        self.spec = _read_spec(self.session, read_names(classes_file) if classes_file else None)
        self.taxonomy = load_taxonomy(taxonomy_file)
        self.label_names = tuple(coco_label(name) for name in self.spec.names)
        self._runs = threading.BoundedSemaphore(max_concurrent_runs or os.cpu_count() or 1)

    @property
    def info(self) -> DetectorInfo:
        return DetectorInfo(name="onnx", model_version=f"{self.path.name}:{self.spec.layout}")

    @property
    def billable(self) -> bool:
        return False

    def detect(self, image: ImageInput) -> Detection:
        spec = self.spec
        try:
            with open_input(image) as source:
                pixels = decode(source, min(spec.height, spec.width), image.uri)
        except OSError as exc:
            raise DetectorError("ReadError", f"could not read {image.uri}: {exc}") from exc
        prepare = squashed if spec.layout == "rtdetr" else letterbox
        tensor, placement = prepare(pixels, spec.height, spec.width)
        with self._runs:
            try:
                output = self.session.run(None, {spec.input_name: tensor})[0]
            except Exception as exc:  # onnxruntime's own error types: the model, not this image
                raise DetectorError(
                    "ModelFailed", f"{self.path} failed on {image.uri}: {exc}", fatal=True
                ) from exc
        boxes = output_boxes(np.asarray(output), spec, placement, self.score_threshold)
        return Detection(labels=self.labels(boxes), model_version=self.info.model_version)

    def labels(self, boxes: Sequence[Box]) -> list[Label]:
        confidences: dict[str, float] = {}
        instances: dict[str, list[Instance]] = {}
        for box in boxes:
            name = self.label_names[box.class_index]
            confidence = round(100.0 * min(box.score, 1.0), 3)
            confidences[name] = max(confidences.get(name, 0.0), confidence)
            left, top, right, bottom = (round(value, 6) for value in (box.x1, box.y1, box.x2, box.y2))
            instances.setdefault(name, []).append(
                Instance(left=left, top=top, width=right - left, height=bottom - top, confidence=confidence)
            )
        return self.taxonomy.labels(confidences, instances)


def _open_session(path: Path, intra_op_threads: int, providers: list[str]) -> Any:
    if not path.is_file():
        raise UsageError(f"--detector onnx:{path}: no such file; give the path of an exported .onnx model.")
    try:
        return ort.InferenceSession(str(path), session_options(intra_op_threads), providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types for a bad file
        raise UsageError(f"--detector onnx:{path}: onnxruntime cannot load it ({exc}).") from exc


def _read_spec(session: Any, names: tuple[str, ...] | None) -> ModelSpec:
    inputs = session.get_inputs()
    if len(inputs) != 1 or len(inputs[0].shape) != 4 or inputs[0].type != "tensor(float)":
        raise UsageError(
            f"the model takes {[(i.name, i.type, i.shape) for i in inputs]}; expected one float image "
            "input [1, 3, H, W] (export with Ultralytics' defaults, not half or int8 inputs)."
        )
    meta = session.get_modelmeta()
    metadata = dict(meta.custom_metadata_map or {})
    names = names or metadata_names(metadata)
    height, width = _input_size(inputs[0].shape, metadata)
    layout, classes = detect_layout(
        session.get_outputs()[0].shape, len(names) if names else None, metadata.get("description", "")
    )
    if names is None:
        names = tuple(f"class {index}" for index in range(classes))
    return ModelSpec(inputs[0].name, height, width, names, layout)

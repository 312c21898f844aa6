"""The offline detector: NanoDet-m (80 COCO classes, boxes) + EfficientNet-Lite0 (1000 ImageNet classes).

Both models ship as ONNX files in `labelsift/detectors/weights/` (see its NOTICE and
`tools/build_models.py`); nothing is downloaded and nothing here opens a socket.

One image:
1. Open the object as a file (never whole in memory) and check the pixel budget from its header
   (`labelsift.imagelimits`: over it, `ImageTooLarge`, nothing decoded). Decode with Pillow (a
   JPEG at a reduced DCT scale, never below 416 px a side; any other large image reduced by a
   whole factor right after), apply the EXIF orientation so boxes are ratios of the *displayed*
   image, convert any mode (CMYK, 16-bit, palette, alpha over white) to 8-bit RGB.
2. NanoDet: squash-resize to 416×416, BGR, mean/std normalisation; decode the three strides'
   distance distributions (11 bins, anchor centres at +0.5 cell), per-class NMS (IoU 0.5).
   A label's confidence is its best instance's score × 100.
3. EfficientNet-Lite0 on the same pixels squashed to 224×224, (x − 127) / 128. The softmax is
   summed over each taxonomy node's classes (P(Cat) = P(tabby) + P(tiger cat) + …); the `top_k`
   best class names and every node at or above `classifier_threshold` become labels without
   instances.
4. Both are merged through `Taxonomy.labels`: a name seen by both keeps the higher confidence
   and every ancestor is a label too, as Rekognition returns them.

Threads: the scan calls `detect` from many threads. Each model has one `InferenceSession`
shared by all of them (`run` is thread-safe and releases the GIL), created on first use.
Decoding and resizing run outside a semaphore that admits `max_concurrent_runs` inferences at
once (default: the CPU count), so one thread's decode overlaps another's inference.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from PIL import Image, ImageOps, UnidentifiedImageError

from labelsift.detectors.base import Detection, DetectorError, ImageInput, open_input
from labelsift.detectors.providers import session_providers
from labelsift.detectors.taxonomy import Taxonomy, coco_label, imagenet_family, imagenet_label
from labelsift.imagelimits import ImageLimitError, decoded
from labelsift.models import DetectorInfo, Instance, Label

NANODET_SIZE = 416
NANODET_STRIDES = (8, 16, 32)
NANODET_BINS = 11
NANODET_MEAN = np.array([103.53, 116.28, 123.675], dtype=np.float32)  # BGR
NANODET_STD = np.array([57.375, 57.12, 58.395], dtype=np.float32)
CLASSIFIER_SIZE = 224
CLASSIFIER_SCALE = np.full(3, 1.0 / 128.0, dtype=np.float32)
CLASSIFIER_OFFSET = np.full(3, -127.0 / 128.0, dtype=np.float32)
MODEL_VERSION = "nanodet-m-416+efficientnet-lite0"

FloatArray = npt.NDArray[np.float32]


def session_options(intra_op_threads: int) -> ort.SessionOptions:
    """Sessions shared by the scan's threads: sequential, no spinning, fully optimised."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def weights_dir() -> Path:
    return Path(str(resources.files("labelsift.detectors") / "weights"))


@dataclass(frozen=True)
class Box:
    """A detection in ratios of the image: corners, class index and score (0-1)."""

    x1: float
    y1: float
    x2: float
    y2: float
    score: float
    class_index: int


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        pixels = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") else max(float(pixels.max()), 1.0)
        if image.mode == "F":
            top = 1.0 if pixels.max() <= 1.0 else 255.0
        gray = np.clip(pixels * (255.0 / top), 0, 255).astype(np.uint8)
        return Image.fromarray(gray, "L").convert("RGB")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        image.mode == "P" and "transparency" in image.info
    ):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


_REDUCIBLE = frozenset({"L", "LA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "I", "F"})


def _shrink(image: Image.Image, min_side: int) -> Image.Image:
    """Reduce by a whole factor that keeps `min_side`, so mode conversions work on few pixels."""
    factor = min(image.size) // min_side
    if factor < 2:
        return image
    if image.mode.startswith("I;16"):
        image = image.convert("I").point(lambda value: value / 256).convert("L")
    elif image.mode not in _REDUCIBLE:
        has_alpha = image.mode in ("PA", "La", "RGBa") or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
    return image.reduce(factor)


def decode(source: bytes | IO[bytes], min_side: int = NANODET_SIZE, uri: str = "the image") -> Image.Image:
    """Displayed-frame RGB pixels of an encoded image, decoded within the pixel budget.

    The budget (`labelsift.imagelimits`) is checked from the header before anything is decoded; a
    JPEG is decoded at a reduced DCT scale and any large image is reduced by a whole factor right
    after decoding, never below `min_side`.
    """
    try:
        with decoded(source, uri, (min_side, min_side)) as image:
            ImageOps.exif_transpose(image, in_place=True)
            return _to_rgb(_shrink(image, min_side))
    except ImageLimitError as exc:
        raise DetectorError(exc.code, exc.message) from exc
    except UnidentifiedImageError as exc:
        raise DetectorError("CorruptImage", f"{uri}: not an image Pillow can read: {exc}") from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise DetectorError("CorruptImage", f"{uri}: the image could not be decoded: {exc}") from exc


def _planar(
    pixels: npt.NDArray[np.uint8], channels: tuple[int, ...], scale: FloatArray, offset: FloatArray
) -> FloatArray:
    """(1, 3, H, W) float32 with channel c = pixels[..., channels[c]] * scale[c] + offset[c]."""
    planes = np.empty((1, 3, *pixels.shape[:2]), dtype=np.float32)
    for plane, channel in enumerate(channels):
        np.multiply(pixels[:, :, channel], scale[plane], out=planes[0, plane], dtype=np.float32)
        planes[0, plane] += offset[plane]
    return planes


def squash(image: Image.Image, side: int) -> Image.Image:
    if image.size == (side, side):
        return image
    return image.resize((side, side), Image.Resampling.BILINEAR)


def nanodet_input(image: Image.Image) -> FloatArray:
    """(1, 3, 416, 416) float32: squashed, BGR, normalised."""
    pixels = np.asarray(squash(image, NANODET_SIZE))
    return _planar(pixels, (2, 1, 0), 1.0 / NANODET_STD, -NANODET_MEAN / NANODET_STD)


def classifier_input(image: Image.Image) -> FloatArray:
    """(1, 3, 224, 224) float32: squashed, RGB, (x − 127) / 128 as EfficientNet-Lite was trained."""
    pixels = np.asarray(squash(image, CLASSIFIER_SIZE))
    return _planar(pixels, (0, 1, 2), CLASSIFIER_SCALE, CLASSIFIER_OFFSET)


def _softmax(values: FloatArray, axis: int = -1) -> FloatArray:
    shifted = np.exp(values - values.max(axis=axis, keepdims=True))
    result: FloatArray = shifted / shifted.sum(axis=axis, keepdims=True)
    return result


def nanodet_boxes(
    outputs: dict[str, FloatArray], score_threshold: float, iou_threshold: float = 0.5, max_boxes: int = 100
) -> list[Box]:
    """Decode NanoDet's per-stride class scores and distance distributions into boxes, then NMS."""
    corners: list[FloatArray] = []
    scores: list[FloatArray] = []
    classes: list[npt.NDArray[np.intp]] = []
    for stride in NANODET_STRIDES:
        cls = outputs[f"cls_{stride}"][0]
        anchors, class_ids = np.nonzero(cls > score_threshold)
        if anchors.size == 0:
            continue
        cells = NANODET_SIZE // stride
        reg = outputs[f"reg_{stride}"][0][anchors].reshape(-1, 4, NANODET_BINS)
        distances = (_softmax(reg) @ np.arange(NANODET_BINS, dtype=np.float32)) * stride
        cx = (anchors % cells + 0.5) * stride
        cy = (anchors // cells + 0.5) * stride
        box = np.stack(
            [cx - distances[:, 0], cy - distances[:, 1], cx + distances[:, 2], cy + distances[:, 3]], axis=1
        )
        corners.append(np.clip(box / NANODET_SIZE, 0.0, 1.0).astype(np.float32))
        scores.append(cls[anchors, class_ids])
        classes.append(class_ids)
    if not corners:
        return []
    all_boxes = np.concatenate(corners)
    all_scores = np.concatenate(scores)
    all_classes = np.concatenate(classes)
    kept: list[Box] = []
    for class_id in np.unique(all_classes):
        members = np.flatnonzero(all_classes == class_id)
        for index in nms(all_boxes[members], all_scores[members], iou_threshold):
            x1, y1, x2, y2 = (float(v) for v in all_boxes[members[index]])
            kept.append(Box(x1, y1, x2, y2, float(all_scores[members[index]]), int(class_id)))
    kept.sort(key=lambda box: -box.score)
    return kept[:max_boxes]


def nms(boxes: FloatArray, scores: FloatArray, iou_threshold: float) -> list[int]:
    order = np.argsort(-scores)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep: list[int] = []
    while order.size:
        best = int(order[0])
        keep.append(best)
        rest = order[1:]
        width = np.clip(
            np.minimum(boxes[best, 2], boxes[rest, 2]) - np.maximum(boxes[best, 0], boxes[rest, 0]), 0, None
        )
        height = np.clip(
            np.minimum(boxes[best, 3], boxes[rest, 3]) - np.maximum(boxes[best, 1], boxes[rest, 1]), 0, None
        )
        overlap = width * height
        iou = overlap / np.maximum(areas[best] + areas[rest] - overlap, 1e-9)
        order = rest[iou <= iou_threshold]
    return keep


class LocalDetector:
    """Offline labels and boxes, shaped like Rekognition's, from the models shipped in the package."""

    def __init__(
        self,
        *,
        score_threshold: float = 0.3,
        classifier: bool = True,
        classifier_threshold: float = 0.2,
        top_k: int = 5,
        intra_op_threads: int = 1,
        max_concurrent_runs: int | None = None,
        weights: Path | None = None,
        providers: Sequence[str] | None = None,
    ) -> None:
        if not 0.0 < score_threshold < 1.0 or not 0.0 < classifier_threshold <= 1.0:
            raise ValueError("thresholds are probabilities in (0, 1)")
        self.score_threshold = score_threshold
        self.classifier_threshold = classifier_threshold
        self.top_k = top_k
        self.use_classifier = classifier
        self.intra_op_threads = intra_op_threads
        self._weights = weights or weights_dir()
        self.providers = session_providers(providers)
        self._runs = threading.BoundedSemaphore(max_concurrent_runs or os.cpu_count() or 1)
        self._load_lock = threading.Lock()
        self._models: _Models | None = None

    @property
    def info(self) -> DetectorInfo:
        version = MODEL_VERSION if self.use_classifier else MODEL_VERSION.split("+")[0]
        return DetectorInfo(name="local", model_version=version)

    @property
    def billable(self) -> bool:
        return False

    def models(self) -> _Models:
        """The loaded sessions and class tables (loaded once, on first use, by whichever thread asks)."""
        if self._models is None:
            with self._load_lock:
                if self._models is None:
                    self._models = _Models.load(
                        self._weights, self.intra_op_threads, self.use_classifier, self.providers
                    )
        return self._models

    def detect(self, image: ImageInput) -> Detection:
        try:
            with open_input(image) as source:
                pixels = squash(decode(source, NANODET_SIZE, image.uri), NANODET_SIZE)
        except OSError as exc:
            raise DetectorError("ReadError", f"could not read {image.uri}: {exc}") from exc
        detector_input = nanodet_input(pixels)
        classifier_pixels = classifier_input(pixels) if self.use_classifier else None
        return Detection(
            labels=self.labels(detector_input, classifier_pixels), model_version=self.info.model_version
        )

    def labels(self, detector_input: FloatArray, classifier_pixels: FloatArray | None) -> list[Label]:
        """Labels from preprocessed model inputs (see `nanodet_input`, `classifier_input`)."""
        models = self.models()
        with self._runs:
            outputs = models.nanodet.run(None, {"image": detector_input})
            logits = (
                models.classifier.run(None, {"image": classifier_pixels})[0]
                if models.classifier is not None and classifier_pixels is not None
                else None
            )
        named = dict(zip(models.nanodet_outputs, outputs, strict=True))
        confidences: dict[str, float] = {}
        instances: dict[str, list[Instance]] = {}
        for box in nanodet_boxes(named, self.score_threshold):
            name = models.coco_names[box.class_index]
            confidence = round(100.0 * box.score, 3)
            confidences[name] = max(confidences.get(name, 0.0), confidence)
            left, top, right, bottom = (round(value, 6) for value in (box.x1, box.y1, box.x2, box.y2))
            instances.setdefault(name, []).append(
                Instance(left=left, top=top, width=right - left, height=bottom - top, confidence=confidence)
            )
        if logits is not None:
            for name, confidence in models.classify(logits[0], self.classifier_threshold, self.top_k).items():
                confidences[name] = max(confidences.get(name, 0.0), confidence)
        return models.taxonomy.labels(confidences, instances)


@dataclass(frozen=True)
class _Models:
    nanodet: Any
    nanodet_outputs: tuple[str, ...]
    coco_names: tuple[str, ...]
    classifier: Any | None
    imagenet_names: tuple[str, ...]
    node_names: tuple[str, ...]
    member_nodes: npt.NDArray[
        np.intp
    ]  # with member_classes: (node row, class index) pairs, class at or below node
    member_classes: npt.NDArray[np.intp]
    node_rows: dict[str, int]
    leaves: frozenset[str]
    taxonomy: Taxonomy

    @classmethod
    def load(
        cls, weights: Path, intra_op_threads: int, use_classifier: bool, providers: list[str]
    ) -> _Models:
        options = session_options(intra_op_threads)
        try:
            nanodet = ort.InferenceSession(str(weights / "nanodet-m-416.onnx"), options, providers=providers)
            coco = (weights / "nanodet-classes.txt").read_text().splitlines()
        except (OSError, RuntimeError, ValueError) as exc:
            raise DetectorError(
                "ModelUnavailable", f"cannot load NanoDet from {weights}: {exc}", fatal=True
            ) from exc
        coco_names = tuple(coco_label(name) for name in coco)
        taxonomy = Taxonomy()
        classifier = None
        imagenet_names: tuple[str, ...] = ()
        node_names: tuple[str, ...] = ()
        member_nodes: list[int] = []
        member_classes: list[int] = []
        if use_classifier:
            try:
                classifier = ort.InferenceSession(
                    str(weights / "efficientnet-lite0.onnx"), options, providers=providers
                )
                synonyms = (weights / "imagenet-classes.txt").read_text().splitlines()
            except (OSError, RuntimeError, ValueError) as exc:
                raise DetectorError(
                    "ModelUnavailable", f"cannot load EfficientNet-Lite0 from {weights}: {exc}", fatal=True
                ) from exc
            labelled = [imagenet_label(index, line) for index, line in enumerate(synonyms)]
            imagenet_names = tuple(name for name, _ in labelled)
            parents: dict[str, tuple[str, ...]] = {}
            aliases: dict[str, tuple[str, ...]] = {}
            for index, (name, synonyms_of) in enumerate(labelled):
                family = imagenet_family(index)
                if family is not None and family != name:
                    parents.setdefault(name, (family,))
                aliases[name] = tuple(dict.fromkeys(aliases.get(name, ()) + synonyms_of))
            taxonomy = taxonomy.extended(parents, aliases)
            nodes: dict[str, list[int]] = {}
            for index, name in enumerate(imagenet_names):
                for node in (name, *taxonomy.ancestors(name)):
                    nodes.setdefault(node, []).append(index)
            node_names = tuple(nodes)
            for row, indices in enumerate(nodes.values()):
                member_nodes.extend([row] * len(indices))
                member_classes.extend(indices)
        return cls(
            nanodet=nanodet,
            nanodet_outputs=tuple(output.name for output in nanodet.get_outputs()),
            coco_names=coco_names,
            classifier=classifier,
            imagenet_names=imagenet_names,
            node_names=node_names,
            member_nodes=np.array(member_nodes, dtype=np.intp),
            member_classes=np.array(member_classes, dtype=np.intp),
            node_rows={name: row for row, name in enumerate(node_names)},
            leaves=frozenset(imagenet_names),
            taxonomy=taxonomy,
        )

    def classify(self, logits: FloatArray, threshold: float, top_k: int) -> dict[str, float]:
        """Confidences (0-100) of the best class names and of every taxonomy node above the threshold."""
        probabilities = _softmax(logits.astype(np.float32))
        summed = np.bincount(
            self.member_nodes, weights=probabilities[self.member_classes], minlength=len(self.node_names)
        )
        found: dict[str, float] = {}
        for index in np.argsort(-probabilities)[:top_k]:
            name = self.imagenet_names[int(index)]
            row = self.node_rows[name]
            if summed[row] >= threshold:
                found[name] = 100.0 * float(summed[row])
        for node_row in np.flatnonzero(summed >= threshold):
            name = self.node_names[int(node_row)]
            if name not in self.leaves:
                found[name] = 100.0 * float(summed[node_row])
        return found

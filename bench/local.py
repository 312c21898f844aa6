"""End-to-end speed of the offline detector against its models alone.

    python bench/local.py [--workers 2 4] [--generated 40] [--rounds 2]

For each image set (the demo photos; JPEGs of 1920×1080 made from them) and each worker count,
it measures in the same run:
- end to end: `LocalDetector.detect` on the encoded bytes from a thread pool (decode, EXIF,
  resize, both models, NMS, taxonomy), images/s;
- model only: the same sessions' `run` on tensors preprocessed beforehand, from a pool of the
  same size, images/s;
and prints their ratio (target ≥ 0.8: preprocessing must hide behind inference).

The last rows do the same for `--detector onnx:` on a YOLOv8-shaped model of another size (320×320
input, random weights, built by `bench/onnx_yolo.py`): end to end is `OnnxDetector.detect`
(decode, letterbox, the model, NMS, taxonomy), model only its session's `run` on letterboxed tensors.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path

import numpy as np
from onnx_yolo import build
from PIL import Image

from labelsift.detectors.base import ImageInput
from labelsift.detectors.local import (
    NANODET_SIZE,
    LocalDetector,
    classifier_input,
    decode,
    nanodet_input,
    squash,
)
from labelsift.detectors.onnx_file import OnnxDetector, letterbox


def demo_photos() -> list[bytes]:
    folder = Path(str(resources.files("labelsift") / "demo" / "photos"))
    return [path.read_bytes() for path in sorted(folder.glob("*.jpg"))]


def full_hd(photos: Sequence[bytes], count: int) -> list[bytes]:
    """`count` 1920×1080 JPEGs (quality 90) made from the photos, each with its own noise."""
    rng = np.random.default_rng(7)
    made: list[bytes] = []
    for index in range(count):
        with Image.open(io.BytesIO(photos[index % len(photos)])) as photo:
            big = photo.convert("RGB").resize((1920, 1080), Image.Resampling.BICUBIC)
        noise = rng.integers(-6, 7, size=(1080, 1920, 3), dtype=np.int16)
        pixels = np.clip(np.asarray(big, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
        made.append(buffer.getvalue())
    return made


def rates(works: Sequence[Callable[[int], object]], count: int, workers: int, rounds: int) -> list[float]:
    """Best images/s of each work over `rounds` passes of `count` calls from `workers` threads.

    The works take turns within each round, so a change in the machine's load hits all of them.
    """
    best = [0.0] * len(works)
    with ThreadPoolExecutor(workers) as pool:
        for work in works:
            list(pool.map(work, range(min(count, workers * 2))))  # warm up threads and sessions
        for _ in range(rounds):
            for position, work in enumerate(works):
                start = time.perf_counter()
                list(pool.map(work, range(count)))
                best[position] = max(best[position], count / (time.perf_counter() - start))
    return best


def measure(
    detector: LocalDetector, images: Sequence[bytes], workers: int, rounds: int
) -> tuple[float, float]:
    inputs = [ImageInput(uri=f"bench-{i}.jpg", read=lambda data=data: data) for i, data in enumerate(images)]
    models = detector.models()
    squashed = [squash(decode(data), NANODET_SIZE) for data in images]
    tensors = [(nanodet_input(image), classifier_input(image)) for image in squashed]

    def end_to_end(index: int) -> object:
        return detector.detect(inputs[index % len(inputs)])

    def model_only(index: int) -> object:
        boxes_in, classes_in = tensors[index % len(tensors)]
        models.nanodet.run(None, {"image": boxes_in})
        assert models.classifier is not None
        return models.classifier.run(None, {"image": classes_in})

    count = max(len(images), 4 * workers)
    full, model = rates([end_to_end, model_only], count, workers, rounds)
    return full, model


def measure_onnx(
    detector: OnnxDetector, images: Sequence[bytes], workers: int, rounds: int
) -> tuple[float, float]:
    inputs = [ImageInput(uri=f"bench-{i}.jpg", read=lambda data=data: data) for i, data in enumerate(images)]
    spec = detector.spec
    tensors = [letterbox(decode(data, spec.height), spec.height, spec.width)[0] for data in images]

    def end_to_end(index: int) -> object:
        return detector.detect(inputs[index % len(inputs)])

    def model_only(index: int) -> object:
        return detector.session.run(None, {spec.input_name: tensors[index % len(tensors)]})

    count = max(len(images), 4 * workers)
    full, model = rates([end_to_end, model_only], count, workers, rounds)
    return full, model


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--generated", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--intra-op-threads", type=int, default=1)
    args = parser.parse_args()

    photos = demo_photos()
    sets = {"demo photos": photos, f"{args.generated}× 1920×1080 JPEG": full_hd(photos, args.generated)}
    detector = LocalDetector(intra_op_threads=args.intra_op_threads)
    start = time.perf_counter()
    detector.models()
    print(f"sessions loaded in {time.perf_counter() - start:.2f} s; model {detector.info.model_version}")
    print(f"{'images':<26}{'workers':>8}{'end-to-end/s':>14}{'model-only/s':>14}{'ratio':>8}")
    for name, images in sets.items():
        for workers in args.workers:
            full, model = measure(detector, images, workers, args.rounds)
            print(f"{name:<26}{workers:>8}{full:>14.1f}{model:>14.1f}{full / model:>8.2f}")
    with tempfile.TemporaryDirectory() as folder:
        onnx_detector = OnnxDetector(build(Path(folder) / "yolo-shaped-320.onnx"))
        print(f"onnx: {onnx_detector.info.model_version}, input {onnx_detector.spec.width}² letterboxed")
        for name, images in sets.items():
            for workers in args.workers:
                full, model = measure_onnx(onnx_detector, images, workers, args.rounds)
                label = f"onnx 320, {name}"
                print(f"{label:<26}{workers:>8}{full:>14.1f}{model:>14.1f}{full / model:>8.2f}")


if __name__ == "__main__":
    main()

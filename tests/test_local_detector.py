"""The offline detector on the demo photos, whose content is known (see demo/photos/SOURCES.md)."""

from __future__ import annotations

import io
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from labelsift.detectors.base import DetectorError, ImageInput
from labelsift.detectors.local import LocalDetector, decode
from labelsift.detectors.taxonomy import Taxonomy, imagenet_label, title
from labelsift.models import Instance, Label

PHOTOS = Path(str(resources.files("labelsift") / "demo" / "photos"))

# Boxes drawn by hand on the demo copies (pixel corners x1, y1, x2, y2 in the displayed photo),
# read off a 50-px grid overlaid on each image, independently of what the model returns.
HAND_BOXES: dict[tuple[str, str], tuple[float, float, float, float]] = {
    ("dog.jpg", "Bicycle"): (105, 108, 472, 348),  # 640×480: front wheel edge to rear wheel, saddle to tyres
    ("dog.jpg", "Dog"): (110, 186, 258, 448),  # ears to tail, left flank to front paw
    ("giraffe.jpg", "Giraffe"): (168, 33, 448, 440),  # 500×500: ossicones/nose to hooves
    ("giraffe.jpg", "Zebra"): (247, 205, 420, 428),  # rump behind the giraffe's leg to muzzle
}

# (photo, label, lowest confidence accepted): what each photo shows, with the confidence the
# shipped models gave when this test was written minus a margin (measured: dog 92, bicycle 74,
# giraffe 83, zebra 67, bird 73, person 73, cat 96, espresso 88, kite 80, person on kite.jpg 75).
EXPECTED = [
    ("dog.jpg", "Dog", 80.0),
    ("dog.jpg", "Bicycle", 60.0),
    ("giraffe.jpg", "Giraffe", 70.0),
    ("giraffe.jpg", "Zebra", 55.0),
    ("eagle.jpg", "Bird", 60.0),
    ("astronaut.jpg", "Person", 60.0),
    ("chelsea.jpg", "Cat", 85.0),
    ("coffee.jpg", "Espresso", 75.0),
    ("kite.jpg", "Kite", 65.0),
    ("kite.jpg", "Person", 60.0),
]


@pytest.fixture(scope="module")
def detector() -> LocalDetector:
    return LocalDetector()


def photo(name: str) -> ImageInput:
    path = PHOTOS / name
    return ImageInput(uri=str(path), read=path.read_bytes, format="JPEG")


def from_bytes(data: bytes, uri: str = "memory.jpg") -> ImageInput:
    return ImageInput(uri=uri, read=lambda: data)


def by_name(labels: list[Label]) -> dict[str, Label]:
    return {label.name: label for label in labels}


def corners(instance: Instance, width: int, height: int) -> tuple[float, float, float, float]:
    return (
        instance.left * width,
        instance.top * height,
        (instance.left + instance.width) * width,
        (instance.top + instance.height) * height,
    )


def iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    overlap = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - overlap
    return overlap / union


@pytest.fixture(scope="module")
def results(detector: LocalDetector) -> dict[str, dict[str, Label]]:
    names = sorted({name for name, _, _ in EXPECTED} | {name for name, _ in HAND_BOXES})
    return {name: by_name(detector.detect(photo(name)).labels) for name in names}


def test_contract(detector: LocalDetector) -> None:
    assert detector.info.name == "local"
    assert detector.info.model_version == "nanodet-m-416+efficientnet-lite0"
    assert detector.billable is False


@pytest.mark.parametrize(("name", "label", "lowest"), EXPECTED)
def test_expected_labels(results: dict[str, dict[str, Label]], name: str, label: str, lowest: float) -> None:
    labels = results[name]
    assert label in labels, sorted(labels)
    assert labels[label].confidence >= lowest


@pytest.mark.parametrize(("name", "label"), sorted(HAND_BOXES))
def test_boxes_overlap_hand_drawn_boxes(results: dict[str, dict[str, Label]], name: str, label: str) -> None:
    with Image.open(PHOTOS / name) as image:
        width, height = image.size
    best = max(
        iou(corners(instance, width, height), HAND_BOXES[name, label])
        for instance in results[name][label].instances
    )
    assert best >= 0.5


def test_labels_look_like_rekognition(results: dict[str, dict[str, Label]]) -> None:
    dog = results["dog.jpg"]
    assert dog["Dog"].parents == ["Canine", "Pet", "Mammal", "Animal"]
    assert dog["Dog"].categories == ["Animals and Pets"]
    assert dog["Bicycle"].parents == ["Vehicle", "Transportation"]
    assert dog["Bicycle"].aliases == ["Bike"]
    for ancestor in ("Canine", "Pet", "Mammal", "Animal", "Vehicle", "Transportation"):
        assert ancestor in dog, ancestor
        assert dog[ancestor].instances == []
    assert dog["Animal"].confidence >= dog["Dog"].confidence
    for labels in results.values():
        confidences = [label.confidence for label in labels.values()]
        assert confidences == sorted(confidences, reverse=True)
        for label in labels.values():
            assert 0.0 <= label.confidence <= 100.0
            assert label.name == title(label.name)
            for parent in label.parents:
                assert labels[parent].confidence >= label.confidence
            for box in label.instances:
                assert 0.0 <= box.left <= box.left + box.width <= 1.0 + 1e-9
                assert 0.0 <= box.top <= box.top + box.height <= 1.0 + 1e-9
                assert box.confidence <= label.confidence


def test_fine_label_from_the_classifier(results: dict[str, dict[str, Label]]) -> None:
    eagle = results["eagle.jpg"]["Bald Eagle"]  # measured 30
    assert eagle.confidence >= 20.0
    assert eagle.parents == ["Bird", "Animal"]
    assert "American Eagle" in eagle.aliases
    assert eagle.instances == []
    espresso = results["coffee.jpg"]["Espresso"]
    assert espresso.parents == ["Coffee", "Beverage"]
    assert espresso.categories == ["Food and Beverage"]


def rotated_with_orientation(data: bytes, orientation: int) -> bytes:
    """The stored pixels a camera would write for the displayed image `data`, with the EXIF tag."""
    undo = {
        3: Image.Transpose.ROTATE_180,
        6: Image.Transpose.ROTATE_90,  # displayed = stored turned 90° clockwise
        8: Image.Transpose.ROTATE_270,
    }
    with Image.open(io.BytesIO(data)) as image:
        stored = image.transpose(undo[orientation])
        exif = Image.Exif()
        exif[0x0112] = orientation
        buffer = io.BytesIO()
        stored.save(buffer, "JPEG", quality=95, exif=exif)
    return buffer.getvalue()


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_gives_boxes_in_the_displayed_frame(
    detector: LocalDetector, orientation: int
) -> None:
    upright_bytes = (PHOTOS / "dog.jpg").read_bytes()
    rotated = rotated_with_orientation(upright_bytes, orientation)
    assert decode(rotated).size == decode(upright_bytes).size
    upright = by_name(detector.detect(from_bytes(upright_bytes)).labels)
    turned = by_name(detector.detect(from_bytes(rotated)).labels)
    for name in ("Dog", "Bicycle"):
        a = corners(upright[name].instances[0], 1, 1)
        b = corners(turned[name].instances[0], 1, 1)
        assert iou(a, b) >= 0.9, (name, a, b)


def encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def any_mode_inputs() -> Iterator[tuple[str, bytes]]:
    with Image.open(PHOTOS / "dog.jpg") as original:
        rgb = original.convert("RGB")
    yield "cmyk-jpeg", encoded(rgb.convert("CMYK"), "JPEG")
    yield "palette-png", encoded(rgb.quantize(256), "PNG")
    rgba = rgb.convert("RGBA")
    rgba.putalpha(200)
    yield "rgba-png", encoded(rgba, "PNG")
    gray16 = np.asarray(rgb.convert("L"), dtype=np.uint16) * 257
    yield "gray16-png", encoded(Image.fromarray(gray16), "PNG")
    yield "grayscale-webp", encoded(rgb.convert("L"), "WEBP")


@pytest.mark.parametrize(("kind", "data"), list(any_mode_inputs()), ids=lambda value: str(value)[:12])
def test_any_image_mode(detector: LocalDetector, kind: str, data: bytes) -> None:
    labels = by_name(detector.detect(from_bytes(data, kind)).labels)
    assert "Bicycle" in labels, (kind, sorted(labels))


def test_unreadable_bytes_are_a_detector_error(detector: LocalDetector) -> None:
    with pytest.raises(DetectorError) as caught:
        detector.detect(from_bytes(b"not an image at all"))
    assert caught.value.code == "CorruptImage"
    assert not caught.value.fatal


def test_no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    attempts: list[object] = []

    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(args)
        raise AssertionError("the local detector tried to use the network")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    fresh = LocalDetector()  # sessions load during the first detect, under the patch
    labels = by_name(fresh.detect(photo("dog.jpg")).labels)
    assert "Dog" in labels
    assert attempts == []


def test_threads_share_sessions_and_agree(detector: LocalDetector) -> None:
    names = ["dog.jpg", "giraffe.jpg", "eagle.jpg", "coffee.jpg"] * 2
    sequential = [detector.detect(photo(name)).labels for name in names]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(lambda name: detector.detect(photo(name)).labels, names))
    assert parallel == sequential
    assert detector.models() is detector.models()


def test_taxonomy_names() -> None:
    assert imagenet_label(15, "robin, American robin, Turdus migratorius") == (
        "Robin",
        ("American Robin", "Turdus migratorius"),
    )
    assert imagenet_label(21, "kite") == ("Kite Bird", ("Kite",))
    assert title("CD player") == "CD Player"
    taxonomy = Taxonomy()
    assert taxonomy.ancestors("Dog") == ("Canine", "Pet", "Mammal", "Animal")
    assert taxonomy.categories("Car") == ("Vehicles and Automotive",)
    labels = by_name(taxonomy.labels({"Dog": 40.0, "Cat": 70.0}))
    assert labels["Pet"].confidence == 70.0
    assert labels["Canine"].confidence == 40.0

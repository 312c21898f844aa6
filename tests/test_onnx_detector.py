"""`--detector onnx:PATH`: every output layout of YOLO and RT-DETR exports decodes to the known boxes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from onnx_models import centre_form, constant_model, letterboxed
from PIL import Image, ImageOps
from typer.testing import CliRunner

from labelsift.cli import app
from labelsift.detectors.base import ImageInput
from labelsift.detectors.onnx_file import OnnxDetector
from labelsift.detectors.providers import session_providers
from labelsift.errors import UsageError
from labelsift.manifest import iter_records
from labelsift.models import Label

runner = CliRunner()
NAMES = ["person", "dog", "robin"]
SIDE = 640
DISPLAYED = (320, 240)  # width, height of the image as shown
# (ratios x1, y1, x2, y2 of the displayed image, score, class)
DOG = ((0.1, 0.1, 0.5, 0.5), 0.9, 1)
DOG_AGAIN = ((0.11, 0.1, 0.5, 0.5), 0.6, 1)  # overlaps DOG: NMS removes it in the YOLO layouts
PERSON = ((0.6, 0.2, 0.9, 0.95), 0.8, 0)
FAINT_ROBIN = ((0.3, 0.6, 0.4, 0.7), 0.1, 2)  # under the 0.25 score threshold
ROWS = [DOG, DOG_AGAIN, PERSON, FAINT_ROBIN]


def scores(score: float, class_id: int, count: int = len(NAMES)) -> list[float]:
    return [score if index == class_id else 0.0 for index in range(count)]


def yolov8_output() -> np.ndarray:
    rows = [centre_form(letterboxed(box, DISPLAYED, SIDE)) + scores(s, c) for box, s, c in ROWS]
    return np.array(rows, dtype=np.float32).T[None]  # [1, 4+nc, N]


def yolov5_output() -> np.ndarray:
    objectness = 0.95
    rows = [
        [*centre_form(letterboxed(box, DISPLAYED, SIDE)), objectness, *scores(s / objectness, c)]
        for box, s, c in ROWS
    ]
    return np.array(rows, dtype=np.float32)[None]  # [1, N, 5+nc]


def rtdetr_output() -> np.ndarray:
    rows = [centre_form(list(box)) + scores(s, c) for box, s, c in ROWS]  # squashed: 0-1 of the input
    return np.array(rows, dtype=np.float32)[None]  # [1, N, 4+nc]


def end2end_output() -> np.ndarray:
    rows = [[*letterboxed(box, DISPLAYED, SIDE), s, c] for box, s, c in ROWS]
    return np.array(rows, dtype=np.float32)[None]  # [1, N, 6]


LAYOUTS = {
    "yolov8": (yolov8_output, True),
    "yolov5": (yolov5_output, True),
    "rtdetr": (rtdetr_output, False),
    "end2end": (end2end_output, False),
}


def expected(nms: bool) -> dict[str, list[tuple[float, float, float, float, float]]]:
    kept = [row for row in ROWS if row[1] >= 0.25 and not (nms and row is DOG_AGAIN)]
    found: dict[str, list[tuple[float, float, float, float, float]]] = {}
    for box, score, class_id in kept:
        found.setdefault(NAMES[class_id].title(), []).append((*box, 100 * score))
    return found


def boxes_of(labels: list[Label]) -> dict[str, list[tuple[float, float, float, float, float]]]:
    return {
        label.name: sorted(
            ((i.left, i.top, i.left + i.width, i.top + i.height, i.confidence) for i in label.instances),
            key=lambda box: -box[4],
        )
        for label in labels
        if label.instances
    }


def photo(path: Path, *, orientation: int | None = None) -> ImageInput:
    shown = Image.new("RGB", DISPLAYED, (30, 120, 200))
    if orientation == 6:  # stored sideways: a viewer turns it 90° clockwise to show it
        stored = shown.transpose(Image.Transpose.ROTATE_90)
        exif = Image.Exif()
        exif[0x0112] = 6
        stored.save(path, exif=exif)
        with Image.open(path) as check:
            assert check.size == (240, 320)
            assert ImageOps.exif_transpose(check).size == DISPLAYED
    else:
        shown.save(path)
    return ImageInput(uri=str(path), read=path.read_bytes, open=lambda: path.open("rb"))


@pytest.mark.parametrize("orientation", [None, 6])
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_layout_decodes_to_the_known_boxes(
    tmp_path: Path, layout: str, orientation: int | None
) -> None:
    make, nms = LAYOUTS[layout]
    description = "Ultralytics RT-DETR-l" if layout == "rtdetr" else "Ultralytics YOLO11n"
    model = constant_model(tmp_path / f"{layout}.onnx", make(), names=NAMES, description=description)
    detector = OnnxDetector(model)
    assert detector.spec.layout == layout
    detection = detector.detect(photo(tmp_path / "p.jpg", orientation=orientation))
    got, want = boxes_of(detection.labels), expected(nms)
    assert sorted(got) == sorted(want)
    for name, boxes in want.items():
        assert np.allclose(np.array(got[name]), np.array(boxes), atol=2e-4), (name, got[name], boxes)
    by_name = {label.name: label for label in detection.labels}
    assert "Canine" in by_name["Dog"].parents  # the built-in taxonomy gives a COCO name its parents
    assert "Robin" not in by_name
    assert detection.model_version == f"{layout}.onnx:{layout}"


def test_class_names_from_a_file_and_a_users_taxonomy(tmp_path: Path) -> None:
    model = constant_model(tmp_path / "v5.onnx", yolov5_output())  # no names in the file
    with pytest.raises(UsageError, match="--classes"):
        OnnxDetector(model)
    classes = tmp_path / "classes.txt"
    classes.write_text("hiker\nspaniel\nrobin\n")
    taxonomy = tmp_path / "taxonomy.json"
    taxonomy.write_text(json.dumps({"Spaniel": ["Dog"], "Hiker": ["Person"]}))
    detector = OnnxDetector(model, classes_file=classes, taxonomy_file=taxonomy)
    labels = {label.name: label for label in detector.detect(photo(tmp_path / "p.png")).labels}
    assert set(labels) >= {"Spaniel", "Hiker", "Dog", "Person", "Canine"}
    assert labels["Spaniel"].parents[0] == "Dog" and labels["Spaniel"].instances
    assert not labels["Dog"].instances  # an ancestor is a label, its boxes stay with the leaf


def test_a_dynamic_input_takes_its_size_from_the_metadata(tmp_path: Path) -> None:
    model = constant_model(tmp_path / "d.onnx", yolov8_output(), names=NAMES, dynamic=True)
    detector = OnnxDetector(model)
    assert (detector.spec.height, detector.spec.width) == (SIDE, SIDE)
    assert sorted(boxes_of(detector.detect(photo(tmp_path / "p.jpg")).labels)) == ["Dog", "Person"]


def test_unusable_models_and_providers_are_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file"):
        OnnxDetector(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(UsageError, match="cannot load"):
        OnnxDetector(tmp_path / "junk.onnx")
    odd = constant_model(tmp_path / "odd.onnx", np.zeros((1, 9, 9), np.float32), names=NAMES)
    with pytest.raises(UsageError, match="none of the known layouts"):
        OnnxDetector(odd)
    with pytest.raises(UsageError, match="onnxruntime-gpu"):
        session_providers(["cuda"], available=["CPUExecutionProvider"])
    assert session_providers(["cuda"], available=["CUDAExecutionProvider", "CPUExecutionProvider"]) == [
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]
    assert session_providers(None) == ["CPUExecutionProvider"]


def test_hostile_models_never_crash_a_scan(tmp_path: Path) -> None:
    broken = yolov8_output()
    broken[0, :, 1] = np.nan  # a row of NaN (an export bug) must not become a record that cannot be written
    broken[0, 4:, 2] = np.inf
    detector = OnnxDetector(constant_model(tmp_path / "nan.onnx", broken, names=NAMES))
    labels = detector.detect(photo(tmp_path / "p.jpg")).labels
    assert sorted(boxes_of(labels)) == ["Dog"]
    from onnx import TensorProto

    quantised = constant_model(
        tmp_path / "u8.onnx", yolov8_output(), names=NAMES, input_type=TensorProto.UINT8
    )
    with pytest.raises(UsageError, match="expected one float image input"):
        OnnxDetector(quantised)


def test_scan_with_an_onnx_detector_from_the_command_line(tmp_path: Path) -> None:
    model = constant_model(tmp_path / "yolo11n.onnx", yolov8_output(), names=NAMES)
    folder = tmp_path / "photos"
    folder.mkdir()
    photo(folder / "a.jpg")
    photo(folder / "b.jpg", orientation=6)
    manifest = tmp_path / "m.jsonl"
    result = runner.invoke(app, ["scan", str(folder), "-o", str(manifest), "--detector", f"onnx:{model}",
                                 "--label", "Dog", "--workers", "2"])  # fmt: skip
    assert result.exit_code == 0, result.output
    records = list(iter_records(str(manifest)))
    assert len(records) == 2
    for record in records:
        assert record.detector is not None and record.detector.name == "onnx"
        assert (record.width, record.height) == DISPLAYED
        assert sorted(boxes_of(record.labels)) == ["Dog", "Person"]
    refused = runner.invoke(app, ["scan", str(folder), "-o", str(tmp_path / "x.jsonl"), "--detector",
                                  f"onnx:{model}", "--providers", "nosuch"])  # fmt: skip
    assert refused.exit_code == 2
    assert "nosuch" in refused.output


def test_an_unknown_detector_name_lists_the_installed_ones(tmp_path: Path) -> None:
    result = runner.invoke(app, ["scan", str(tmp_path), "-o", str(tmp_path / "m.jsonl"), "-d", "nosuch"])
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "no detector named 'nosuch'" in text
    assert "custom-labels, local, onnx, rekognition" in text
    missing = runner.invoke(app, ["scan", str(tmp_path), "-o", str(tmp_path / "m.jsonl"), "-d", "onnx"])
    assert missing.exit_code == 2
    assert "onnx:VALUE" in missing.output


def test_a_gpu_actor_asks_for_cuda_only_where_onnxruntime_has_it(caplog: pytest.LogCaptureFixture) -> None:
    from labelsift.detectors.providers import for_gpus

    with_cuda = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert for_gpus(1.0, (), with_cuda) == ("cuda",)
    assert for_gpus(0.0, (), with_cuda) == ()  # a CPU actor never asks for a GPU
    assert for_gpus(1.0, ("cpu",), with_cuda) == ("cpu",)  # --providers wins
    with caplog.at_level("WARNING"):
        assert for_gpus(0.5, (), ["CPUExecutionProvider"]) == ()
    assert "no CUDAExecutionProvider" in caplog.text and "onnxruntime-gpu" in caplog.text

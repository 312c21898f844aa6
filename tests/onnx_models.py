"""Small real ONNX detector files, built with onnx.helper, whose outputs are known in advance.

Each model takes `images` [1, 3, H, W] and answers a fixed output tensor (plus 0 × the input's
mean, so the graph really reads its input and onnxruntime checks its shape), in one of the
layouts Ultralytics and RT-DETR exports use. The tests put the boxes they expect into the
output in the model's own coordinates and check the detector brings them back.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def constant_model(
    path: Path,
    output: np.ndarray,
    *,
    names: list[str] | None = None,
    size: tuple[int, int] = (640, 640),
    description: str = "",
    dynamic: bool = False,
    input_type: int = TensorProto.FLOAT,
) -> Path:
    height, width = size
    value = numpy_helper.from_array(output.astype(np.float32), name="answer")
    zero = numpy_helper.from_array(np.array(0.0, dtype=np.float32), name="zero")
    nodes = [
        helper.make_node("Cast", ["images"], ["pixels"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["pixels"], ["mean"], keepdims=0),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
        helper.make_node("Add", ["answer", "nothing"], ["output0"]),
    ]
    input_shape: list[int | str] = ["batch", 3, "height", "width"] if dynamic else [1, 3, height, width]
    graph = helper.make_graph(
        nodes,
        "labelsift-test",
        [helper.make_tensor_value_info("images", input_type, input_shape)],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(output.shape))],
        initializer=[value, zero],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    metadata = {"description": description} if description else {}
    if names is not None:
        metadata["names"] = str(dict(enumerate(names)))
    if dynamic:
        metadata["imgsz"] = str([height, width])
    for key, text in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, text
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def letterboxed(box: tuple[float, float, float, float], image: tuple[int, int], side: int) -> list[float]:
    """A box given as ratios of a (width, height) image, in pixels of its `side`² letterbox."""
    width, height = image
    scale = min(side / width, side / height)
    pad_x = (side - round(width * scale)) / 2
    pad_y = (side - round(height * scale)) / 2
    x1, y1, x2, y2 = box
    return [x1 * width * scale + pad_x, y1 * height * scale + pad_y, x2 * width * scale + pad_x,
            y2 * height * scale + pad_y]  # fmt: skip


def centre_form(corners: list[float]) -> list[float]:
    x1, y1, x2, y2 = corners
    return [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]

"""A YOLOv8-shaped ONNX detector with random weights, for timing `--detector onnx:` (no download).

Three stride-2 3×3 convolutions (SiLU) bring a 320×320 image to a 40×40 grid of 64 channels; a
1×1 head gives 4 box values and 80 class scores per cell, flattened to the Ultralytics YOLOv8/11
output `[1, 84, 1600]` with COCO names in the metadata. Class scores pass a sigmoid with a bias of
-6, so a random image yields a handful of boxes, as a trained model does on an ordinary photo.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from labelsift.detectors.local import weights_dir

COCO = tuple((weights_dir() / "nanodet-classes.txt").read_text().splitlines())  # the 80 COCO names


def build(path: Path, side: int = 320, width: int = 64, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    weights, nodes, channels, name = [], [], 3, "images"
    for layer in range(3):
        w = numpy_helper.from_array(
            (rng.standard_normal((width, channels, 3, 3)) / np.sqrt(9 * channels)).astype(np.float32),
            f"w{layer}",
        )
        weights.append(w)
        nodes += [
            helper.make_node("Conv", [name, f"w{layer}"], [f"c{layer}"], strides=[2, 2], pads=[1, 1, 1, 1]),
            helper.make_node("Sigmoid", [f"c{layer}"], [f"s{layer}"]),
            helper.make_node("Mul", [f"c{layer}", f"s{layer}"], [f"a{layer}"]),
        ]
        channels, name = width, f"a{layer}"
    cells = (side // 8) ** 2
    head = numpy_helper.from_array((rng.standard_normal((84, width, 1, 1)) * 0.1).astype(np.float32), "head")
    bias = np.zeros(84, np.float32)
    bias[:4] = side / 4
    bias[4:] = -6.0
    weights += [
        head,
        numpy_helper.from_array(bias, "bias"),
        numpy_helper.from_array(np.array([1, 84, cells]), "shape"),
    ]
    nodes += [
        helper.make_node("Conv", [name, "head", "bias"], ["h"]),
        helper.make_node("Reshape", ["h", "shape"], ["flat"]),
        helper.make_node("Split", ["flat"], ["boxes", "logits"], axis=1, num_outputs=2),
        helper.make_node("Sigmoid", ["logits"], ["scores"]),
        helper.make_node("Concat", ["boxes", "scores"], ["output0"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "yolo-shaped",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, side, side])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 84, cells])],
        initializer=weights,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    entry = model.metadata_props.add()
    entry.key, entry.value = "names", str(dict(enumerate(COCO)))
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path

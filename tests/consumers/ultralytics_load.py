"""Load a labelsift YOLO export with Ultralytics' own code; print what it sees as JSON.

Run by tests/test_consumers.py with the Ultralytics virtual environment's python, from a working
directory that is not the export's: python ultralytics_load.py DATA_YAML
"""

import json
import sys
from pathlib import Path

from ultralytics.data import YOLODataset
from ultralytics.data.utils import check_det_dataset

data = check_det_dataset(sys.argv[1])
seen = {"names": {int(k): v for k, v in data["names"].items()}, "nc": data["nc"], "splits": {}}
for split in ("train", "val"):
    dataset = YOLODataset(img_path=data[split], data=data, task="detect", imgsz=320, augment=False)
    seen["splits"][split] = {
        Path(label["im_file"]).name: {
            "cls": [int(c) for c in label["cls"].ravel()],
            "xywhn": [[round(float(v), 5) for v in row] for row in label["bboxes"]],
            "shape": [int(v) for v in label["shape"]],  # (height, width) as Ultralytics reads it
        }
        for label in dataset.labels
    }
print(json.dumps(seen))

"""Load a labelsift `export hf` folder with `datasets.load_dataset("imagefolder", data_dir=DEST)`, no other
argument; print features and rows as JSON.   python hf_load.py DEST
"""

import json
import sys

import datasets

loaded = datasets.load_dataset("imagefolder", data_dir=sys.argv[1])
out = {"splits": {}}
for split, table in loaded.items():
    features = table.features
    out["features"] = {name: repr(feature) for name, feature in features.items()}
    names = None
    for key in ("label", "labels", "objects"):
        if key in features:
            feature = features[key]
            feature = feature["category"] if key == "objects" else feature
            feature = getattr(feature, "feature", feature)
            names = list(feature.names)
    out["names"] = names
    rows = []
    for row in table:
        image = row.pop("image")
        row["image_size"] = list(image.size)  # (width, height) of the decoded pixels
        rows.append(row)
    out["splits"][split] = rows
print(json.dumps(out))

"""Import a labelsift export with Datumaro; print items, labels, boxes, image shapes and warnings as JSON.

python datumaro_load.py PATH FORMAT   (FORMAT: coco_instances | voc | yolo)
"""

import json
import logging
import sys
import warnings

messages: list[str] = []


class Collect(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        messages.append(record.getMessage())


logging.getLogger().addHandler(Collect(level=logging.WARNING))
logging.getLogger().setLevel(logging.WARNING)
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    import datumaro as dm

    dataset = dm.Dataset.import_from(sys.argv[1], sys.argv[2])
    labels = [category.name for category in dataset.categories()[dm.AnnotationType.label]]
    items = {}
    for item in dataset:
        boxes = [
            [labels[a.label], [round(float(v), 3) for v in a.get_bbox()]]
            for a in item.annotations
            if a.type == dm.AnnotationType.bbox
        ]
        items[item.id] = {
            "subset": item.subset,
            "boxes": sorted(boxes),
            "others": sorted(a.type.name for a in item.annotations if a.type != dm.AnnotationType.bbox),
            "shape": list(item.media.data.shape[:2])
            if item.media is not None and item.media.has_data
            else None,
        }
print(json.dumps({"labels": labels, "items": items, "warnings": messages + [str(w.message) for w in caught]}))

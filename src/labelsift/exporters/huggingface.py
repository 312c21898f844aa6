"""Hugging Face `imagefolder`: `train/` and `validation/`, each with its images and a `metadata.parquet`.

`datasets.load_dataset("imagefolder", data_dir=DEST)` loads it with no extra arguments. The
metadata is Parquet, not JSON Lines, because a Parquet schema carries `datasets`' own feature
types (its `huggingface` schema metadata): the class names become `ClassLabel` names in the
`--label` order, where `metadata.jsonl` would give plain strings and folder names would give
them in alphabetical order. A `README.md` dataset card declares the same features and splits
for the Hub.

Tasks (one row per image, `file_name` naming the image beside the metadata, `source` the image
it was copied from):
- `classification`: `label`, one class; an image selected for several classes is held out
  (`several_labels`: it would be one example of each, contradicting itself; use `multilabel`).
- `multilabel`: `labels`, the list of its selected classes.
- `detection`: `width`, `height` and `objects: {bbox: [[x, y, w, h], ...], category: [...]}` in
  pixels of the displayed image (COCO convention), with the detection exports' rules: an image
  missing a box for a selected label is held out unless `keep_partial`.
Images are copied (upright when EXIF-rotated, see `owned.copy_image`): imagefolder reads them
from beside the metadata. Needs pyarrow (`pip install 'labelsift[hf]'`).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from functools import partial
from typing import Any, Literal, NamedTuple

from labelsift.errors import UsageError
from labelsift.geometry import coco_bbox
from labelsift.select import SELECTED, Selection
from labelsift.views import RecordView

from .common import StorageLike
from .detections import Tally, count_detection, detection_images
from .naming import TRAIN, VAL, check_fraction, class_names, file_name_parts, source_digest, split_for
from .owned import OwnedOutput, copy_image
from .pipeline import PER_CORE, Parallel, staged
from .records import decisions, require_manifest
from .summary import DEFAULT_DETAIL_LIMIT, ExportSummary

Task = Literal["classification", "multilabel", "detection"]
TASKS: tuple[Task, ...] = ("classification", "multilabel", "detection")
SPLIT_FOLDERS = {TRAIN: "train", VAL: "validation"}
ROW_GROUP = 10_000


def features(task: Task, classes: list[str]) -> dict[str, Any]:
    """The metadata's features in `datasets.Features.to_dict()` form (written without `datasets`)."""
    class_label = {"names": list(classes), "_type": "ClassLabel"}
    text = {"dtype": "string", "_type": "Value"}
    found: dict[str, Any] = {"file_name": text, "source": text}
    if task == "classification":
        found["label"] = class_label
    elif task == "multilabel":
        found["labels"] = {"feature": class_label, "_type": "List"}
    else:
        number = {"dtype": "int64", "_type": "Value"}
        box = {"feature": {"dtype": "float32", "_type": "Value"}, "length": 4, "_type": "List"}
        found |= {
            "width": number,
            "height": number,
            "objects": {
                "bbox": {"feature": box, "_type": "List"},
                "category": {"feature": class_label, "_type": "List"},
            },
        }
    return found


def _pyarrow() -> Any:
    try:
        import pyarrow
    except ImportError as exc:
        raise UsageError(
            "export hf writes Parquet metadata and needs pyarrow: pip install 'labelsift[hf]'."
        ) from exc
    return pyarrow


def arrow_schema(task: Task, classes: list[str]) -> Any:
    """The Parquet schema, with the features in its `huggingface` metadata as `datasets` writes them."""
    pa = _pyarrow()
    fields = [pa.field("file_name", pa.string()), pa.field("source", pa.string())]
    if task == "classification":
        fields.append(pa.field("label", pa.int64()))
    elif task == "multilabel":
        fields.append(pa.field("labels", pa.list_(pa.int64())))
    else:
        objects = pa.struct(
            [
                pa.field("bbox", pa.list_(pa.list_(pa.float32(), 4))),
                pa.field("category", pa.list_(pa.int64())),
            ]
        )
        fields += [
            pa.field("width", pa.int64()),
            pa.field("height", pa.int64()),
            pa.field("objects", objects),
        ]
    metadata = {"huggingface": json.dumps({"info": {"features": features(task, classes)}})}
    return pa.schema(fields, metadata=metadata)


def dataset_card(task: Task, classes: list[str], manifest: str) -> str:
    """README.md: the splits and features as the Hub reads them, and where the data came from."""
    lines = ["---", "configs:", "- config_name: default", "  data_files:"]
    for folder in SPLIT_FOLDERS.values():
        lines += [f"  - split: {folder}", f"    path: {folder}/**"]
    lines += ["dataset_info:", "  features:", "  - name: image", "    dtype: image"]
    lines += ["  - name: source", "    dtype: string"]
    class_label = ["      class_label:", "        names:"] + [
        f"          '{i}': {json.dumps(name, ensure_ascii=False)}" for i, name in enumerate(classes)
    ]
    if task == "classification":
        lines += ["  - name: label", "    dtype:", *class_label]
    elif task == "multilabel":
        lines += ["  - name: labels", "    sequence:", *(line[2:] for line in class_label)]
    else:
        lines += ["  - name: width", "    dtype: int64", "  - name: height", "    dtype: int64"]
        lines += [
            "  - name: objects",
            "    struct:",
            "    - name: bbox",
            "      sequence:",
            "        sequence: float32",
        ]
        lines += ["    - name: category", "      sequence:", *("  " + line[2:] for line in class_label)]
    lines += ["---", "", f"Exported by labelsift from `{manifest}` ({task}; classes in this order: "]
    lines[-1] += ", ".join(classes) + ")."
    return "\n".join(lines) + "\n"


class HfRow(NamedTuple):
    """One image's metadata row, ready to write, and what its copy needs."""

    source: str
    etag: str | None
    size: int | None
    split: str
    name: str
    orientation: int | None
    row: dict[str, Any]
    tally: Tally


def _detection_rows(
    records: Iterator[RecordView | None],
    summary: ExportSummary,
    selection: Selection,
    val_fraction: float,
    keep_partial: bool,
) -> Iterator[HfRow]:
    decided = decisions(records, selection, summary)
    for image in detection_images(decided, summary, val_fraction=val_fraction, keep_partial=keep_partial):
        record = image.record
        name = "".join(image.file_name())
        boxes = [[round(v, 3) for v in coco_bbox(obj.box)] for obj in image.objects]
        row = {
            "file_name": name,
            "source": record["source"],
            "width": image.width,
            "height": image.height,
            "objects": {"bbox": boxes, "category": [obj.class_id for obj in image.objects]},
        }
        yield HfRow(
            record["source"],
            record["etag"],
            record["size"],
            image.split,
            name,
            record["orientation"],
            row,
            image.tally,
        )


def _label_rows(
    records: Iterator[RecordView | None],
    summary: ExportSummary,
    selection: Selection,
    task: Task,
    val_fraction: float,
) -> Iterator[HfRow]:
    classes = summary.classes
    for decision in decisions(records, selection, summary):
        chosen = [(i, d) for i, d in enumerate(decision.labels) if d.outcome is SELECTED]
        if not chosen:
            continue
        record = decision.record
        source = record["source"]
        if task == "classification" and len(chosen) > 1:
            names = ", ".join(classes[i] for i, _ in chosen)
            summary.skip(source, "several_labels", f"held out: selected for {names}; use --task multilabel")
            continue
        digest = source_digest(source)
        split = split_for(source, val_fraction, digest)
        name = "".join(file_name_parts(source, record["format"], digest))
        ids = [i for i, _ in chosen]
        row: dict[str, Any] = {"file_name": name, "source": source}
        row |= {"label": ids[0]} if task == "classification" else {"labels": ids}
        tally = Tally(split, tuple((i, 0, d.human) for i, d in chosen))
        yield HfRow(source, record["etag"], record["size"], split, name, record["orientation"], row, tally)


def hf_rows(
    records: Iterator[RecordView | None],
    summary: ExportSummary,
    *,
    selection: Selection,
    task: Task,
    val_fraction: float,
    keep_partial: bool = False,
) -> Iterator[HfRow]:
    """The export's stage (see `pipeline`): records -> metadata rows."""
    if task == "detection":
        return _detection_rows(records, summary, selection, val_fraction, keep_partial)
    return _label_rows(records, summary, selection, task, val_fraction)


class _Metadata:
    """Rows per split, written to local Parquet files in row groups (bounded memory)."""

    def __init__(self, folder: str, schema: Any) -> None:
        import pyarrow.parquet as pq

        self.schema = schema
        self.paths = {split: f"{folder}/{split}.parquet" for split in SPLIT_FOLDERS}
        self._writers = {split: pq.ParquetWriter(path, schema) for split, path in self.paths.items()}
        self._rows: dict[str, list[dict[str, Any]]] = {split: [] for split in SPLIT_FOLDERS}
        self.counts = dict.fromkeys(SPLIT_FOLDERS, 0)

    def add(self, split: str, row: dict[str, Any]) -> None:
        self._rows[split].append(row)
        self.counts[split] += 1
        if len(self._rows[split]) >= ROW_GROUP:
            self._flush(split)

    def _flush(self, split: str) -> None:
        rows = self._rows[split]
        if rows:
            table = _pyarrow().Table.from_pylist(rows, schema=self.schema)
            self._writers[split].write_table(table)
            rows.clear()

    def close(self) -> None:
        for split, writer in self._writers.items():
            self._flush(split)
            writer.close()


def export_hf(
    manifest_uri: str,
    dest: str,
    selection: Selection,
    *,
    task: Task = "classification",
    storage: StorageLike | None = None,
    names: Mapping[str, str] | None = None,
    val_fraction: float = 0.2,
    upright: bool = True,
    keep_partial: bool = False,
    overwrite: bool = False,
    detail_limit: int = DEFAULT_DETAIL_LIMIT,
    parallel: Parallel = PER_CORE,
) -> ExportSummary:
    """Write a Hugging Face imagefolder dataset of `selection` for `task` to `dest` (see the module).

    Args:
        manifest_uri: the manifest to read (a file, or a folder or `s3://` prefix of shards).
        dest: the destination folder, local or `s3://bucket/prefix`.
        selection: the labels to export and how records are selected.
        task: `classification`, `multilabel` or `detection`.
        storage: reads the sources and writes an `s3://` destination (the images are copied).
        names: renames classes, query label -> class name.
        val_fraction: the share of images in the `validation` split (by a hash of the source), 0-1.
        upright: write an EXIF-rotated image in its displayed frame (else a byte copy).
        keep_partial: `detection`: export images where a selected label has no usable box.
        overwrite: replace an earlier export in `dest` (only the files its receipt lists).
        detail_limit: how many skipped images, warnings and such the summary lists.
        parallel: how the per-record work is spread over processes.

    Returns:
        The counts and reasons of what was written or left out.

    Raises:
        UsageError: an unknown `task`, pyarrow missing, a bad `names` or `val_fraction` (before
            anything is written).
        FileNotFoundError: no manifest at `manifest_uri`.
        CannotProceed: the destination cannot be written, or holds files labelsift did not write
            (`NameClash`), or an earlier export without `overwrite`.
    """
    if task not in TASKS:
        raise UsageError(f"--task {task!r}: choose one of {', '.join(TASKS)}.")
    classes = class_names(selection, names)
    check_fraction(val_fraction)
    schema = arrow_schema(task, classes)  # pyarrow missing: refused before anything is made
    summary = ExportSummary.start(f"hf-{task}", manifest_uri, dest, classes, detail_limit=detail_limit)
    require_manifest(manifest_uri)
    stage = partial(
        hf_rows, selection=selection, task=task, val_fraction=val_fraction, keep_partial=keep_partial
    )
    with OwnedOutput(dest, storage, fmt="hf", manifest=manifest_uri, overwrite=overwrite) as out:
        rows = staged(manifest_uri, selection, summary, stage, parallel)
        _write_splits(out, rows, schema, summary, upright=upright)
        out.write_bytes("README.md", dataset_card(task, classes, manifest_uri).encode("utf-8"))
        summary.files_written += 1
        out.commit(summary)
    return summary


def _write_splits(
    out: OwnedOutput, rows: Iterator[HfRow], schema: Any, summary: ExportSummary, *, upright: bool
) -> None:
    """Each row's image in its split's folder, and the split's `metadata.parquet` beside them."""
    with tempfile.TemporaryDirectory(prefix="labelsift-hf-") as tmp:
        metadata = _Metadata(tmp, schema)
        try:
            _copy_images(out, rows, metadata, summary, upright=upright)
        finally:
            metadata.close()
        _write_metadata(out, metadata, summary)


def _copy_images(
    out: OwnedOutput, rows: Iterator[HfRow], metadata: _Metadata, summary: ExportSummary, *, upright: bool
) -> None:
    """Copy each row's image beside its split's metadata; a row whose image cannot be copied is left out."""
    for item in rows:
        folder = SPLIT_FOLDERS[item.split]
        turn = item.orientation if upright else None
        if not copy_image(
            out, item.source, item.etag, item.size, f"{folder}/{item.name}", summary, orientation=turn
        ):
            continue
        metadata.add(item.split, item.row)
        count_detection(summary, item.tally)


def _write_metadata(out: OwnedOutput, metadata: _Metadata, summary: ExportSummary) -> None:
    """Each split's `metadata.parquet` (a split with no row has none)."""
    for split, folder in SPLIT_FOLDERS.items():
        if metadata.counts[split]:
            with (
                open(metadata.paths[split], "rb") as local,
                out.open_binary(f"{folder}/metadata.parquet") as sink,
            ):
                shutil.copyfileobj(local, sink, 1 << 20)
            summary.files_written += 1

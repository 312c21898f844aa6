"""Pascal VOC detection: `Annotations/<name>.xml`, `JPEGImages/<name>.<ext>`, `ImageSets/Main/`.

One XML per image with `filename`, `size` (width, height, depth 3) and an `object` per box
(`name`, `pose` Unspecified, `truncated` 1 when the box was clipped at the image edge, `difficult`
0, `bndbox` as 1-based inclusive integer corners). `ImageSets/Main/train.txt` and `val.txt` list the
image names of each split; `labels.txt` lists the classes in the export's one order, and
`labelmap.txt` the same classes in Datumaro's `name:r,g,b::` form (after `background`), so
Datumaro and CVAT read the export's own classes, not the 20 of VOC 2012.
Pixels are in the DISPLAYED frame (after EXIF orientation); copies are upright (EXIF applied,
`owned.copy_image`), so a loader that ignores the tag still sees boxes and pixels in one frame.
`copy_images=False` writes the annotations only (`filename` still names the image a copy would have).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from functools import partial
from xml.sax.saxutils import escape

from labelsift.geometry import voc_box
from labelsift.select import Selection
from labelsift.views import RecordView

from .common import (
    TRAIN,
    VAL,
    AnnotationFile,
    DetectionImage,
    StorageLike,
    check_fraction,
    class_names,
    count_detection,
    decisions,
    detection_images,
    require_manifest,
)
from .owned import OwnedOutput, copy_image
from .pipeline import PER_CORE, Parallel, staged
from .summary import DEFAULT_DETAIL_LIMIT, ExportSummary


def labelmap(classes: list[str]) -> str:
    """Datumaro's VOC label map: `# label:color_rgb:parts:actions`, background first, one colour each."""
    lines = ["# label:color_rgb:parts:actions", "background:0,0,0::"]
    for index, name in enumerate(classes, start=1):
        red, green, blue = (index * 67) % 256, (index * 131) % 256, (index * 197) % 256
        lines.append(f"{name}:{red},{green},{blue}::")
    return "\n".join(lines) + "\n"


def voc_xml(image: DetectionImage, filename: str, classes: list[str], depth: int = 3) -> str:
    parts = [
        "<annotation>\n",
        "  <folder>JPEGImages</folder>\n",
        f"  <filename>{escape(filename)}</filename>\n",
        f"  <path>{escape(image.record['source'])}</path>\n",
        "  <source><database>labelsift</database></source>\n",
        f"  <size><width>{image.width}</width><height>{image.height}</height><depth>{depth}</depth></size>\n",
        "  <segmented>0</segmented>\n",
    ]
    for obj in image.objects:
        xmin, ymin, xmax, ymax = voc_box(obj.box)
        parts.append(
            f"  <object><name>{escape(classes[obj.class_id])}</name><pose>Unspecified</pose>"
            f"<truncated>{int(obj.box.clipped)}</truncated><difficult>0</difficult>"
            f"<bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox>"
            "</object>\n"
        )
    parts.append("</annotation>\n")
    return "".join(parts)


def voc_files(
    records: Iterator[RecordView | None],
    summary: ExportSummary,
    *,
    selection: Selection,
    classes: list[str],
    val_fraction: float,
    keep_partial: bool = False,
) -> Iterator[AnnotationFile]:
    """The export's stage (see `pipeline`): records -> XML files."""
    decided = decisions(records, selection, summary)
    for image in detection_images(decided, summary, val_fraction=val_fraction, keep_partial=keep_partial):
        stem, suffix = image.file_name()
        name = stem + suffix
        record = image.record
        yield AnnotationFile(
            record["source"],
            record["etag"],
            record["size"],
            image.split,
            stem,
            name,
            voc_xml(image, name, classes),
            image.tally,
            record["orientation"],
        )


def export_voc(
    manifest_uri: str,
    dest: str,
    selection: Selection,
    *,
    storage: StorageLike | None = None,
    names: Mapping[str, str] | None = None,
    val_fraction: float = 0.2,
    copy_images: bool = True,
    upright: bool = True,
    keep_partial: bool = False,
    overwrite: bool = False,
    detail_limit: int = DEFAULT_DETAIL_LIMIT,
    parallel: Parallel = PER_CORE,
) -> ExportSummary:
    """Write a Pascal VOC dataset of `selection` from the manifest at `manifest_uri` to `dest`.

    The parameters are `export_yolo`'s (names, val_fraction, copy_images, upright, keep_partial,
    overwrite, parallel); returns the counts and reasons of what was written or left out.
    """
    classes = class_names(selection, names)
    check_fraction(val_fraction)  # before anything is made at the destination
    summary = ExportSummary.start("voc", manifest_uri, dest, classes, detail_limit=detail_limit)
    require_manifest(manifest_uri)
    stage = partial(
        voc_files, selection=selection, classes=classes, val_fraction=val_fraction, keep_partial=keep_partial
    )
    with OwnedOutput(dest, storage, fmt="voc", manifest=manifest_uri, overwrite=overwrite) as out:
        with ExitStack() as lists_open:
            lists = {
                s: lists_open.enter_context(out.open_text(f"ImageSets/Main/{s}.txt")) for s in (TRAIN, VAL)
            }
            for image in staged(manifest_uri, selection, summary, stage, parallel):
                if copy_images:
                    rel = f"JPEGImages/{image.name}"
                    turn = image.orientation if upright else None
                    if not copy_image(
                        out, image.source, image.etag, image.size, rel, summary, orientation=turn
                    ):
                        continue
                out.write_bytes(f"Annotations/{image.stem}.xml", image.text.encode("utf-8"))
                lists[image.split].write(image.stem + "\n")
                summary.files_written += 1
                if not copy_images:
                    out.note_source(image.source)
                count_detection(summary, image.tally)
        summary.files_written += 2
        out.write_bytes("labels.txt", "".join(name + "\n" for name in classes).encode("utf-8"))
        out.write_bytes("labelmap.txt", labelmap(classes).encode("utf-8"))
        summary.files_written += 2
        out.commit(summary)
    return summary

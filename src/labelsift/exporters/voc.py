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

from collections.abc import Mapping
from xml.sax.saxutils import escape

from labelsift.geometry import voc_box
from labelsift.select import Selection

from .common import StorageLike
from .detection_export import (
    DetectionFormat,
    DetectionOptions,
    DetectionWriter,
    ExportItem,
    export_detections,
    export_item,
)
from .detections import DetectionImage
from .naming import TRAIN, VAL
from .owned import OwnedOutput
from .pipeline import PER_CORE, Parallel
from .summary import DEFAULT_DETAIL_LIMIT, ExportSummary


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

    Args:
        manifest_uri: the manifest to read (a file, or a folder or `s3://` prefix of shards).
        dest: the destination folder, local or `s3://bucket/prefix`.
        selection: the labels to export and how records are selected.
        storage, names, val_fraction, upright, keep_partial, overwrite, detail_limit, parallel:
            the fields of `DetectionOptions`, documented there (shared by every detection export).
        copy_images: copy each image to `JPEGImages/`; False writes the annotations only.

    Returns:
        The counts and reasons of what was written or left out.

    Raises:
        UsageError: a bad `names` mapping or `val_fraction` (before anything is written).
        FileNotFoundError: no manifest at `manifest_uri`.
        CannotProceed: the destination cannot be written, or holds files labelsift did not write
            (`NameClash`), or an earlier export without `overwrite`.
    """
    options = DetectionOptions(
        storage=storage,
        names=names,
        val_fraction=val_fraction,
        copy_images=copy_images,
        upright=upright,
        keep_partial=keep_partial,
        overwrite=overwrite,
        detail_limit=detail_limit,
        parallel=parallel,
    )
    return export_detections(VOC, manifest_uri, dest, selection, options)


def voc_item(image: DetectionImage, classes: list[str], copy_images: bool) -> ExportItem:
    """The image's XML annotation, naming the file a copy of it has (copied or not)."""
    stem, suffix = image.file_name()
    name = stem + suffix
    return export_item(image, stem, name, voc_xml(image, name, classes))


class VocWriter(DetectionWriter):
    """One XML per item, its stem in its split's image set; the class lists at the end."""

    def __init__(self, out: OwnedOutput, summary: ExportSummary, options: DetectionOptions) -> None:
        super().__init__(out, summary, options)
        self.lists = {
            s: self.streams.enter_context(out.open_text(f"ImageSets/Main/{s}.txt")) for s in (TRAIN, VAL)
        }

    def image_path(self, item: ExportItem) -> str:
        return f"JPEGImages/{item.name}"

    def add(self, item: ExportItem) -> None:
        self.out.write_bytes(f"Annotations/{item.stem}.xml", item.text.encode("utf-8"))
        self.lists[item.split].write(item.stem + "\n")
        self.summary.files_written += 1

    def finish(self) -> None:
        super().finish()
        self.summary.files_written += 2
        classes = self.summary.classes
        self.out.write_bytes("labels.txt", "".join(name + "\n" for name in classes).encode("utf-8"))
        self.out.write_bytes("labelmap.txt", labelmap(classes).encode("utf-8"))
        self.summary.files_written += 2


VOC = DetectionFormat("voc", voc_item, VocWriter)


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

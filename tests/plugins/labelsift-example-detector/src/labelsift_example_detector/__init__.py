"""A detector plugin for labelsift: labels every image "Bright" or "Dark" by its mean brightness.

`labelsift scan SRC -o out.jsonl --detector brightness:128` uses 128 as the dividing level.
It shows the whole plugin contract: a `DetectorPlugin` under the entry-point group
`labelsift.detectors`, whose `create(request)` returns an object with `info`, `billable` and
`detect(image) -> Detection`.
"""

from __future__ import annotations

from PIL import Image, ImageOps, ImageStat

from labelsift.detectors.base import Detection, ImageInput, open_input
from labelsift.detectors.factory import DetectorPlugin, DetectorRequest
from labelsift.models import DetectorInfo, Instance, Label


class BrightnessDetector:
    def __init__(self, level: float) -> None:
        self.level = level

    @property
    def info(self) -> DetectorInfo:
        return DetectorInfo(name="brightness", model_version=f"level={self.level:g}")

    @property
    def billable(self) -> bool:
        return False

    def detect(self, image: ImageInput) -> Detection:
        with open_input(image) as source, Image.open(source) as opened:
            shown = ImageOps.exif_transpose(opened).convert("L")
            mean = ImageStat.Stat(shown).mean[0]
        name = "Bright" if mean >= self.level else "Dark"
        confidence = round(min(100.0, abs(mean - self.level) / 2.55 + 50.0), 3)
        box = Instance(left=0.25, top=0.25, width=0.5, height=0.5, confidence=confidence)
        label = Label(name=name, confidence=confidence, parents=["Lighting"], instances=[box])
        return Detection(labels=[label, Label(name="Lighting", confidence=confidence)])


def create(request: DetectorRequest) -> BrightnessDetector:
    return BrightnessDetector(float(request.argument or 128))


PLUGIN = DetectorPlugin(create=create, billing="free", summary="Bright or Dark by mean brightness")


def fail_to_create(request: DetectorRequest) -> BrightnessDetector:
    raise RuntimeError("weights missing")


BROKEN = DetectorPlugin(create=fail_to_create, summary="a plugin whose model cannot load (for the tests)")

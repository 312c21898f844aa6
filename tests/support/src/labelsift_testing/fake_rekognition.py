"""A local Amazon Rekognition endpoint (DetectLabels only) for tests and benchmarks.

It is a real HTTP/1.1 server on 127.0.0.1 that speaks the service's JSON 1.1 protocol, so boto3's
whole stack (SigV4 signing, request validation, retries, error parsing) runs for real against it::

    with FakeRekognition(s3_endpoint_url=s3.endpoint_url) as fake:
        client = boto3.client("rekognition", endpoint_url=fake.endpoint_url, ...)

Answers are deterministic and shaped like the real service (botocore's model, rekognition
2016-06-27): every label has parents, aliases and categories from a built-in taxonomy, every
ancestor of a returned label is itself returned, object labels carry instances with boxes.

The scene of an image is read from the image itself: a JPEG COM segment or PNG tEXt chunk
``labelsift-scene=<scene>[:<confidence>][,<scene>...]`` (see `scene_comment`, `make_image`);
without a marker the scene is chosen by a stable hash of the bytes. Confidences are derived from
the same hash, so about one image in six falls in the 55-80 review band.

Controls (all thread-safe and settable while the server runs): `latency_s`, `throttle_rate`,
`error_rate`, `throttle_every`, `tps_quota`, `quota_error`, `inject(...)` (one-shot faults),
credentials (`add_credentials`, `expire_credentials`), counters (`calls_total`,
`calls_by_target`, `calls_by_image`, `billed`, `throttled`, `quota_rejections`, `records`) and
`reset()`.

Run by hand: ``python -m labelsift_testing.fake_rekognition --s3-endpoint http://127.0.0.1:8333``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import hashlib
import io
import json
import random
import re
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Self

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import BotoCoreError, ClientError
from PIL import Image, ImageStat, PngImagePlugin

from labelsift_testing.fake_custom_labels import OPERATIONS as CUSTOM_LABELS_OPERATIONS
from labelsift_testing.fake_custom_labels import CustomLabelsError, CustomLabelsService

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

LOOPBACK = "127.0.0.1"
TARGET_PREFIX = "RekognitionService."
DETECT_LABELS = "RekognitionService.DetectLabels"
MARKER = "labelsift-scene"
LABEL_MODEL_VERSION = "3.0"
DEFAULT_MIN_CONFIDENCE = 55.0
MAX_BYTES = 5 * 1024 * 1024  # Image.Bytes limit (botocore model: 5242880)
MAX_S3_OBJECT = 15 * 1024 * 1024
MIN_SIDE = 80
MAX_SIDE = 10000
JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_MARKER_RE = re.compile(rb"labelsift-scene[=\x00]([A-Za-z0-9_.:,\- ]+)")

# --------------------------------------------------------------------------------------------
# Taxonomy: label -> (direct parents, aliases, categories). Ancestors are the transitive closure.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Node:
    parents: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()


_A = "Animals and Pets"
_V = "Vehicles and Automotive"
_N = "Nature and Outdoors"
_T = "Technology and Computing"
_F = "Food and Beverage"
_B = "Buildings and Architecture"
_P = "Person Description"
_S = "Sports"
_W = "Weapons and Military"
_PL = "Plants and Flowers"

TAXONOMY: Mapping[str, _Node] = {
    "Animal": _Node((), (), (_A,)),
    "Bird": _Node(("Animal",), (), (_A,)),
    "Robin": _Node(("Bird",), (), (_A,)),
    "Beak": _Node(("Bird",), (), (_A,)),
    "Mammal": _Node(("Animal",), (), (_A,)),
    "Pet": _Node(("Animal",), (), (_A,)),
    "Canine": _Node(("Mammal",), (), (_A,)),
    "Dog": _Node(("Canine", "Pet"), (), (_A,)),
    "Puppy": _Node(("Dog",), (), (_A,)),
    "Feline": _Node(("Mammal",), (), (_A,)),
    "Cat": _Node(("Feline", "Pet"), ("Kitty",), (_A,)),
    "Horse": _Node(("Mammal",), ("Equine",), (_A,)),
    "Person": _Node((), ("Human",), (_P,)),
    "Adult": _Node(("Person",), (), (_P,)),
    "Face": _Node(("Person",), (), (_P,)),
    "Transportation": _Node((), (), (_V,)),
    "Vehicle": _Node(("Transportation",), (), (_V,)),
    "Car": _Node(("Vehicle",), ("Automobile",), (_V,)),
    "Wheel": _Node(("Machine",), (), (_V,)),
    "Machine": _Node((), (), (_T,)),
    "Bicycle": _Node(("Vehicle",), ("Bike",), (_V,)),
    "Boat": _Node(("Vehicle",), ("Ship",), (_V,)),
    "Sailboat": _Node(("Boat",), (), (_V,)),
    "Water": _Node((), (), (_N,)),
    "Outdoors": _Node((), (), (_N,)),
    "Nature": _Node((), (), (_N,)),
    "Fire": _Node((), (), (_N,)),
    "Flame": _Node(("Fire",), (), (_N,)),
    "Campfire": _Node(("Flame",), ("Bonfire",), (_N,)),
    "Sport": _Node((), (), (_S,)),
    "Archery": _Node(("Sport",), (), (_S,)),
    "Weapon": _Node((), (), (_W,)),
    "Bow": _Node(("Weapon",), (), (_W,)),
    "Food": _Node((), (), (_F,)),
    "Meal": _Node(("Food",), (), (_F,)),
    "Dish": _Node(("Meal",), (), (_F,)),
    "Pizza": _Node(("Food",), (), (_F,)),
    "Plant": _Node((), (), (_PL,)),
    "Tree": _Node(("Plant",), (), (_PL,)),
    "Vegetation": _Node(("Plant",), (), (_PL,)),
    "Leaf": _Node(("Plant",), (), (_PL,)),
    "Architecture": _Node((), (), (_B,)),
    "Building": _Node(("Architecture",), (), (_B,)),
    "Office Building": _Node(("Building",), (), (_B,)),
    "City": _Node((), ("Town",), (_B,)),
    "Electronics": _Node((), (), (_T,)),
    "Computer": _Node(("Electronics",), (), (_T,)),
    "Laptop": _Node(("Computer",), ("Notebook",), (_T,)),
    "Computer Keyboard": _Node(("Computer", "Electronics"), (), (_T,)),
    "Sky": _Node((), (), (_N,)),
    "Landscape": _Node(("Outdoors", "Nature"), ("Scenery",), (_N,)),
    "Mountain": _Node(("Outdoors",), (), (_N,)),
}


@dataclass(frozen=True)
class _Seen:
    """A label of a scene: confidence offset below the scene's clarity; max number of boxes."""

    name: str
    offset: float = 0.0
    boxes: int = 0


_PRIMARY = 0.0
SCENES: Mapping[str, tuple[_Seen, ...]] = {
    "robin": (_Seen("Robin"), _Seen("Bird", 0.5, 2), _Seen("Beak", 14.0), _Seen("Outdoors", 22.0)),
    "bird": (_Seen("Bird", 0.0, 3), _Seen("Beak", 12.0), _Seen("Sky", 25.0)),
    "dog": (_Seen("Dog", 0.0, 2), _Seen("Puppy", 18.0), _Seen("Outdoors", 28.0)),
    "cat": (_Seen("Cat", 0.0, 1), _Seen("Pet", 0.3), _Seen("Face", 40.0)),
    "person": (_Seen("Person", 0.0, 3), _Seen("Adult", 2.0, 2), _Seen("Face", 9.0)),
    "car": (_Seen("Car", 0.0, 3), _Seen("Wheel", 6.0, 4), _Seen("City", 30.0)),
    "bicycle": (_Seen("Bicycle", 0.0, 2), _Seen("Wheel", 4.0, 4), _Seen("Outdoors", 26.0)),
    "campfire": (_Seen("Campfire"), _Seen("Flame", 1.0), _Seen("Outdoors", 20.0), _Seen("Nature", 33.0)),
    "archery": (_Seen("Archery"), _Seen("Bow", 3.0, 1), _Seen("Person", 1.0, 1), _Seen("Sport", 0.5)),
    "food": (_Seen("Food"), _Seen("Dish", 5.0, 2), _Seen("Pizza", 24.0, 1)),
    "tree": (_Seen("Tree", 0.0, 3), _Seen("Vegetation", 3.0), _Seen("Leaf", 15.0), _Seen("Sky", 27.0)),
    "building": (_Seen("Building", 0.0, 2), _Seen("Office Building", 16.0, 1), _Seen("City", 10.0)),
    "boat": (_Seen("Boat", 0.0, 2), _Seen("Sailboat", 21.0, 1), _Seen("Water", 4.0)),
    "horse": (_Seen("Horse", 0.0, 2), _Seen("Outdoors", 18.0), _Seen("Landscape", 35.0)),
    "laptop": (_Seen("Laptop", 0.0, 1), _Seen("Computer Keyboard", 8.0, 1), _Seen("Electronics", 0.2)),
    "landscape": (_Seen("Landscape"), _Seen("Mountain", 6.0), _Seen("Sky", 3.0), _Seen("Tree", 30.0, 2)),
    "empty": (),
}
# Scenes chosen by hash for images without a marker ("empty" must be asked for).
HASHED_SCENES: tuple[str, ...] = tuple(name for name in SCENES if name != "empty")


def ancestors(name: str) -> list[str]:
    """All ancestors of a taxonomy label, nearest first, without duplicates."""
    seen: list[str] = []
    queue = list(TAXONOMY[name].parents)
    while queue:
        parent = queue.pop(0)
        if parent not in seen:
            seen.append(parent)
            queue.extend(TAXONOMY[parent].parents)
    return seen


def _depth(name: str) -> int:
    parents = TAXONOMY[name].parents
    return 0 if not parents else 1 + max(_depth(parent) for parent in parents)


# --------------------------------------------------------------------------------------------
# Scene markers and deterministic labels
# --------------------------------------------------------------------------------------------


def scene_comment(scenes: str | Sequence[str], confidence: float | None = None) -> str:
    """The marker text for an image: ``labelsift-scene=bird,dog`` (optionally ``bird:72.5``).

    Write it as a JPEG comment (`Image.save(..., comment=...)`) or see `scene_save_options`.
    With `confidence`, the scenes' main labels get exactly that confidence (review-band tests).
    """
    names = [scenes] if isinstance(scenes, str) else list(scenes)
    for name in names:
        if name not in SCENES:
            raise ValueError(f"unknown scene {name!r}; known: {', '.join(SCENES)}")
    if confidence is not None:
        names = [f"{name}:{confidence:g}" for name in names]
    return f"{MARKER}={','.join(names)}"


def scene_save_options(
    image_format: str, scenes: str | Sequence[str], confidence: float | None = None
) -> dict[str, Any]:
    """Keyword arguments for `PIL.Image.save` that embed the scene marker (JPEG COM / PNG tEXt)."""
    text = scene_comment(scenes, confidence)
    if image_format.upper() in ("JPEG", "JPG"):
        return {"comment": text.encode()}
    if image_format.upper() == "PNG":
        info = PngImagePlugin.PngInfo()
        info.add_text(MARKER, text.split("=", 1)[1])
        return {"pnginfo": info}
    raise ValueError(f"scene markers are written to JPEG or PNG only, not {image_format}")


def make_image(
    scenes: str | Sequence[str] = (),
    *,
    size: tuple[int, int] = (320, 240),
    image_format: str = "JPEG",
    confidence: float | None = None,
    seed: int = 0,
) -> bytes:
    """A small JPEG/PNG (a colour gradient, varied by `seed`) carrying a scene marker if given."""
    width, height = size
    gradient = Image.linear_gradient("L").resize((width, height))
    tint = random.Random(seed)
    factors = [tint.randint(1, 255) for _ in range(3)]
    channels = [gradient.point(lambda v, k=k: (v * k) // 255) for k in factors]
    image = Image.merge("RGB", tuple(channels))
    options: dict[str, Any] = {}
    if scenes:
        options = scene_save_options(image_format, scenes, confidence)
    out = io.BytesIO()
    image.save(out, format=image_format, **options)
    return out.getvalue()


def _unit(digest: bytes, salt: str) -> float:
    """A stable number in [0, 1) from the image digest and a salt."""
    value = hashlib.sha256(digest + salt.encode()).digest()
    return int.from_bytes(value[:8], "big") / 2**64


def _parse_marker(data: bytes) -> list[tuple[str, float | None]] | None:
    match = _MARKER_RE.search(data[: 256 * 1024]) or _MARKER_RE.search(data)
    if match is None:
        return None
    result: list[tuple[str, float | None]] = []
    for item in match.group(1).decode("ascii", "replace").split(","):
        name, _, conf = item.strip().partition(":")
        if name in SCENES:
            try:
                result.append((name, float(conf) if conf else None))
            except ValueError:
                result.append((name, None))
    return result


def image_scenes(data: bytes) -> list[str]:
    """The scenes the fake sees in an image (marker first, hash otherwise)."""
    return [name for name, _ in _scenes_with_confidence(data)]


def _scenes_with_confidence(data: bytes) -> list[tuple[str, float | None]]:
    marked = _parse_marker(data)
    if marked is not None:
        return marked
    digest = hashlib.sha256(data).digest()
    return [(HASHED_SCENES[int.from_bytes(digest[:4], "big") % len(HASHED_SCENES)], None)]


def _clarity(digest: bytes) -> float:
    """The confidence of the image's main labels: 2/3 clear (88-99.9), 1/6 medium, 1/6 review band."""
    tier = _unit(digest, "tier")
    spread = _unit(digest, "clarity")
    if tier < 4 / 6:
        return 88.0 + 11.9 * spread
    if tier < 5 / 6:
        return 80.0 + 8.0 * spread
    return 56.0 + 23.0 * spread


def _boxes(digest: bytes, name: str, count: int, confidence: float) -> list[dict[str, Any]]:
    boxes: list[dict[str, Any]] = []
    for index in range(count):
        salt = f"{name}/{index}"
        width = 0.12 + 0.38 * _unit(digest, salt + "w")
        height = 0.12 + 0.38 * _unit(digest, salt + "h")
        left = (1.0 - width) * _unit(digest, salt + "l")
        top = (1.0 - height) * _unit(digest, salt + "t")
        if index == 0 and _unit(digest, salt + "edge") < 1 / 16:
            left = -0.0031  # the real service sometimes reports a box a hair outside the image
        boxes.append(
            {
                "BoundingBox": {
                    "Width": round(width, 6),
                    "Height": round(height, 6),
                    "Left": round(left, 6),
                    "Top": round(top, 6),
                },
                "Confidence": round(max(0.0, confidence - 4.0 * _unit(digest, salt + "c")), 4),
            }
        )
    return boxes


def _labels_for(data: bytes) -> list[dict[str, Any]]:
    digest = hashlib.sha256(data).digest()
    found: dict[str, dict[str, Any]] = {}

    def add(name: str, confidence: float, instances: list[dict[str, Any]]) -> None:
        label = found.get(name)
        if label is None:
            node = TAXONOMY[name]
            found[name] = {
                "Name": name,
                "Confidence": confidence,
                "Instances": list(instances),
                "Parents": [{"Name": parent} for parent in ancestors(name)],
                "Aliases": [{"Name": alias} for alias in node.aliases],
                "Categories": [{"Name": category} for category in node.categories],
            }
        else:
            label["Confidence"] = max(label["Confidence"], confidence)
            label["Instances"].extend(instances)

    for scene, fixed in _scenes_with_confidence(data):
        clarity = fixed if fixed is not None else _clarity(digest + scene.encode())
        for seen in SCENES[scene]:
            jitter = 0.0 if seen.offset == _PRIMARY else 3.0 * _unit(digest, scene + seen.name)
            confidence = round(min(99.9999, max(0.0, clarity - seen.offset - jitter)), 4)
            count = 0
            if seen.boxes:
                count = 1 + int(_unit(digest, scene + seen.name + "n") * seen.boxes)
            add(seen.name, confidence, _boxes(digest, seen.name, count, confidence))
            for parent in ancestors(seen.name):
                add(parent, confidence, [])
    # Highest confidence first; on ties an ancestor comes before its descendants, so every
    # prefix (MaxLabels) and every MinConfidence cut keeps all ancestors of what it keeps.
    return sorted(found.values(), key=lambda label: (-label["Confidence"], _depth(label["Name"])))


def expected_labels(image_bytes: bytes) -> list[dict[str, Any]]:
    """The `Labels` the endpoint answers for these bytes, before MinConfidence and MaxLabels."""
    return _labels_for(image_bytes)


def image_key_for_bytes(data: bytes) -> str:
    """How calls with `Image.Bytes` are keyed in `calls_by_image`."""
    return "bytes:" + hashlib.sha256(data).hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# Image properties (only when Features asks for IMAGE_PROPERTIES)
# --------------------------------------------------------------------------------------------

_CSS = {
    "black": (0, 0, 0),
    "white": (255, 255, 255),
    "red": (255, 0, 0),
    "green": (0, 128, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "orange": (255, 165, 0),
    "purple": (128, 0, 128),
    "grey": (128, 128, 128),
    "brown": (139, 69, 19),
    "pink": (255, 192, 203),
    "teal": (0, 128, 128),
}


def _nearest_color(rgb: tuple[int, int, int]) -> str:
    return min(_CSS, key=lambda name: sum((a - b) ** 2 for a, b in zip(_CSS[name], rgb, strict=True)))


def _dominant_colors(image: Image.Image, limit: int) -> list[dict[str, Any]]:
    if limit <= 0:
        return []
    small = image.convert("RGB").resize((48, 48))
    quantized = small.quantize(colors=max(1, min(limit, 10)))
    palette = quantized.getpalette() or []
    counts = sorted(quantized.getcolors() or [], reverse=True)
    total = sum(count for count, _ in counts) or 1
    colors: list[dict[str, Any]] = []
    for count, index in counts[:limit]:
        start = 3 * index if isinstance(index, int) else 0
        red, green, blue = (int(v) for v in palette[start : start + 3])
        name = _nearest_color((red, green, blue))
        colors.append(
            {
                "Red": red,
                "Blue": blue,
                "Green": green,
                "HexCode": f"#{red:02x}{green:02x}{blue:02x}",
                "CSSColor": name,
                "SimplifiedColor": name,
                "PixelPercent": round(100.0 * count / total, 2),
            }
        )
    return colors


def _quality(image: Image.Image) -> dict[str, float]:
    stat = ImageStat.Stat(image.convert("L").resize((64, 64)))
    brightness = min(100.0, stat.mean[0] / 2.55)
    contrast = min(100.0, stat.stddev[0] / 1.28)
    return {
        "Brightness": round(brightness, 3),
        "Sharpness": round(min(100.0, 40 + contrast / 2), 3),
        "Contrast": round(contrast, 3),
    }


def _image_properties(image: Image.Image, limit: int) -> dict[str, Any]:
    width, height = image.size
    fg = image.crop(
        (width // 4, height // 4, max(width // 4 + 1, 3 * width // 4), max(height // 4 + 1, 3 * height // 4))
    )
    return {
        "Quality": _quality(image),
        "DominantColors": _dominant_colors(image, limit),
        "Foreground": {"Quality": _quality(fg), "DominantColors": _dominant_colors(fg, limit)},
        "Background": {"Quality": _quality(image), "DominantColors": _dominant_colors(image, limit)},
    }


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


class ServiceError(Exception):
    """An error answer: HTTP status and the JSON 1.1 `__type`."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


def _error(code: str, message: str | None = None) -> ServiceError:
    messages = {
        "ThrottlingException": "Rate exceeded",
        "ProvisionedThroughputExceededException": (
            "The number of requests exceeded your throughput limit. "
            "If you want to increase this limit, contact Amazon Rekognition."
        ),
        "InternalServerError": "Amazon Rekognition experienced a service issue. Try your call again.",
        "InvalidS3ObjectException": (
            "Unable to get object metadata from S3. Check object key, region and/or access permissions."
        ),
        "InvalidImageFormatException": "Request has invalid image format",
        "ImageTooLargeException": "Image size is too large.",
        "InvalidParameterException": "Request has invalid parameters",
        "AccessDeniedException": "User is not authorized to perform: rekognition:DetectLabels",
        "UnrecognizedClientException": "The security token included in the request is invalid.",
        "InvalidSignatureException": (
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method."
        ),
        "ExpiredTokenException": "The security token included in the request is expired",
    }
    return ServiceError(
        code, message or messages.get(code, code), 500 if code == "InternalServerError" else 400
    )


@dataclass(frozen=True)
class CallRecord:
    """One request the endpoint answered."""

    at: float  # time.monotonic() when the answer was sent
    target: str
    image: str | None  # s3://bucket/key[?versionId=...] or bytes:<sha256 prefix>
    status: int
    error: str | None
    access_key: str | None
    region: str | None  # the region of the SigV4 credential scope


@dataclass
class _State:
    records: list[CallRecord] = field(default_factory=list)
    faults: deque[str] = field(default_factory=deque)
    throttled: int = 0
    injected_errors: int = 0
    quota_rejections: int = 0
    arrivals: int = 0
    s3_reads: int = 0
    bytes_received: int = 0
    tokens: float = 0.0
    refilled_at: float = 0.0


class FakeRekognition:
    """A Rekognition DetectLabels endpoint on 127.0.0.1. Use as a context manager."""

    def __init__(
        self,
        *,
        host: str = LOOPBACK,
        port: int = 0,
        s3_endpoint_url: str | None = None,
        s3_access_key: str = "testing",
        s3_secret_key: str = "testing",
        s3_region: str = "us-east-1",
        credentials: Mapping[str, str] | None = None,
        verify_signatures: bool = True,
        seed: int = 0,
    ) -> None:
        self.host = host
        self.port = port
        self.s3_endpoint_url = s3_endpoint_url
        self.s3_access_key = s3_access_key
        self.s3_secret_key = s3_secret_key
        self.s3_region = s3_region
        self.verify_signatures = verify_signatures
        # Controls: plain attributes, read once per request (assignment is atomic in Python).
        self.latency_s: float = 0.0
        self.throttle_rate: float = 0.0
        self.error_rate: float = 0.0
        self.throttle_every: int | None = None
        self.tps_quota: float | None = None
        self.quota_error: str = "ProvisionedThroughputExceededException"
        self._seed = seed
        self._random = random.Random(seed)
        self._credentials: dict[str, str] = dict(credentials or {"testing": "testing"})
        self._expired: set[str] = set()
        self._lock = threading.Lock()
        self._state = _State()
        self._s3: S3Client | None = None
        self._s3_for: str | None = None
        self._signing = threading.local()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.custom_labels = CustomLabelsService(self._read_s3, self._write_s3, _labels_for)

    # ---- lifecycle -----------------------------------------------------------------------

    @property
    def endpoint_url(self) -> str:
        if self._server is None:
            raise RuntimeError("The fake Rekognition endpoint is not running.")
        return f"http://{self.host}:{self._server.server_address[1]}"

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("The fake Rekognition endpoint is already running.")
        handler = type("_BoundHandler", (_Handler,), {"fake": self})
        server = _Server((self.host, self.port), handler)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="fake-rekognition", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ---- controls ------------------------------------------------------------------------

    def inject(self, *codes: str) -> None:
        """Answer the next calls with these errors, one each, in order (e.g. "ThrottlingException")."""
        with self._lock:
            self._state.faults.extend(codes)

    def add_credentials(self, access_key: str, secret_key: str) -> None:
        with self._lock:
            self._credentials[access_key] = secret_key
            self._expired.discard(access_key)

    def expire_credentials(self, access_key: str) -> None:
        """Calls signed with this key get `ExpiredTokenException` from now on."""
        with self._lock:
            self._expired.add(access_key)

    def reset(self) -> None:
        """Clear counters, faults, the quota bucket and every fault/latency setting."""
        with self._lock:
            self._state = _State()
            self._random = random.Random(self._seed)
            self.latency_s = 0.0
            self.throttle_rate = 0.0
            self.error_rate = 0.0
            self.throttle_every = None
            self.tps_quota = None
            self.quota_error = "ProvisionedThroughputExceededException"
            self.custom_labels = CustomLabelsService(self._read_s3, self._write_s3, _labels_for)

    # ---- counters ------------------------------------------------------------------------

    def records(self) -> list[CallRecord]:
        with self._lock:
            return list(self._state.records)

    @property
    def calls_total(self) -> int:
        with self._lock:
            return len(self._state.records)

    @property
    def billed(self) -> int:
        """Successful DetectLabels calls: what the account would be charged for."""
        with self._lock:
            return sum(1 for r in self._state.records if r.status == 200 and r.target == DETECT_LABELS)

    @property
    def throttled(self) -> int:
        """Calls answered with an injected ThrottlingException (throttle_rate/every/inject)."""
        with self._lock:
            return self._state.throttled

    @property
    def injected_errors(self) -> int:
        with self._lock:
            return self._state.injected_errors

    @property
    def quota_rejections(self) -> int:
        """Calls rejected by the transactions-per-second quota."""
        with self._lock:
            return self._state.quota_rejections

    @property
    def s3_reads(self) -> int:
        """Objects the endpoint fetched from S3 (Image.S3Object calls)."""
        with self._lock:
            return self._state.s3_reads

    @property
    def bytes_received(self) -> int:
        """Total request body bytes received (an S3Object call sends a few hundred)."""
        with self._lock:
            return self._state.bytes_received

    def calls_by_target(self) -> Counter[str]:
        with self._lock:
            return Counter(r.target for r in self._state.records)

    def calls_by_image(self, *, billed_only: bool = False) -> Counter[str]:
        """Calls per image key (`s3://bucket/key` or `image_key_for_bytes`)."""
        with self._lock:
            return Counter(
                r.image
                for r in self._state.records
                if r.image is not None and (r.status == 200 or not billed_only)
            )

    # ---- request handling (called from handler threads) ----------------------------------

    def _current_state(self) -> _State:
        with self._lock:
            return self._state

    def _record(self, record: CallRecord, received: int, state: _State) -> None:
        """Count a call in the state it started under: a call still running across `reset()` is dropped."""
        with self._lock:
            state.records.append(record)
            state.bytes_received += received

    def _authenticate(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> str:
        """The caller's access key, if the SigV4 signature is valid for a known key."""
        header = headers.get("authorization", "")
        match = re.match(
            r"AWS4-HMAC-SHA256\s+Credential=([^/\s]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request,\s*"
            r"SignedHeaders=([^,\s]+),\s*Signature=([0-9a-f]+)",
            header,
        )
        if match is None:
            raise _error(
                "UnrecognizedClientException", "Missing or malformed AWS4-HMAC-SHA256 authorization."
            )
        access_key, _day, region, service, signed, signature = match.groups()
        self._signing.region = region
        with self._lock:
            secret = self._credentials.get(access_key)
            expired = access_key in self._expired
        if secret is None:
            raise _error("UnrecognizedClientException")
        if expired:
            raise _error("ExpiredTokenException")
        if service != "rekognition":
            raise _error(
                "InvalidSignatureException", "Credential should be scoped to correct service: 'rekognition'."
            )
        if self.verify_signatures:
            names = signed.split(";")
            request = AWSRequest(
                method=method,
                url=f"http://{headers.get('host', self.host)}{path}",
                data=body,
                headers={name: headers.get(name, "") for name in names},
            )
            request.context["timestamp"] = headers.get("x-amz-date", "")
            signer = SigV4Auth(Credentials(access_key, secret), "rekognition", region)
            canonical = signer.canonical_request(request)
            expected = signer.signature(signer.string_to_sign(request, canonical), request)
            if expected != signature:
                raise _error("InvalidSignatureException")
        return access_key

    def _check_quota(self) -> None:
        quota = self.tps_quota
        if quota is None or quota <= 0:
            return
        with self._lock:
            now = time.monotonic()
            state = self._state
            burst = max(1.0, quota)
            if state.refilled_at == 0.0:
                state.tokens = burst
            else:
                state.tokens = min(burst, state.tokens + (now - state.refilled_at) * quota)
            state.refilled_at = now
            if state.tokens >= 1.0:
                state.tokens -= 1.0
                return
            state.quota_rejections += 1
        raise _error(self.quota_error)

    def _inject_faults(self) -> None:
        with self._lock:
            state = self._state
            code: str | None = state.faults.popleft() if state.faults else None
            if code is None:
                state.arrivals += 1
                every = self.throttle_every
                if (every and state.arrivals % every == 0) or (
                    self.throttle_rate and self._random.random() < self.throttle_rate
                ):
                    code = "ThrottlingException"
                elif self.error_rate and self._random.random() < self.error_rate:
                    code = "InternalServerError"
            if code is None:
                return
            if code == "ThrottlingException":
                state.throttled += 1
            else:
                state.injected_errors += 1
        raise _error(code)

    def _s3_client(self) -> S3Client:
        with self._lock:
            if self._s3 is None or self._s3_for != self.s3_endpoint_url:
                if self.s3_endpoint_url is None:
                    raise _error("InvalidS3ObjectException", "This endpoint has no S3 server configured.")
                self._s3 = boto3.session.Session(
                    aws_access_key_id=self.s3_access_key,
                    aws_secret_access_key=self.s3_secret_key,
                    region_name=self.s3_region,
                ).client(
                    "s3",
                    endpoint_url=self.s3_endpoint_url,
                    config=Config(retries={"mode": "standard", "max_attempts": 2}, max_pool_connections=64),
                )
                self._s3_for = self.s3_endpoint_url
            return self._s3

    def _fetch_s3(self, spec: Mapping[str, Any]) -> bytes:
        bucket, name, version = spec.get("Bucket"), spec.get("Name"), spec.get("Version")
        if not isinstance(bucket, str) or not isinstance(name, str) or not bucket or not name:
            raise _error("InvalidParameterException", "S3Object requires Bucket and Name.")
        client = self._s3_client()
        try:
            if isinstance(version, str):
                head = client.head_object(Bucket=bucket, Key=name, VersionId=version)
            else:
                head = client.head_object(Bucket=bucket, Key=name)
            if head["ContentLength"] > MAX_S3_OBJECT:
                raise _error("ImageTooLargeException", "S3 object exceeds the 15 MB limit.")
            if isinstance(version, str):
                got = client.get_object(Bucket=bucket, Key=name, VersionId=version)
            else:
                got = client.get_object(Bucket=bucket, Key=name)
            body = got["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            raise _error("InvalidS3ObjectException") from exc
        with self._lock:
            self._state.s3_reads += 1
        return body

    def _read_s3(self, bucket: str, key: str) -> bytes:
        body: bytes = self._s3_client().get_object(Bucket=bucket, Key=key)["Body"].read()
        return body

    def _write_s3(self, bucket: str, key: str, data: bytes) -> None:
        self._s3_client().put_object(Bucket=bucket, Key=key, Body=data)

    def _custom_labels(self, operation: str, request: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
        image: bytes | None = None
        image_key: str | None = None
        if operation == "DetectCustomLabels":
            self._check_quota()
            self._inject_faults()
            image, image_key = self._load_image(request)
        try:
            return self.custom_labels.handle(operation, request, image), image_key
        except CustomLabelsError as exc:
            raise ServiceError(exc.code, exc.message) from exc

    def _load_image(self, request: Mapping[str, Any]) -> tuple[bytes, str]:
        image = request.get("Image")
        if not isinstance(image, dict) or ("Bytes" in image) == ("S3Object" in image):
            raise _error("InvalidParameterException", "Image must contain exactly one of Bytes or S3Object.")
        if "Bytes" in image:
            try:
                data = base64.b64decode(image["Bytes"], validate=True)
            except (binascii.Error, TypeError, ValueError) as exc:
                raise _error("InvalidParameterException", "Image.Bytes is not valid base64.") from exc
            if not data:
                raise _error("InvalidParameterException", "Image.Bytes is empty.")
            if len(data) > MAX_BYTES:
                raise _error("ImageTooLargeException", "Image.Bytes exceeds the 5 MB limit.")
            return data, image_key_for_bytes(data)
        spec = image["S3Object"]
        if not isinstance(spec, dict):
            raise _error("InvalidParameterException", "Image.S3Object must be an object.")
        key = f"s3://{spec.get('Bucket')}/{spec.get('Name')}"
        if spec.get("Version"):
            key += f"?versionId={spec['Version']}"
        return self._fetch_s3(spec), key

    def detect_labels(self, request: Mapping[str, Any], data: bytes) -> dict[str, Any]:
        """The DetectLabels answer for already-loaded image bytes."""
        if not (data.startswith(JPEG_MAGIC) or data.startswith(PNG_MAGIC)):
            raise _error("InvalidImageFormatException")
        try:
            image = Image.open(io.BytesIO(data))
            width, height = image.size
        except Exception as exc:
            raise _error("InvalidImageFormatException") from exc
        if image.format not in ("JPEG", "MPO", "PNG"):
            raise _error("InvalidImageFormatException")
        if min(width, height) < MIN_SIDE:
            raise _error(
                "InvalidParameterException",
                f"Image is {width}x{height}; the minimum is {MIN_SIDE}x{MIN_SIDE} pixels.",
            )
        if max(width, height) > MAX_SIDE:
            raise _error(
                "InvalidImageFormatException",
                f"Image is {width}x{height}; the maximum side is {MAX_SIDE} pixels.",
            )
        min_conf = request.get("MinConfidence", DEFAULT_MIN_CONFIDENCE)
        max_labels = request.get("MaxLabels", 1000)
        if not isinstance(min_conf, int | float) or not 0 <= min_conf <= 100:
            raise _error("InvalidParameterException", "MinConfidence must be between 0 and 100.")
        if not isinstance(max_labels, int) or max_labels < 0:
            raise _error("InvalidParameterException", "MaxLabels must be a non-negative integer.")
        features = request.get("Features") or ["GENERAL_LABELS"]
        unknown = set(features) - {"GENERAL_LABELS", "IMAGE_PROPERTIES"}
        if unknown:
            raise _error("InvalidParameterException", f"Unknown Features: {sorted(unknown)}")
        settings = request.get("Settings") or {}
        response: dict[str, Any] = {"Labels": [], "LabelModelVersion": LABEL_MODEL_VERSION}
        properties = "IMAGE_PROPERTIES" in features
        color_limit = int((settings.get("ImageProperties") or {}).get("MaxDominantColors", 10))
        if "GENERAL_LABELS" in features:
            labels = [label for label in _labels_for(data) if label["Confidence"] >= min_conf]
            labels = _apply_filters(labels, settings.get("GeneralLabels") or {})
            labels = labels[:max_labels]
            if properties:
                _add_instance_colors(labels, image, color_limit)
            response["Labels"] = labels
        if properties:
            response["ImageProperties"] = _image_properties(image, color_limit)
        return response

    def handle(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, Any], CallRecord]:
        target = headers.get("x-amz-target", "")
        image_key: str | None = None
        access_key: str | None = None
        self._signing.region = None
        try:
            if method != "POST" or path != "/":
                raise _error("UnknownOperationException", f"{method} {path} is not a Rekognition operation.")
            access_key = self._authenticate(method, path, headers, body)
            if not target.startswith(TARGET_PREFIX):
                raise _error("UnknownOperationException", "Missing or unknown X-Amz-Target.")
            operation = target.removeprefix(TARGET_PREFIX)
            if target != DETECT_LABELS and operation not in CUSTOM_LABELS_OPERATIONS:
                raise _error("UnknownOperationException", f"{target} is not implemented by this fake.")
            try:
                request = json.loads(body or b"{}")
            except ValueError as exc:
                raise ServiceError("SerializationException", "Request body is not JSON.") from exc
            if not isinstance(request, dict):
                raise ServiceError("SerializationException", "Request body must be a JSON object.")
            latency = self.latency_s
            if latency > 0:
                time.sleep(latency)
            if operation in CUSTOM_LABELS_OPERATIONS:
                payload, image_key = self._custom_labels(operation, request)
            else:
                self._check_quota()
                self._inject_faults()
                data, image_key = self._load_image(request)
                payload = self.detect_labels(request, data)
            status, error = 200, None
        except ServiceError as exc:
            status, payload, error = exc.status, {"__type": exc.code, "Message": exc.message}, exc.code
        except Exception as exc:  # a bug here must still answer like the service would
            status, payload, error = (
                500,
                {"__type": "InternalServerError", "Message": repr(exc)},
                "InternalServerError",
            )
        region = self._signing.region
        record = CallRecord(time.monotonic(), target, image_key, status, error, access_key, region)
        return status, payload, record


def _apply_filters(labels: list[dict[str, Any]], general: Mapping[str, Any]) -> list[dict[str, Any]]:
    include = set(general.get("LabelInclusionFilters") or [])
    exclude = set(general.get("LabelExclusionFilters") or [])
    include_cat = set(general.get("LabelCategoryInclusionFilters") or [])
    exclude_cat = set(general.get("LabelCategoryExclusionFilters") or [])

    def keep(label: Mapping[str, Any]) -> bool:
        categories = {c["Name"] for c in label["Categories"]}
        if include and label["Name"] not in include:
            return False
        if include_cat and not categories & include_cat:
            return False
        return label["Name"] not in exclude and not categories & exclude_cat

    return [label for label in labels if keep(label)]


def _add_instance_colors(labels: Iterable[dict[str, Any]], image: Image.Image, limit: int) -> None:
    width, height = image.size
    for label in labels:
        for instance in label["Instances"]:
            box = instance["BoundingBox"]
            left = max(0, int(box["Left"] * width))
            top = max(0, int(box["Top"] * height))
            right = min(width, max(left + 1, int((box["Left"] + box["Width"]) * width)))
            bottom = min(height, max(top + 1, int((box["Top"] + box["Height"]) * height)))
            instance["DominantColors"] = _dominant_colors(
                image.crop((left, top, right, bottom)), min(limit, 3)
            )


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512
    allow_reuse_address = True


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go in separate writes: avoid 40 ms ACK stalls
    server_version = "FakeRekognition/1.0"
    timeout = 60  # idle keep-alive connections are closed after this
    fake: ClassVar[FakeRekognition]

    def do_POST(self) -> None:
        self._serve("POST")

    def do_GET(self) -> None:
        self._serve("GET")

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        headers = {key.lower(): value for key, value in self.headers.items()}
        state = self.fake._current_state()
        status, payload, record = self.fake.handle(method, self.path, headers, body)
        data = json.dumps(payload, separators=(",", ":")).encode()
        self.fake._record(record, len(body), state)  # before answering: a client may count right after
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests and benchmarks
        return


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A local Rekognition DetectLabels endpoint.")
    parser.add_argument(
        "--s3-endpoint", help="S3 server for Image.S3Object calls (e.g. http://127.0.0.1:8333)"
    )
    parser.add_argument("--s3-access-key", default="testing")
    parser.add_argument("--s3-secret-key", default="testing")
    parser.add_argument("--host", default=LOOPBACK)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--access-key", default="testing", help="access key clients must sign with")
    parser.add_argument("--secret-key", default="testing")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every call")
    parser.add_argument("--throttle-rate", type=float, default=0.0)
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--tps", type=float, default=None, help="transactions-per-second quota")
    args = parser.parse_args(argv)
    fake = FakeRekognition(
        host=args.host,
        port=args.port,
        s3_endpoint_url=args.s3_endpoint,
        s3_access_key=args.s3_access_key,
        s3_secret_key=args.s3_secret_key,
        credentials={args.access_key: args.secret_key},
    )
    with fake:
        fake.latency_s = args.latency
        fake.throttle_rate = args.throttle_rate
        fake.error_rate = args.error_rate
        fake.tps_quota = args.tps
        print(f"export AWS_ENDPOINT_URL_REKOGNITION={fake.endpoint_url}")
        print(f"export AWS_ACCESS_KEY_ID={args.access_key} AWS_SECRET_ACCESS_KEY={args.secret_key}")
        print("# Ctrl-C to stop", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()

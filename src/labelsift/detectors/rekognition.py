"""Amazon Rekognition DetectLabels: the reference detector backend.

Endpoints, credentials and regions come from the standard AWS configuration only (profiles,
environment, `AWS_ENDPOINT_URL_REKOGNITION`, ...). Every label the service returns is kept, with
parents, aliases, categories and instances: what counts as a hit is decided later by selection.

How an image is sent:
- an `s3://` JPEG/PNG object of at most 15 MB (size and sides within the limits when known),
  whose bucket is in a region where Rekognition is offered: `Image.S3Object` (with the version
  when known), through a client in the bucket's region. No bytes are read here.
- everything else (local files, other formats, oversize objects, buckets in regions without
  Rekognition): `Image.Bytes`, prepared by `labelsift.imageprep` (transcoded/downscaled if needed).
  The object is read as a file (local in place, S3 spooled to disk; over 1 GiB it is skipped
  `TooLarge` unread) and its header checked against the pixel budget before any decode
  (`ImageTooLarge`: not decoded, not sent, not paid).
- an S3Object call the service refuses for the image itself (format, size, dimensions) is retried
  once as prepared bytes.

Errors become `DetectorError(code, message, billable, fatal)`. Codes are the service's error
codes (`InvalidS3ObjectException`, `ThrottlingException`, ...) or, for errors raised before or
around the call, `ImageTooSmall`, `CorruptImage`, `ImageTooLarge`, `ReadFailed`, `NoRegion`,
`NoCredentials`, `EndpointConnectionError`, `Timeout`. Rekognition charges successful calls only,
so errors are not billable, except a read timeout: the service may have answered (and charged)
after the client gave up, so budgets count it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
    ReadTimeoutError,
)

from labelsift.detectors.base import Detection, DetectorError, ImageInput, Limiter, open_input
from labelsift.imageprep import ImagePrepError, prepare_for_rekognition
from labelsift.models import (
    DetectorInfo,
    DominantColor,
    ImageProperties,
    ImageQuality,
    Instance,
    Label,
    RegionProperties,
)
from labelsift.service_limits import DETECT_LABELS_MAX_S3_OBJECT as MAX_S3_OBJECT
from labelsift.service_limits import DETECT_LABELS_MAX_SIDE as MAX_SIDE
from labelsift.service_limits import DETECT_LABELS_MIN_SIDE as MIN_SIDE
from labelsift.service_limits import DETECT_LABELS_S3_FORMATS as S3_OBJECT_FORMATS
from labelsift.storage import Storage, StorageError, is_s3, split_s3

if TYPE_CHECKING:
    from mypy_boto3_rekognition import RekognitionClient
    from mypy_boto3_rekognition.type_defs import DetectLabelsResponseTypeDef, ImageTypeDef, S3ObjectTypeDef

_EXTENSION_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".jpe": "JPEG", ".png": "PNG"}

# The service's answer about the image itself: worth one retry as prepared bytes.
_IMAGE_REJECTIONS = frozenset(
    {"InvalidImageFormatException", "ImageTooLargeException", "InvalidParameterException"}
)
_CREDENTIAL_CODES = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "InvalidClientTokenId",
        "ExpiredToken",
        "ExpiredTokenException",
        "RequestExpired",
        "MissingAuthenticationToken",
        "MissingAuthenticationTokenException",
        "AuthFailure",
    }
)
_ACCESS_CODES = frozenset({"AccessDeniedException", "AccessDenied", "UnauthorizedOperation"})

_ADVICE: Mapping[str, str] = {
    "InvalidS3ObjectException": (
        "Rekognition could not read the object: check that the key (and version) exists, that the "
        "bucket is in the same region as the Rekognition call, and that the caller may s3:GetObject "
        "(and kms:Decrypt for SSE-KMS objects)."
    ),
    "InvalidParameterException": (
        "the request was refused as invalid; usually an image side under 80 px or over 10000 px."
    ),
    "ImageTooLargeException": "the image is over Rekognition's limits (5 MB as bytes, 15 MB from S3).",
    "InvalidImageFormatException": "Rekognition takes JPEG and PNG only; the image is neither or is damaged.",
    "AccessDeniedException": (
        "the credentials may not call rekognition:DetectLabels; grant it (and s3:GetObject on the "
        "source) or use another profile. Stopping: no other image can succeed."
    ),
    "InternalServerError": "Rekognition failed internally after all retries; scan again with --retry-errors.",
    "ThrottlingException": (
        "Rekognition kept throttling after all retries; lower --workers or set a rate limit, then scan "
        "again with --retry-errors."
    ),
    "ProvisionedThroughputExceededException": (
        "the account's transactions-per-second quota was exceeded after all retries; set a rate limit "
        "under the quota (or ask AWS to raise it), then scan again with --retry-errors."
    ),
}


class RateLimiter:
    """Spaces calls at least 1/rate seconds apart across all threads (a token bucket of one)."""

    def __init__(self, rate: float) -> None:
        if not rate > 0:
            raise ValueError("rate_limit must be a positive number of requests per second")
        self.rate = rate
        self._interval = 1.0 / rate
        self._lock = threading.Lock()
        self._next = 0.0

    def acquire(self) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self._interval
        if start > now:
            time.sleep(start - now)


def _format_of(image: ImageInput) -> str | None:
    if image.format:
        return "JPEG" if image.format.upper() in ("JPEG", "MPO", "JPG") else image.format.upper()
    dot = image.uri.rfind(".")
    return _EXTENSION_FORMATS.get(image.uri[dot:].lower()) if dot >= 0 else None


def _sides_ok(image: ImageInput) -> bool:
    sides = [side for side in (image.width, image.height) if side is not None]
    return all(MIN_SIDE <= side <= MAX_SIDE for side in sides)


def _clip(value: float, low: float, high: float) -> float:
    return min(high, max(low, value))


def _to_label(raw: Mapping[str, Any]) -> Label:
    confidence = _clip(float(raw.get("Confidence", 0.0)), 0.0, 100.0)
    instances: list[Instance] = []
    for item in raw.get("Instances") or []:
        box = item.get("BoundingBox") or {}
        instances.append(
            Instance(
                left=_clip(float(box.get("Left", 0.0)), -0.5, 1.5),
                top=_clip(float(box.get("Top", 0.0)), -0.5, 1.5),
                width=_clip(float(box.get("Width", 0.0)), 0.0, 2.0),
                height=_clip(float(box.get("Height", 0.0)), 0.0, 2.0),
                confidence=_clip(float(item.get("Confidence", confidence)), 0.0, 100.0),
            )
        )
    return Label(
        name=str(raw["Name"]),
        confidence=confidence,
        parents=[str(p["Name"]) for p in raw.get("Parents") or []],
        aliases=[str(a["Name"]) for a in raw.get("Aliases") or []],
        categories=[str(c["Name"]) for c in raw.get("Categories") or []],
        instances=instances,
    )


def _quality(raw: Mapping[str, Any] | None) -> ImageQuality:
    raw = raw or {}
    scores = {key.lower(): raw.get(key) for key in ("Brightness", "Sharpness", "Contrast")}
    return ImageQuality(**{key: _clip(float(v), 0.0, 100.0) for key, v in scores.items() if v is not None})


def _colors(raw: Any) -> list[DominantColor]:
    colors = []
    for item in raw or []:
        colors.append(
            DominantColor(
                red=int(item.get("Red", 0)),
                green=int(item.get("Green", 0)),
                blue=int(item.get("Blue", 0)),
                hex_code=item.get("HexCode"),
                css_color=item.get("CSSColor"),
                simplified_color=item.get("SimplifiedColor"),
                pixel_percent=_clip(float(item.get("PixelPercent", 0.0)), 0.0, 100.0),
            )
        )
    return colors


def _region(raw: Mapping[str, Any] | None) -> RegionProperties | None:
    if not raw:
        return None
    return RegionProperties(
        quality=_quality(raw.get("Quality")), dominant_colors=_colors(raw.get("DominantColors"))
    )


def to_image_properties(raw: Mapping[str, Any]) -> ImageProperties:
    """DetectLabels' `ImageProperties` answer as the manifest keeps it (snake_case, every field)."""
    return ImageProperties(
        quality=_quality(raw.get("Quality")),
        dominant_colors=_colors(raw.get("DominantColors")),
        foreground=_region(raw.get("Foreground")),
        background=_region(raw.get("Background")),
    )


class RekognitionDetector:
    """`Detector` backed by Amazon Rekognition DetectLabels. Thread-safe; share one per run."""

    OPERATION = "DetectLabels"

    def __init__(
        self,
        storage: Storage | None = None,
        *,
        session: boto3.session.Session | None = None,
        region: str | None = None,
        min_confidence: float = 50.0,
        max_labels: int = 1000,
        retry_mode: Literal["standard", "adaptive"] = "standard",
        max_attempts: int = 5,
        rate_limit: float | None = None,
        limiter: Limiter | None = None,
        max_pool_connections: int = 50,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        image_properties: bool = False,
    ) -> None:
        if not 0.0 <= min_confidence <= 100.0:
            raise ValueError("min_confidence must be between 0 and 100")
        if not 1 <= max_labels <= 1000:
            raise ValueError("max_labels must be between 1 and 1000")
        if retry_mode not in ("standard", "adaptive"):
            raise ValueError("retry_mode must be 'standard' or 'adaptive'")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._session = session or boto3.session.Session()
        self._storage = storage if storage is not None else Storage(session=self._session)
        self._region = region or self._session.region_name
        self.min_confidence = min_confidence
        self.max_labels = max_labels
        self.image_properties = image_properties
        self._config = Config(
            retries={"mode": retry_mode, "total_max_attempts": max_attempts},
            max_pool_connections=max_pool_connections,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            user_agent_extra="labelsift",
        )
        # `limiter` (e.g. one shared by every Ray actor) takes the place of a per-process `rate_limit`.
        self._limiter = limiter or (RateLimiter(rate_limit) if rate_limit is not None else None)
        self._lock = threading.Lock()
        self._clients: dict[str, RekognitionClient] = {}
        self._offered: frozenset[str] | None = None
        self._bucket_regions: dict[str, str | None] = {}
        self._model_version: str | None = None

    # ---- Detector protocol -------------------------------------------------------------

    @property
    def info(self) -> DetectorInfo:
        with self._lock:
            return DetectorInfo(name="rekognition", model_version=self._model_version)

    @property
    def billable(self) -> bool:
        return True

    @property
    def region(self) -> str | None:
        return self._region

    def detect(self, image: ImageInput) -> Detection:
        if not self._region:
            raise DetectorError(
                "NoRegion",
                "no AWS region is configured for Rekognition; set AWS_REGION (or a profile's region) "
                "or pass --region.",
                fatal=True,
            )
        s3_region = self._s3_object_region(image)
        if s3_region is not None:
            bucket, key = split_s3(image.uri)
            s3_object: S3ObjectTypeDef = {"Bucket": bucket, "Name": key}
            if image.version_id:
                s3_object["Version"] = image.version_id
            try:
                return self._call(s3_region, {"S3Object": s3_object}, image.uri)
            except DetectorError as error:
                if error.code not in _IMAGE_REJECTIONS:
                    raise
                # The service refused the image itself: prepared bytes may still be accepted.
        return self._call(self._region, {"Bytes": self._prepared_bytes(image)}, image.uri)

    # ---- routing -----------------------------------------------------------------------

    def _s3_object_region(self, image: ImageInput) -> str | None:
        """The region to call with Image.S3Object, or None to send bytes."""
        if not is_s3(image.uri) or _format_of(image) not in S3_OBJECT_FORMATS:
            return None
        if image.size is not None and image.size > MAX_S3_OBJECT:
            return None
        if not _sides_ok(image):
            return None
        bucket, key = split_s3(image.uri)
        if not key:
            return None
        bucket_region = self._bucket_region(bucket)
        if bucket_region is None or bucket_region not in self._offered_regions():
            return None
        return bucket_region

    def _bucket_region(self, bucket: str) -> str | None:
        with self._lock:
            if bucket in self._bucket_regions:
                return self._bucket_regions[bucket]
        try:
            region: str | None = self._storage.bucket_region(bucket)
        except StorageError as error:
            if error.fatal:
                raise DetectorError(error.code, f"s3://{bucket}: {error.message}", fatal=True) from error
            region = None  # unknown: send bytes, which go through the storage layer's own handling
        with self._lock:
            self._bucket_regions[bucket] = region
        return region

    def _offered_regions(self) -> frozenset[str]:
        with self._lock:
            if self._offered is None:
                regions = set(self._session.get_available_regions("rekognition"))
                # The configured region is trusted even if this botocore's list predates it.
                if self._region:
                    regions.add(self._region)
                self._offered = frozenset(regions)
            return self._offered

    def client(self, region: str | None = None) -> RekognitionClient:
        """The (cached, thread-safe) Rekognition client for a region; the default region if None."""
        name = region or self._region
        if not name:
            raise DetectorError("NoRegion", "no AWS region is configured for Rekognition.", fatal=True)
        with self._lock:
            client = self._clients.get(name)
            if client is None:
                try:
                    client = self._session.client("rekognition", region_name=name, config=self._config)
                except BotoCoreError as error:
                    raise _map_botocore(error, f"a Rekognition client for {name}") from error
                if self._limiter is not None:
                    limiter = self._limiter

                    def throttle(**_: object) -> None:
                        limiter.acquire()

                    # Fires once per HTTP attempt, retries included: the quota counts attempts.
                    client.meta.events.register(f"before-send.rekognition.{self.OPERATION}", throttle)
                self._clients[name] = client
            return client

    def _prepared_bytes(self, image: ImageInput) -> bytes:
        """The image as bytes Rekognition takes, read as a file and checked against the pixel budget."""
        try:
            with open_input(image) as source:
                return prepare_for_rekognition(source, image.uri).data
        except StorageError as error:
            if error.code == "TooLarge":
                raise DetectorError(error.code, error.message) from error
            raise DetectorError(
                "ReadFailed",
                f"{image.uri}: could not read the image ({error.code}: {error.message})",
                fatal=error.fatal,
            ) from error
        except ImagePrepError as error:
            named = error.message if image.uri in error.message else f"{image.uri}: {error.message}"
            raise DetectorError(error.code, named, billable=False) from error
        except OSError as error:
            raise DetectorError("ReadFailed", f"{image.uri}: could not read the image ({error}).") from error

    # ---- the call ----------------------------------------------------------------------

    def _call(self, region: str, image: ImageTypeDef, uri: str) -> Detection:
        client = self.client(region)
        try:
            response: DetectLabelsResponseTypeDef = client.detect_labels(
                Image=image,
                MaxLabels=self.max_labels,
                MinConfidence=self.min_confidence,
                Features=["GENERAL_LABELS", "IMAGE_PROPERTIES"]
                if self.image_properties
                else ["GENERAL_LABELS"],
            )
        except ClientError as error:
            raise _map_client_error(error, uri, region) from error
        except (BotoCoreError, ParamValidationError) as error:
            raise _map_botocore(error, uri) from error
        version = response.get("LabelModelVersion")
        if version:
            with self._lock:
                self._model_version = version
        labels = [_to_label(raw) for raw in response.get("Labels", [])]
        raw_properties = response.get("ImageProperties")
        properties = to_image_properties(raw_properties) if raw_properties else None
        return Detection(labels=labels, model_version=version, image_properties=properties)


def _map_client_error(error: ClientError, uri: str, region: str) -> DetectorError:
    details = error.response.get("Error", {})
    code = str(details.get("Code") or "Unknown")
    service_message = str(details.get("Message") or "").strip()
    attempts = error.response.get("ResponseMetadata", {}).get("RetryAttempts", 0)
    said = f" (Rekognition said: {service_message})" if service_message else ""
    if code in _CREDENTIAL_CODES:
        return DetectorError(
            code,
            f"{uri}: the AWS credentials were rejected by Rekognition in {region}{said}; check the "
            "access key, secret and session token (refresh expired SSO/STS credentials). Stopping: no "
            "other image can succeed.",
            fatal=True,
        )
    if code in _ACCESS_CODES:
        return DetectorError(code, f"{uri}: {_ADVICE['AccessDeniedException']}{said}", fatal=True)
    advice = _ADVICE.get(code, "the call failed")
    if attempts:
        advice += f" ({attempts} retries made)"
    return DetectorError(code, f"{uri}: {advice}{said}")


def _map_botocore(error: Exception, uri: str) -> DetectorError:
    if isinstance(error, NoCredentialsError | PartialCredentialsError):
        return DetectorError(
            "NoCredentials",
            f"{uri}: no usable AWS credentials were found; configure a profile, environment variables "
            "or a role. Stopping: no other image can succeed.",
            fatal=True,
        )
    if isinstance(error, NoRegionError):
        return DetectorError("NoRegion", f"{uri}: no AWS region is configured for Rekognition.", fatal=True)
    if isinstance(error, ReadTimeoutError):
        return DetectorError(
            "Timeout",
            f"{uri}: Rekognition did not answer in time (the call may still have been charged); "
            "scan again with --retry-errors.",
            billable=True,
        )
    if isinstance(error, ConnectionClosedError):
        return DetectorError(
            "ConnectionClosed",
            f"{uri}: the connection to Rekognition was reset before it answered, after all retries; "
            "check the network or proxy, then scan again with --retry-errors.",
        )
    if isinstance(error, ConnectTimeoutError | EndpointConnectionError):
        return DetectorError(
            "EndpointConnectionError",
            f"{uri}: could not reach the Rekognition endpoint ({error}); check the network, the region "
            "and AWS_ENDPOINT_URL_REKOGNITION, then scan again with --retry-errors.",
        )
    if isinstance(error, ParamValidationError):
        return DetectorError("InvalidParameterException", f"{uri}: the request was invalid: {error}")
    return DetectorError(type(error).__name__, f"{uri}: the Rekognition call failed: {error}")

"""What a user can do about each reason a scan recorded for skipping or failing an image."""

from __future__ import annotations

ADVICE: dict[str, str] = {
    "EmptyObject": "The object has 0 bytes: re-upload it, or delete it from the source.",
    "NotAnImage": "Not an image (the bytes are some other file type): remove it from the source.",
    "TruncatedHeader": "The file ends inside its header (a cut-off upload): re-upload the original.",
    "CorruptImage": "The image data is damaged: re-export it from the original, or drop it.",
    "TooLarge": "Above the 1 GiB object cap: downscale or recompress it, then scan again.",
    "ImageTooLarge": "Above the pixel budget: downscale it (say 8,000 px on the long side), scan again.",
    "ImageTooSmall": "Below the detector's minimum size: drop it, or upscale if it matters.",
    "UnsupportedFormat": "Convert it to JPEG or PNG, then scan again.",
    "ArchivedObject": "In Glacier or Deep Archive: restore it (S3 RestoreObject), then scan again.",
    "Vanished": "Deleted between the listing and the read: nothing to do unless it should exist.",
    "Changed": "Replaced while it was read: the next scan of this manifest reads it again.",
    "AccessDenied": "The credentials cannot read it: grant s3:GetObject, then rescan with --retry-errors.",
    "ThrottlingException": "Rekognition throttled the call: rescan with --retry-errors (and a lower --rate).",
    "ProvisionedThroughputExceededException": "Over the quota: rescan with --retry-errors, a lower --rate.",
    "InternalServerError": "A service fault: rescan with --retry-errors.",
    "InvalidImageFormatException": "Rekognition cannot read this image: convert it to JPEG or PNG.",
    "ImageTooLargeException": "Above Rekognition's size limit: downscale it and scan again.",
}

DEFAULT_ERROR = "Read the message; `labelsift scan SOURCE -o MANIFEST --retry-errors` asks again."
DEFAULT_SKIP = "Read the message: the image was not sent to the detector."


def advice_for(code: str, *, error: bool) -> str:
    return ADVICE.get(code, DEFAULT_ERROR if error else DEFAULT_SKIP)

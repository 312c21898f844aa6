"""What the AWS services labelsift calls accept, each limit defined once, from their documentation.

Rekognition DetectLabels: https://docs.aws.amazon.com/rekognition/latest/dg/limits.html
Custom Labels: https://docs.aws.amazon.com/rekognition/latest/customlabels-dg/limits.html
"""

from typing import Final

# Rekognition DetectLabels
DETECT_LABELS_MAX_BYTES: Final = 5 * 1024 * 1024  # an image sent as bytes
DETECT_LABELS_MAX_S3_OBJECT: Final = 15 * 1024 * 1024  # an image named as an S3 object
DETECT_LABELS_MIN_SIDE: Final = 80  # pixels, each side
DETECT_LABELS_MAX_SIDE: Final = 10000
DETECT_LABELS_S3_FORMATS: Final = frozenset({"JPEG", "PNG"})  # what it decodes from S3 itself

# Custom Labels: training and test images
CUSTOM_LABELS_IMAGE_FORMATS: Final = frozenset({"JPEG", "JPG", "PNG"})
CUSTOM_LABELS_MIN_SIDE: Final = 64
CUSTOM_LABELS_MAX_SIDE: Final = 4096
CUSTOM_LABELS_MAX_IMAGE_BYTES: Final = 15 * 1024 * 1024
CUSTOM_LABELS_MAX_ASPECT: Final = 20.0  # the longer side over the shorter

# Custom Labels: a Ground Truth manifest it imports
MANIFEST_MAX_LINES: Final = 250_000
MANIFEST_MAX_BYTES: Final = 1_000_000_000
MANIFEST_MAX_LABELS_PER_IMAGE: Final = 50
MANIFEST_MAX_BOXES_PER_IMAGE: Final = 50
MANIFEST_MIN_CLASSIFICATION_LABELS: Final = 2
MANIFEST_MAX_CLASSIFICATION_LABELS: Final = 250
MANIFEST_MAX_TEST_IMAGES_PER_LABEL: Final = 1000
MANIFEST_SCALED_LONGEST_SIDE: Final = 1280  # boxes are checked on the image scaled to this
MANIFEST_MAX_INVALID_SHARE: Final = 0.20  # a manifest with more invalid lines fails to import

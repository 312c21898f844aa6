"""labelsift: turn a dirty pile of images into clean, annotated training data."""

__version__ = "0.1.0"

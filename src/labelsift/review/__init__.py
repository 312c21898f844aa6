"""The local review page: people decide the images whose confidence lies in a band."""

from labelsift.review.server import BandItem, ReviewServer, collect_band, run_review, serve_review

__all__ = ["BandItem", "ReviewServer", "collect_band", "run_review", "serve_review"]

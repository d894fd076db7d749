"""Attribute sources (CelebA text files, CSV, Parquet) to the attribute table."""

from uncollapse.pipeline.attributes.build import build_attributes, read_attributes

__all__ = ["build_attributes", "read_attributes"]

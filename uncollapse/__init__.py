"""uncollapse: stop contrastive and representation runs collapsing because of their data."""

__version__ = "0.1.0"

"""uncollapse: stop contrastive and representation runs collapsing because of their data."""

__all__ = ["__version__"]

__version__ = "0.1.0"

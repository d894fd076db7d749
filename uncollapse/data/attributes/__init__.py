"""Attribute tables for attribute-flip training: contract in ``contract``; the torch
``AttributeFlipDataset`` in ``dataset``."""

__all__: list[str] = []

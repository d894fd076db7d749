"""Sequence files for next-vector training: contract and NPZ keys in ``contract``; torch
Datasets in ``dataset`` and ``hard_negatives``."""

__all__: list[str] = []

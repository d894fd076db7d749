"""The SHA-256 of a file, read in blocks: one function for the cache's keys, the shards'
manifests and the comparison of a resumed run's inputs."""

from __future__ import annotations

import hashlib
import os

__all__ = ["BLOCK", "sha256_file"]

BLOCK = 1 << 20
"""Bytes read at a time."""


def sha256_file(path: str | os.PathLike) -> str:
    """The hex SHA-256 of the file at ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()

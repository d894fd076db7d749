"""Inputs that expand when read: compressed CSV and JSON-lines files, and deflated NPZ members.

polars reads a CSV or JSON-lines file compressed with gzip, zlib or zstd as if it were plain
text (it finds the compression from the first bytes, whatever the file is called), and numpy
inflates a deflated NPZ member whole. A few MB on disk can hold GBs: a 6.8 MB gzip of 2 GB of
captions took ``validate captions`` to 5 GB of memory. So before such an input is read, the
bytes it expands to are measured (a compressed text file is decompressed once as a stream and
counted; an NPZ member's size is read from the zip directory, which bounds what ``zipfile``
inflates), and an input that expands past the limit is refused (exit 2) with a message naming
the limit and how to raise it.

The limit is ``UNCOLLAPSE_MAX_DECOMPRESSED``: bytes, or a number with a ``K``, ``M``, ``G`` or
``T`` suffix (powers of 1024); default ``2G``. Uncompressed inputs are not limited: their size on
disk is what they hold.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import re
import zlib
from typing import BinaryIO

import pyarrow as pa

from uncollapse.errors import InputError, ToolError

__all__ = [
    "DAMAGED", "DEFAULT_LIMIT", "ENV", "MAGIC", "check_expansion", "compression", "first_line",
    "human", "limit", "open_decompressed", "too_large"
]

ENV = "UNCOLLAPSE_MAX_DECOMPRESSED"
DEFAULT_LIMIT = 2 << 30
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_BLOCK = 1 << 20

# the prefixes polars decompresses (polars-io's compression detection)
MAGIC = ((b"\x1f\x8b", "gzip"), (b"\x28\xb5\x2f\xfd", "zstd"), (b"\x78\x01", "zlib"),
         (b"\x78\x5e", "zlib"), (b"\x78\x9c", "zlib"), (b"\x78\xda", "zlib"))


def limit() -> int:
    """The most bytes a compressed input may expand to (``UNCOLLAPSE_MAX_DECOMPRESSED``)."""
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return DEFAULT_LIMIT
    match = re.fullmatch(r"(\d+)\s*([KMGT]?)i?B?", raw, flags=re.IGNORECASE)
    if not match or int(match.group(1)) == 0:
        raise ToolError(f"{ENV}={raw!r} is not a size; give bytes or a number with K, M, G or "
                        f"T, such as {ENV}=8G (default {human(DEFAULT_LIMIT)})")
    return int(match.group(1)) * _UNITS[match.group(2).upper()]


def human(size: int) -> str:
    for unit in ("T", "G", "M", "K"):
        if size >= _UNITS[unit] and size % _UNITS[unit] == 0:
            return f"{size // _UNITS[unit]}{unit}"
    return f"{size} bytes"


def compression(path: str | os.PathLike, source: BinaryIO | None = None) -> str | None:
    """``gzip``, ``zlib`` or ``zstd`` when the file (or the buffer ``source``) starts as
    polars' compressed inputs do."""
    try:
        with _opened(path, source) as fh:
            head = fh.read(4)
    except OSError:
        return None  # the reader reports an unreadable file with its own message
    return next((kind for magic, kind in MAGIC if head.startswith(magic)), None)


def too_large(path: str | os.PathLike, what: str, size: str, cap: int) -> InputError:
    return InputError(path, f"{what} expands to {size} when read, more than the limit on "
                            f"decompressed input ({human(cap)}, {ENV}). If the file is what "
                            f"you meant to read, raise the limit, e.g. {ENV}=16G, or "
                            "decompress it yourself first")


@contextlib.contextmanager
def _opened(path, source: BinaryIO | None):
    """The file at ``path`` opened for reading, or the buffer ``source`` at its start (its
    position is restored afterwards)."""
    if source is None:
        with open(path, "rb") as fh:
            yield fh
        return
    position = source.tell()
    try:
        source.seek(position)
        yield source
    finally:
        source.seek(position)


def _decompressed_blocks(fh: BinaryIO, kind: str):
    """The decompressed bytes of the compressed stream ``fh``, block by block."""
    if kind == "gzip":
        with gzip.GzipFile(fileobj=fh, mode="rb") as inflated:
            while block := inflated.read(_BLOCK):
                yield block
    elif kind == "zlib":
        inflate = zlib.decompressobj()
        while chunk := fh.read(_BLOCK):
            data = inflate.decompress(chunk, _BLOCK)
            while data:
                yield data
                data = inflate.decompress(inflate.unconsumed_tail, _BLOCK)
            if inflate.eof:
                return
    else:
        with pa.CompressedInputStream(pa.PythonFile(fh, mode="r"), "zstd") as inflated:
            while block := inflated.read(_BLOCK):
                yield block


DAMAGED = (OSError, EOFError, zlib.error, ValueError, pa.ArrowException)


def check_expansion(path: str | os.PathLike, source: BinaryIO | None = None) -> str | None:
    """Measure what a compressed CSV or JSON-lines file (or the buffer ``source`` read as
    ``path``) expands to; raise ``InputError`` past the limit, or when its compressed data is
    damaged. Returns the compression (None for a plain file, which is not read here)."""
    kind = compression(path, source)
    if kind is None:
        return None
    cap = limit()
    total = 0
    try:
        with _opened(path, source) as fh:
            for block in _decompressed_blocks(fh, kind):
                total += len(block)
                if total > cap:
                    raise too_large(path, f"is compressed ({kind}) and",
                                    f"more than {human(cap)}", cap)
    except DAMAGED as exc:
        raise InputError(path, f"starts like {kind}-compressed data but cannot be decompressed "
                               f"({exc}); give the file uncompressed, or compress it again"
                         ) from exc
    return kind


def first_line(path: str | os.PathLike, size: int, source: BinaryIO | None = None) -> bytes:
    """The first line (at most ``size`` bytes) of a file or buffer as a reader sees it:
    through its compression, when polars would decompress it."""
    kind = compression(path, source)
    with _opened(path, source) as fh:
        if kind is None:
            return fh.readline(size)
        line = b""
        try:
            for block in _decompressed_blocks(fh, kind):
                line += block
                if b"\n" in line or len(line) >= size:
                    break
        except DAMAGED:
            return b""  # check_expansion names the damage
    head, newline, _ = line.partition(b"\n")
    return head[:size] + newline


class _Blocks(io.RawIOBase):
    """A readable stream over an iterator of byte blocks."""

    def __init__(self, blocks):
        self._blocks = blocks
        self._left = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._left:
            self._left = next(self._blocks, b"")
            if not self._left:
                return 0
        n = min(len(buffer), len(self._left))
        buffer[:n] = self._left[:n]
        self._left = self._left[n:]
        return n


@contextlib.contextmanager
def open_decompressed(path: str | os.PathLike):
    """The file's bytes as a reader sees them (through gzip, zlib or zstd, as polars does): a
    binary stream. Call ``check_expansion`` first; a damaged stream raises ``InputError``."""
    kind = compression(path)
    with open(path, "rb") as fh:
        if kind is None:
            yield fh
            return
        try:
            yield io.BufferedReader(_Blocks(_decompressed_blocks(fh, kind)), _BLOCK)
        except DAMAGED as exc:
            raise InputError(path, f"starts like {kind}-compressed data but cannot be "
                                   f"decompressed ({exc})") from exc

"""Hostile variants of a seed file's bytes, drawn by hypothesis.

Each mutation is one class of input a careless or malicious user hands over (issue 13): empty,
truncated, bit-flipped, another format's bytes, NaN/inf and huge numbers in place of numbers,
deeply nested JSON, bytes that are not UTF-8, control characters, a TAB inside a caption, a
duplicated header column, one very long line, the file compressed (gzip, zlib) or a small
compressed file that expands past the limit on decompressed input, and the committed inputs that
once broke a reader (``corpus/regressions``). They work on any file; the array and table
mutations of ``fuzz.arrays`` understand ``.npy``, ``.npz`` and ``.parquet`` seeds.
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Callable
from pathlib import Path

from hypothesis import strategies as st

CORPUS = Path(__file__).resolve().parent / "corpus"

HOSTILE_NUMBERS = ["NaN", "nan", "Infinity", "-Infinity", "inf", "1e308", "1e309", "-1", "-0",
                   "0", "99999999999999999999999999", "-9223372036854775809",
                   "18446744073709551616", "0x10", "1_000", "1e-320", "3.4e38"]
BAD_UTF8 = [b"\xff", b"\xfe\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xe2\x82", b"\xf8\x88\x80\x80",
            b"\x80"]
CONTROL = ["\x00", "\x1b[31m", "\r", "\x0c", "\x0b", "\u2028", "\u200b", "\ufeff", "\x7f",
           "\x1a", "\r\n\r\n"]

Mutation = Callable[[bytes, st.DataObject], bytes]


def _position(data: st.DataObject, blob: bytes) -> int:
    return data.draw(st.integers(0, len(blob)), label="position")


def empty(blob: bytes, data: st.DataObject) -> bytes:
    return b""


def truncated(blob: bytes, data: st.DataObject) -> bytes:
    return blob[:data.draw(st.integers(1, max(1, len(blob) - 1)), label="keep bytes")]


def bit_flipped(blob: bytes, data: st.DataObject) -> bytes:
    if not blob:
        return blob
    out = bytearray(blob)
    for _ in range(data.draw(st.integers(1, 8), label="flips")):
        at = data.draw(st.integers(0, len(out) - 1), label="byte")
        out[at] ^= 1 << data.draw(st.integers(0, 7), label="bit")
    return bytes(out)


def known_bad(blob: bytes, data: st.DataObject) -> bytes:
    """An input that once broke a reader (``corpus/regressions``), or another seed's bytes."""
    found = sorted((CORPUS / "regressions").glob("*"))
    return data.draw(st.sampled_from(found), label="regression").read_bytes() if found else blob


def wrong_format(blob: bytes, data: st.DataObject) -> bytes:
    others = sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.read_bytes() != blob)
    return data.draw(st.sampled_from(others), label="other seed").read_bytes()


def non_utf8(blob: bytes, data: st.DataObject) -> bytes:
    at = _position(data, blob)
    return blob[:at] + data.draw(st.sampled_from(BAD_UTF8), label="bad bytes") + blob[at:]


def control_characters(blob: bytes, data: st.DataObject) -> bytes:
    out = blob
    for _ in range(data.draw(st.integers(1, 4), label="insertions")):
        at = _position(data, out)
        out = out[:at] + data.draw(st.sampled_from(CONTROL)).encode() + out[at:]
    return out


def tab_in_text(blob: bytes, data: st.DataObject) -> bytes:
    """A TAB (and text after it) inside a line: a second field where one was expected."""
    lines = blob.split(b"\n")
    line = data.draw(st.integers(0, max(0, len(lines) - 1)), label="line")
    at = data.draw(st.integers(0, len(lines[line])), label="column")
    lines[line] = lines[line][:at] + b"\tsecond\tfield" + lines[line][at:]
    return b"\n".join(lines)


_NUMBER = re.compile(rb"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


def hostile_number(blob: bytes, data: st.DataObject) -> bytes:
    """Replace one number of a text file by NaN, inf, a huge or negative value."""
    spans = [m.span() for m in _NUMBER.finditer(blob)]
    if not spans:
        return blob + data.draw(st.sampled_from(HOSTILE_NUMBERS)).encode()
    start, end = data.draw(st.sampled_from(spans[:200]), label="number")
    return blob[:start] + data.draw(st.sampled_from(HOSTILE_NUMBERS)).encode() + blob[end:]


def deep_json(blob: bytes, data: st.DataObject) -> bytes:
    """A JSON value nested deeper than any parser's recursion limit, in place of a value."""
    depth = data.draw(st.sampled_from([1_000, 20_000, 200_000]), label="depth")
    nested = (b"[" * depth + b"]" * depth) if data.draw(st.booleans()) else (
        b'{"a":' * depth + b"1" + b"}" * depth)
    where = data.draw(st.sampled_from(["whole", "value", "line"]), label="where")
    if where == "whole":
        return nested
    if where == "line":
        return nested + b"\n" + blob
    colon = blob.find(b": ")
    return blob[:colon + 2] + nested + b", " + blob[colon + 2:] if colon >= 0 else nested


def duplicate_column(blob: bytes, data: st.DataObject) -> bytes:
    """The header's second field renamed to the first's (or to the last's)."""
    head, sep, rest = blob.partition(b"\n")
    for delimiter in (b"|", b",", b"\t", b" "):
        fields = head.split(delimiter)
        if len(fields) >= 2:
            i = data.draw(st.integers(1, len(fields) - 1), label="field")
            fields[i] = fields[data.draw(st.integers(0, i - 1), label="copied")]
            return delimiter.join(fields) + sep + rest
    return blob + blob


def long_line(blob: bytes, data: st.DataObject) -> bytes:
    size = data.draw(st.sampled_from([70_000, 2_000_000]), label="line bytes")
    at = _position(data, blob)
    return blob[:at] + b"x" * size + blob[at:]


def repeated(blob: bytes, data: st.DataObject) -> bytes:
    """The file twice: every record duplicated, a second header in the middle."""
    return blob + (b"" if blob.endswith(b"\n") else b"\n") + blob


BOMB_BYTES = 96 << 20
"""What a compressed bomb expands to; the fuzz runs set the limit on decompressed input lower
(``fuzz.runner``), so a bomb must be refused, quickly and in bounded memory."""


def compressed(blob: bytes, data: st.DataObject) -> bytes:
    """The same bytes compressed with gzip or zlib (polars reads both as text, silently)."""
    if data.draw(st.booleans(), label="gzip or zlib"):
        return gzip.compress(blob)
    return zlib.compress(blob)


def compressed_bomb(blob: bytes, data: st.DataObject) -> bytes:
    """A gzip of a few hundred KB that expands to 96 MB: the file's first line (a header),
    then its last line repeated."""
    lines = blob.splitlines(keepends=True) or [b"x\n"]
    body = lines[-1] if lines[-1].endswith(b"\n") else lines[-1] + b"\n"
    inflated = lines[0] + body * (BOMB_BYTES // max(1, len(body)))
    return gzip.compress(inflated, 9)


BYTE_MUTATIONS: dict[str, Mutation] = {
    "empty": empty, "truncated": truncated, "bit_flipped": bit_flipped,
    "wrong_format": wrong_format, "non_utf8": non_utf8, "control_characters": control_characters,
    "tab_in_text": tab_in_text, "hostile_number": hostile_number, "deep_json": deep_json,
    "duplicate_column": duplicate_column, "long_line": long_line, "repeated": repeated,
    "known_bad": known_bad, "compressed": compressed, "compressed_bomb": compressed_bomb,
}

"""Whitespace-separated text tables (CelebA's attribute, identity and partition files), read
from their bytes with whole-array operations.

``read_fixed_width_rows`` is the fast path for a file laid out like CelebA's own (every row
the same length, values right-aligned in fixed columns): the rows are one byte matrix and
each value is read from its sign and digit columns. Any other layout, and any irregular row,
makes it return None; the caller then uses ``WhitespaceText``, which tokenises the file keeping
every token's line, so each irregular row can be reported by its line number.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from uncollapse.errors import InputError
from uncollapse.pipeline.text_files import UTF8_BOM, decode_utf8

__all__ = ["BAD", "WhitespaceText", "read_fixed_width_rows", "read_text_bytes"]

#: value of a token that is not -1, 0 or 1 in ``WhitespaceText.signs``
BAD = np.int16(-32768)


_MAX_INT_CHARS = 18


def read_text_bytes(path: Path) -> bytes:
    """The bytes of a text file without a UTF-8 byte-order mark, checked to be UTF-8."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(path, f"cannot read: {exc.strerror or exc}") from exc
    decode_utf8(path, raw, hint="expected a CelebA text file, or pass a .csv/.parquet table")
    return raw[len(UTF8_BOM):] if raw.startswith(UTF8_BOM) else raw


class WhitespaceText:
    """A whitespace-separated text file, tokenised on its bytes in one vectorised pass.

    Tokens are byte ranges ``starts[t]:ends[t]``; ``fields[l]`` is the number of tokens on
    0-based line ``l`` and ``first_token[l]`` the index of its first token. LF and CRLF line
    ends and any run of spaces or tabs are handled alike.
    """

    def __init__(self, path: Path, raw: bytes | None = None):
        raw = read_text_bytes(path) if raw is None else raw
        self.path, self.raw = path, raw
        buf = np.frombuffer(raw, dtype=np.uint8)
        newline = np.flatnonzero(buf == 10)
        self.line_starts = np.concatenate([[0], newline + 1]).astype(np.int64)
        # a token starts where whitespace (any byte <= 32: space, tab, CR, LF) turns into
        # text and ends where it turns back; starts and ends alternate
        text = (buf > 32).view(np.int8)
        edges = np.flatnonzero(np.diff(text, prepend=np.int8(0), append=np.int8(0)))
        self.starts, self.ends = edges[0::2], edges[1::2]
        # trailing blank lines (a final newline, or several) are not rows
        n_lines = int(np.searchsorted(newline, self.starts[-1])) + 1 if len(self.starts) else 0
        self.first_token = np.searchsorted(self.starts, self.line_starts[:n_lines + 1])
        if len(self.first_token) == n_lines:  # no newline after the last line
            self.first_token = np.append(self.first_token, len(self.starts))
        self.fields = np.diff(self.first_token)
        self.first_token = self.first_token[:-1]

    @property
    def n_lines(self) -> int:
        return len(self.fields)

    def line_text(self, line: int) -> str:
        end = self.line_starts[line + 1] if line + 1 < len(self.line_starts) else len(self.raw)
        return self.raw[self.line_starts[line]:end].decode("utf-8").rstrip("\r\n")

    def strings(self, tokens: np.ndarray) -> pl.Series:
        """The text of ``tokens`` as a polars String series (gathered as one byte matrix)."""
        if len(tokens) == 0:
            return pl.Series([], dtype=pl.String)
        lengths = self.ends[tokens] - self.starts[tokens]
        width = int(lengths.max())
        offsets = np.arange(width)
        index = np.minimum(self.starts[tokens][:, None] + offsets, len(self.raw) - 1)
        chars = np.frombuffer(self.raw, dtype=np.uint8)[index]
        chars[offsets >= lengths[:, None]] = 0
        # the file was checked to be UTF-8 and tokens end at ASCII whitespace, so every token
        # is valid UTF-8 on its own
        return pl.Series(np.ascontiguousarray(chars).view(f"S{width}").ravel()).cast(pl.String)

    def signs(self, tokens: np.ndarray | None = None) -> np.ndarray:
        """-1, 0 or 1 for tokens ``-1``, ``0``, ``1`` (or ``+1``), ``BAD`` for anything else.

        ``tokens=None`` means every token of the file, in order.

        A fast path for attribute values: a few whole-array byte comparisons.
        """
        buf = np.frombuffer(self.raw, dtype=np.uint8)
        ends = self.ends if tokens is None else self.ends[tokens]
        lengths = ends - (self.starts if tokens is None else self.starts[tokens])
        # a token of -1/0/1 is known from its last two bytes: one gather each, no offsets kept
        last = buf[ends - 1].astype(np.int16)
        before = buf[np.maximum(ends - 2, 0)].astype(np.int16)
        digit = last - ord("0")
        one_char = (lengths == 1) & (digit >= 0) & (digit <= 1)
        # ord("+") == 43 and ord("-") == 45, so 44 - before is the sign
        signed_one = (lengths == 2) & (last == ord("1")) & (
            (before == ord("-")) | (before == ord("+")))
        return np.where(one_char, digit, np.where(signed_one, 44 - before, BAD)).astype(np.int16)

    def ints(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Integer values of ``tokens`` and whether each token is an integer (``-1``, ``+1``)."""
        buf = np.frombuffer(self.raw, dtype=np.uint8)
        starts, lengths = self.starts[tokens], self.ends[tokens] - self.starts[tokens]
        signed = (buf[starts] == ord("-")) | (buf[starts] == ord("+"))
        negative = buf[starts] == ord("-")
        digits_start, n_digits = starts + signed, lengths - signed
        ok = (n_digits >= 1) & (n_digits <= _MAX_INT_CHARS)
        width = int(np.clip(n_digits.max(initial=1), 1, _MAX_INT_CHARS))
        offsets = np.arange(width)
        index = np.minimum(digits_start[:, None] + offsets, len(buf) - 1)
        digits = buf[index].astype(np.int64) - ord("0")
        inside = offsets < n_digits[:, None]
        ok &= ((digits >= 0) & (digits <= 9) | ~inside).all(axis=1)
        power = np.where(inside, n_digits[:, None] - 1 - offsets, 0)
        values = (np.where(inside, digits, 0) * 10 ** power).sum(axis=1)
        return np.where(negative, -values, values) * ok, ok


def read_fixed_width_rows(body: bytes, width: int) -> tuple[pl.Series, np.ndarray] | None:
    """Image ids and [n, width - 1] int16 values of fixed-width rows, or None.

    CelebA's own ``list_attr_celeba.txt`` is fixed-width: every row is as long as the others,
    the image name has one length, and each value is right-aligned in two columns
    (``000001.jpg -1  1  1 -1 ...``). Such a body (the rows only, LF or CRLF, trailing blank
    lines ignored) is read as one [rows, line length] byte matrix, without tokenising: each
    value is its sign column and its digit column. Values are returned as read (a digit column
    holding anything but a digit gives ``BAD``). Returns None for any body that is not laid
    out like that; the caller then tokenises it (``WhitespaceText``).
    """
    core = body.rstrip(b"\r\n")
    line_end = core.find(b"\n")
    if not core or line_end < 0 and b"\r" in core:
        return None
    eol = b"\r\n" if line_end > 0 and core[line_end - 1:line_end] == b"\r" else b"\n"
    data = core + eol
    n_lines = data.count(b"\n")
    length = len(data) // n_lines
    if length * n_lines != len(data):
        return None
    matrix = np.frombuffer(data, dtype=np.uint8).reshape(-1, length)
    if not (matrix[:, -1] == 10).all() or (eol == b"\r\n" and not (matrix[:, -2] == 13).all()):
        return None
    content = length - len(eol)
    # the layout comes from the first row: its token ends fix each value's digit column
    first = matrix[0, :content] > 32
    edges = np.flatnonzero(np.diff(first.view(np.int8), prepend=np.int8(0),
                                   append=np.int8(0)))
    starts, ends = edges[0::2], edges[1::2]
    if len(starts) != width:
        return None
    digit_columns, sign_columns = ends[1:] - 1, ends[1:] - 2
    # a value's sign column must not touch the token before it
    if (ends[1:] - ends[:-1] < 3).any() or starts[0] != 0 or (ends[1:] - starts[1:] > 2).any():
        return None
    text_allowed = np.zeros(content, dtype=bool)
    text_allowed[starts[0]:ends[0]] = True
    text_allowed[digit_columns] = text_allowed[sign_columns] = True
    # every other column is blank in every row, the name has no blank, no digit is blank
    id_columns = matrix[:, starts[0]:ends[0]]
    digit_bytes = matrix[:, digit_columns]
    if matrix[:, np.flatnonzero(~text_allowed)].max(initial=0) > 32 \
            or id_columns.min() <= 32 or digit_bytes.min() <= 32:
        return None
    digits = digit_bytes.astype(np.int16) - ord("0")
    signs = matrix[:, sign_columns]
    # ord("+") == 43 and ord("-") == 45, so 44 - sign is the sign; a blank sign column is +
    sign = np.where(signs <= 32, 1, 44 - signs.astype(np.int16))
    valid = (digits >= 0) & (digits <= 9) & ((signs <= 32) | (signs == 43) | (signs == 45))
    values = np.where(valid, sign * digits, BAD).astype(np.int16)
    ids = np.ascontiguousarray(id_columns).view(f"S{ends[0] - starts[0]}")
    return pl.Series(ids.ravel()).cast(pl.String), values

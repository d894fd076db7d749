"""Reading text sources: UTF-8 (a byte-order mark allowed), lines ended by CR, LF or CRLF only."""

from __future__ import annotations

from pathlib import Path

from uncollapse.errors import InputError

__all__ = ["UTF8_BOM", "decode_utf8", "read_text_lines"]

UTF8_BOM = b"\xef\xbb\xbf"


def decode_utf8(path: Path, raw: bytes, *,
                hint: str = "re-encode the file as UTF-8 (e.g. iconv -t UTF-8)") -> str:
    """``raw`` as text without its byte-order mark; a bad byte is an error naming its line."""
    if raw.startswith(UTF8_BOM):
        raw = raw[len(UTF8_BOM):]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise InputError(path, f"not UTF-8 text (bad byte at offset {exc.start}); {hint}",
                         line=line) from exc


def read_text_lines(path: Path) -> list[str]:
    """The file's lines. Only CR/LF end a line: ``str.splitlines`` would also split at form
    feeds, U+2028 and other separators, cutting text short and shifting later line numbers."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(path, f"cannot read: {exc.strerror or exc}") from exc
    text = decode_utf8(Path(path), raw)
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")

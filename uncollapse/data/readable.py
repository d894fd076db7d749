"""One message for each way an input file can be wrong, the same in every reader and command.

- missing: ``PATH: does not exist; expected a regular file`` (as the command line's own check);
- cannot be opened (permissions, a locked file): ``PATH: cannot be read (...); check ...``
  (a raw ``PermissionError: [Errno 13]`` names neither what the file was for nor what to do);
- empty: ``PATH: is empty (0 bytes), not EXPECTED; HINT``;
- another kind of file, told by its first bytes (a JPEG given as a caption source, a Parquet
  file given as a scene NPZ): ``PATH: is a JPEG image, not EXPECTED; HINT``. Nothing of the
  file's bytes is printed, and no reader gets to misread it (numpy calls any non-NPZ "pickled
  data", polars a JPEG a CSV).
"""

from __future__ import annotations

from pathlib import Path

from uncollapse.errors import InputError

__all__ = [
    "JPEG", "MISSING", "NPY", "PARQUET", "PDF", "PNG", "GIF", "ZIP", "check_input_file",
    "check_readable", "missing", "sniff", "unreadable",
]

MISSING = "does not exist; expected a regular file"

PARQUET = "a Parquet file"
ZIP = "a zip archive (an NPZ)"
NPY = "a .npy array"
JPEG = "a JPEG image"
PNG = "a PNG image"
GIF = "a GIF image"
PDF = "a PDF document"
_MAGIC = ((b"PAR1", PARQUET), (b"PK\x03\x04", ZIP), (b"PK\x05\x06", ZIP), (b"\x93NUMPY", NPY),
          (b"\xff\xd8\xff", JPEG), (b"\x89PNG\r\n\x1a\n", PNG), (b"GIF8", GIF),
          (b"%PDF", PDF))
"""First bytes of the kinds told apart. Compressed files (gzip, zstd) are not among them: the
readers of CSV and JSON lines read those through the compression."""


def missing(path: Path | str, expected: str = "a regular file") -> InputError:
    """The ``InputError`` for a path that names nothing (``expected``: "a regular file or
    directory" where a folder is read too)."""
    return InputError(path, f"does not exist; expected {expected}")


def sniff(path: Path | str) -> str | None:
    """What kind of file ``path`` is, told by its first bytes (``PARQUET``, ``ZIP``, ``JPEG``,
    ...); None for anything else (text, or a format not listed)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
    except OSError:
        return None
    return next((kind for magic, kind in _MAGIC if head.startswith(magic)), None)


def check_input_file(path: Path | str, expected: str, hint: str, *,
                     accept: tuple[str, ...] = (), require: str | None = None) -> None:
    """Refuse, with the one message of its kind, an input that does not exist, cannot be
    opened, is empty, or is another kind of file than a reader of ``expected`` reads.

    Args:
        expected: what the reader reads, with its article ("a caption table (Parquet or CSV)").
        hint: what to do instead ("build it with `uncollapse build captions`").
        accept: the kinds of ``sniff`` the reader reads; any other kind ``sniff`` recognises
            is refused (a file it does not recognise passes: text, CSV, JSON).
        require: the one kind the file must be (an NPZ: ``ZIP``); anything else is refused.

    A directory passes (readers of folders judge it themselves).
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except (FileNotFoundError, NotADirectoryError):
        raise missing(path) from None
    except OSError as exc:
        raise unreadable(path, exc) from exc
    if path.is_dir():
        return
    check_readable(path)
    if size == 0:
        raise InputError(path, f"is empty (0 bytes), not {expected}; {hint}")
    found = sniff(path)
    if require is not None and found != require:
        raise InputError(path, f"is {found or 'another kind of file'}, not {expected}; {hint}")
    if found is not None and require is None and found not in accept:
        raise InputError(path, f"is {found}, not {expected}; {hint}")


def unreadable(path: Path | str, exc: OSError) -> InputError:
    """The ``InputError`` for ``exc``, raised while opening ``path`` to read it."""
    reason = exc.strerror or str(exc)
    return InputError(path, f"cannot be read ({reason.lower()}); check its permissions "
                            "(ls -l) or run as a user who may read it")


def check_readable(path: Path | str) -> None:
    """Raise an ``InputError`` when the existing regular file ``path`` cannot be opened."""
    path = Path(path)
    if not path.is_file():
        return
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise unreadable(path, exc) from exc

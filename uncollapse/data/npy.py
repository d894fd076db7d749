"""Reading a ``.npy`` file so that every way it can be unreadable names the file and the fix.

``np.load`` reports an empty file as ``EOFError: No data left in file``, a text file as a
``ValueError`` about pickles, and an NPZ as a ``NpzFile``; none of them says which file or what
to do. Never unpickles.
"""

from __future__ import annotations

import tokenize
import zipfile
from pathlib import Path

import numpy as np

from uncollapse.data.readable import NPY, ZIP, check_input_file
from uncollapse.errors import InputError

__all__ = ["HEADER_FAILURES", "SAVE_HINT", "load_npy"]

SAVE_HINT = "write it with numpy.save(path, array) from a numeric array"
HEADER_FAILURES: tuple[type[BaseException], ...] = (
    ValueError, SyntaxError, tokenize.TokenError, EOFError)
"""What numpy raises on a damaged ``.npy`` header: it parses the header text as a Python
literal, so a changed byte can end in a tokenizer or syntax error rather than a ValueError."""


def load_npy(path: str | Path, *, mmap: bool = False, what: str = "array") -> np.ndarray:
    """The array of the ``.npy`` at ``path`` (memory-mapped read-only when ``mmap``).

    Raises:
        InputError: not a regular file, empty, not a ``.npy``, an object array (needs pickle),
            or an ``.npz`` of several arrays.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(path, f"is a directory; give the .npy file of the {what}")
    check_input_file(path, f"a .npy {what}", SAVE_HINT, accept=(NPY, ZIP))
    size = path.stat().st_size
    _check_declared_size(path, size, what)
    try:
        array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc):
            raise InputError(path, f"is not a plain .npy {what}: it would need pickle, which "
                                   f"is refused (an object array or not a .npy file); "
                                   f"{SAVE_HINT}") from exc
        raise InputError(path, f"is not a readable .npy {what} ({exc}); {SAVE_HINT}") from exc
    except (SyntaxError, tokenize.TokenError) as exc:
        raise InputError(path, f"is not a readable .npy {what}: its header is damaged (the "
                               f"shape and dtype cannot be read); {SAVE_HINT}") from exc
    except (EOFError, OSError, zipfile.BadZipFile) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise InputError(path, f"is not a readable .npy {what} (truncated or another format: "
                               f"{reason}); {SAVE_HINT}") from exc
    if not isinstance(array, np.ndarray):
        array.close()
        raise InputError(path, f"holds several arrays (.npz); save the {what} as one .npy "
                               "file with numpy.save")
    return array


def _check_declared_size(path: Path, size: int, what: str) -> None:
    """Refuse a ``.npy`` whose header declares more data (shape x item size) than the file
    holds, before numpy sizes anything by that header. An unreadable header is left to
    ``np.load``'s own message."""
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            reader = {(1, 0): np.lib.format.read_array_header_1_0,
                      (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if reader is None:
                return
            shape, _, dtype = reader(fh)
            offset = fh.tell()
    except (*HEADER_FAILURES, OSError):
        return
    if dtype.hasobject:
        return  # refused as needing pickle
    declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if declared > size - offset:
        raise InputError(path, f"is truncated or damaged: its header declares a {what} of shape "
                               f"{tuple(shape)} {dtype} ({declared:,} bytes) but the file holds "
                               f"{size - offset:,} bytes of data; {SAVE_HINT}")

"""One message for an input that exists but cannot be opened (permissions, a locked file).

A raw ``PermissionError: [Errno 13] Permission denied`` names neither what the file was for
nor what to do; this names the file and the fix.
"""

from __future__ import annotations

from pathlib import Path

from uncollapse.errors import InputError

__all__ = ["check_readable", "unreadable"]


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

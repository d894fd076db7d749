"""What kind of file a path names, and the checks that keep a command from hanging or destroying.

Opening a FIFO for reading blocks until some other process writes to it, reading a character
device such as /dev/zero never ends, and renaming a finished temporary file over /dev/null turns
the device into a regular file. Every check here uses ``stat()`` alone, which never blocks, so a
command can refuse such a path before it opens anything.
"""

from __future__ import annotations

import os
import stat

from uncollapse.errors import InputError, ToolError

__all__ = [
    "BLOCK_DEVICE", "CHAR_DEVICE", "DIRECTORY", "FIFO", "REGULAR", "SOCKET", "check_input",
    "check_output", "check_tree", "file_kind", "kind_of", "same_file",
]

REGULAR = "regular file"
DIRECTORY = "directory"
FIFO = "FIFO (named pipe)"
CHAR_DEVICE = "character device"
BLOCK_DEVICE = "block device"
SOCKET = "socket"

_WHY_NOT_READ = {
    FIFO: "opening it waits for a writer, so the command could hang forever",
    CHAR_DEVICE: "reading a device may never end (/dev/zero) or block (a terminal)",
    BLOCK_DEVICE: "uncollapse reads data files, not disks",
    SOCKET: "a socket cannot be opened as a file",
}


def file_kind(st_mode: int) -> str:
    """``regular file``, ``directory``, ``FIFO (named pipe)``, ... for a ``stat`` mode."""
    for test, name in ((stat.S_ISREG, REGULAR), (stat.S_ISDIR, DIRECTORY),
                       (stat.S_ISFIFO, FIFO), (stat.S_ISCHR, CHAR_DEVICE),
                       (stat.S_ISBLK, BLOCK_DEVICE), (stat.S_ISSOCK, SOCKET)):
        if test(st_mode):
            return name
    return "special file"


def kind_of(path: str | os.PathLike) -> str | None:
    """The kind of what ``path`` names after following symlinks; None when nothing is there.

    A path that cannot be examined (a symlink loop, a folder without search permission, a
    name too long) is an InputError naming it.
    """
    try:
        return file_kind(os.stat(path).st_mode)
    except (FileNotFoundError, NotADirectoryError):  # NotADirectory: a parent is a file
        return None
    except OSError as exc:
        raise InputError(path, f"cannot be examined ({exc.strerror}); check the path and the "
                               "permissions of its folders") from exc


def check_input(path: str | os.PathLike, *, file_okay: bool = True, dir_okay: bool = False,
                stream_hint: str | None = None) -> str:
    """Raise InputError unless ``path`` is an existing regular file (or directory, if allowed).

    Returns the kind found. ``stream_hint`` is added to the message for a FIFO or device (say
    how this command reads a stream, such as "pass - to read standard input").
    """
    kind = kind_of(path)
    expected = " or ".join(k for k, ok in ((REGULAR, file_okay), (DIRECTORY, dir_okay)) if ok)
    if kind is None:
        raise InputError(path, f"does not exist; expected a {expected}")
    if (kind == REGULAR and file_okay) or (kind == DIRECTORY and dir_okay):
        return kind
    if kind in (REGULAR, DIRECTORY):
        raise InputError(path, f"is a {kind}; expected a {expected}")
    hint = f"; {stream_hint}" if stream_hint else ""
    raise InputError(path, f"is a {kind}, not a {expected}: {_WHY_NOT_READ.get(kind, '')}. "
                           f"Give the path of a {expected} (save a stream to a file first)"
                           f"{hint}")


def check_tree(root: str | os.PathLike) -> None:
    """Raise InputError naming the first FIFO, device or socket inside the folder ``root``.

    A command that reads a folder (a run directory, a saved dataset, a folder of text files)
    opens what it finds there, so one such file would hang it as surely as a FIFO named on the
    command line. Symlinks are judged by what they point to but not descended into; broken
    ones are left to the reader.
    """
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            kind = kind_of(path)
            if kind not in (None, REGULAR, DIRECTORY):
                raise InputError(path, f"is a {kind} inside the folder {root}: "
                                       f"{_WHY_NOT_READ.get(kind, '')}. Remove it from the "
                                       "folder or give another folder")


def check_output(path: str | os.PathLike, *, dir_okay: bool = False) -> str | None:
    """Raise ToolError unless ``path`` may be written; return its kind (None: nothing there).

    A regular file is replaced atomically; a character device (``/dev/null``) or a FIFO is
    written in place, never renamed over; a directory (unless ``dir_okay``), a block device
    or a socket is refused.
    """
    kind = kind_of(path)
    if kind in (None, REGULAR, CHAR_DEVICE, FIFO) or (kind == DIRECTORY and dir_okay):
        return kind
    if kind == DIRECTORY:
        raise ToolError(f"{path}: is a directory; give the path of a file to write")
    expected = "a directory" if dir_okay else "a file path (or a character device such as " \
                                              "/dev/null)"
    raise ToolError(f"{path}: is a {kind}; uncollapse writes only to {expected}, so it will "
                    f"not write here. Give another path")


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether ``a`` and ``b`` name one file: the same inode (a symlink or hard link to the
    other counts) or, when one does not exist yet, the same resolved path."""
    try:
        first, second = os.stat(a), os.stat(b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)
    return (first.st_dev, first.st_ino) == (second.st_dev, second.st_ino)

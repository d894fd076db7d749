"""Errors that mean "the tool could not run" (exit code 2), as opposed to "the data is invalid"."""

__all__ = ["InputError", "ToolError"]


class ToolError(Exception):
    """The tool could not run: unreadable or malformed input, bad arguments, a check that raised.

    The message must say which file, line or row, what was expected, and what to do.
    """


class InputError(ToolError):
    """An input file or table cannot be read or does not match its contract."""

    def __init__(self, path, message: str, *, line: int | None = None):
        where = f"{path}" if line is None else f"{path}, line {line}"
        super().__init__(f"{where}: {message}")
        self.path = str(path)
        self.line = line

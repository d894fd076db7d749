"""The fenced code blocks of README.md and the docs pages, by section, and the command lines of
their shell blocks."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

FENCE = re.compile(r"^```(\w*)\s*(.*?)\s*$")  # ```python title="a.py": language, attributes
# A trailing comment that states the exit code a command is meant to have: "# exit 1" or
# "# irregular input: exit 1" (a comment that only mentions an exit code, such as
# "(exit 1 on mismatch)", is not a marker).
EXIT_MARKER = re.compile(r"(?:^|:\s)exit (\d+)$")


@dataclass(frozen=True)
class Block:
    lang: str
    line: int  # line of the opening fence in its file
    section: str  # the "## " heading it sits under
    text: str
    attrs: str = ""  # what follows the language on the fence line (`title="..."`)


@dataclass(frozen=True)
class Command:
    line: int  # README line where the command starts
    text: str  # the command, continuation lines joined, comment removed
    exit_code: int


def readme_blocks(path: Path) -> list[Block]:
    blocks, section, lang, start, body = [], "", None, 0, []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if lang is None:
            if line.startswith("## "):
                section = line[3:].strip()
            fence = FENCE.match(line)
            if fence:
                lang, attrs, start, body = fence.group(1), fence.group(2), number, []
        elif line.startswith("```"):
            blocks.append(Block(lang, start, section, "\n".join(body) + "\n", attrs))
            lang = None
        else:
            body.append(line)
    return blocks


def _split_comment(line: str) -> tuple[str, str]:
    """The code and the comment of a shell line (a `#` that starts a word, outside quotes)."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i + 1:].strip()
    return line.rstrip(), ""


def shell_commands(block: Block) -> list[Command]:
    commands, parts, first, comment = [], [], 0, ""
    for offset, raw in enumerate(block.text.splitlines(), start=1):
        code, note = _split_comment(raw)
        if not parts:
            if not code.strip():
                continue
            first = block.line + offset
        comment = note or comment
        if code.endswith("\\"):
            parts.append(code[:-1].strip())
            continue
        parts.append(code.strip())
        marker = EXIT_MARKER.search(comment)
        commands.append(Command(first, " ".join(parts), int(marker.group(1)) if marker else 0))
        parts, comment = [], ""
    return commands

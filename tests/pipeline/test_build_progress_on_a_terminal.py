"""A build that can take long shows a spinner on a terminal (stderr a TTY), and nothing but its
status lines off a terminal or with --quiet. Run under a real pseudo-terminal."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def stderr_of(args: list[str], *, terminal: bool) -> tuple[int, str]:
    """The command's exit code and what it wrote to stderr (a pty, or a pipe)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TERM": "xterm", "COLUMNS": "120"}
    env.pop("NO_COLOR", None)
    command = [sys.executable, "-m", "uncollapse", *args]
    if not terminal:
        done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              env=env, timeout=3600)
        return done.returncode, done.stderr.decode()
    leader, follower = pty.openpty()
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=follower, env=env)
    os.close(follower)
    written = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the command closed its end
            break
        if not chunk:
            break
        written += chunk
    os.close(leader)
    return process.wait(timeout=3600), written.decode(errors="replace")


@pytest.fixture
def sources(tmp_path):
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"doc_id": d, "text": f"chunk {i}"}) + "\n"
                            for d in "ab" for i in range(3)))
    celeba = tmp_path / "list_attr_celeba.txt"
    celeba.write_text("2\nSmiling Male\n000001.jpg -1 1\n000002.jpg 1 -1\n")
    return {"scenes": ["build", "scenes", "--num", "300", "--size", "16"],
            "chunks": ["build", "chunks", str(docs), "--unit", "line"],
            "attributes": ["build", "attributes", str(celeba)]}


@pytest.mark.parametrize("name, spinner", [("scenes", "generating 300 scenes of 16x16"),
                                           ("chunks", "splitting "),
                                           ("attributes", "building attributes from ")])
def test_a_build_shows_a_spinner_on_a_terminal_only(sources, tmp_path, name, spinner):
    args = [*sources[name], "--cache-dir", str(tmp_path / "cache"), "--rebuild"]
    code, shown = stderr_of(args, terminal=True)
    assert code == 0, shown
    assert spinner in shown and "\x1b[?25l" in shown  # the spinner's line, cursor hidden
    for extra, terminal in (([], False), (["--quiet"], True)):
        code, shown = stderr_of([*args, *extra], terminal=terminal)
        assert code == 0, shown
        assert spinner not in shown and "\x1b" not in shown
        assert "built:" in shown

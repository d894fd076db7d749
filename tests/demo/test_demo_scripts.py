"""The demo's shell helpers and files work where people run them: banners are plain text in a
log, the broken augmentation the demo writes runs outside the demo, and `make` says what it is
doing before each install step."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
BANNER = "source demo/lib.sh; banner 'captions: build'; expect 0 true"


def _env(**extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    return {**env, "PATH": f"{BIN}{os.pathsep}{env['PATH']}",
            "PYTHONPATH": str(ROOT), **extra}


def test_banners_are_plain_text_when_the_demo_writes_into_a_log():
    result = subprocess.run(["bash", "-c", BANNER], cwd=ROOT, capture_output=True, text=True,
                            env=_env(), check=True)
    assert result.stdout == "\n== captions: build ==\n\n$ true\n(exit code 0, as expected)\n"
    assert "\033" not in result.stdout


def test_banners_are_bold_on_a_terminal_unless_no_color():
    # `script` runs the command on a pseudo-terminal, as a person's shell would
    command = ["script", "-qec", f"bash -c \"{BANNER}\"", "/dev/null"]
    on_tty = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=_env(),
                            check=True)
    assert "\033[1m== captions: build ==\033[0m" in on_tty.stdout
    no_color = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                              env=_env(NO_COLOR="1"), check=True)
    assert "== captions: build ==" in no_color.stdout and "\033[1m" not in no_color.stdout


def _half_flips_source() -> str:
    section = (ROOT / "demo" / "40-attributes.sh").read_text()
    match = re.search(r'cat > "\$DEMO_OUT/half_flips\.py" <<\'PY\'\n(.*?)\nPY\n', section, re.S)
    assert match, "demo/40-attributes.sh no longer writes half_flips.py"
    return match.group(1)


def test_the_demos_broken_augmentation_runs_outside_the_demo(tmp_path):
    folder = tmp_path / "somewhere"
    folder.mkdir()
    (folder / "half_flips.py").write_text(_half_flips_source())
    rng = np.random.default_rng(0)
    pl.DataFrame({"image_id": [f"{i:06d}.jpg" for i in range(400)],
                  **{name: rng.integers(0, 2, 400).astype(np.int8)
                     for name in ("Smiling", "Male", "Eyeglasses")}}).write_parquet(
        folder / "attrs.parquet")
    # no DEMO_OUT, and run from another folder: the module finds the table beside itself
    env = {k: v for k, v in _env().items() if k != "DEMO_OUT"}
    result = subprocess.run(["uncollapse", "validate", "flips", "--dataset",
                             f"{folder / 'half_flips.py'}:make_dataset", "--quiet",
                             "--format", "json"], cwd=tmp_path, capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 1, result.stderr
    assert "KeyError" not in result.stderr
    assert '"FLIPS_NOT_ALWAYS_APPLIED"' in result.stdout


def test_make_says_what_it_does_before_each_install_step():
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("$(STAMP): pyproject.toml\n", 1)[1].split("\n\n", 1)[0]
    recipe = recipe.replace("\\\n", " ")  # one line per command
    lines = [line.strip() for line in recipe.splitlines() if line.startswith("\t")]
    commands = [line for line in lines if not line.startswith("#")]
    for i, line in enumerate(commands):
        if "pip install" in line or "python3 -m venv" in line:
            assert commands[i - 1].startswith("@echo \"make: "), f"silent step: {line}"
    assert sum(line.startswith("@echo") for line in commands) >= 4


def test_make_prints_those_lines(tmp_path):
    # a dry run of the install recipe prints each echo as it will run
    result = subprocess.run(["make", "-n", "install", f"VENV={tmp_path / 'venv'}"], cwd=ROOT,
                            capture_output=True, text=True, check=True)
    echoes = [line for line in result.stdout.splitlines() if line.startswith("echo \"make: ")]
    installs = [i for i, line in enumerate(result.stdout.splitlines()) if "pip install" in line]
    assert len(echoes) >= 4 and installs
    first_echo = result.stdout.splitlines().index(echoes[0])
    assert first_echo < installs[0]

"""Crash and race safety of the cache, with real `uncollapse build` processes.

Kill points: a build is SIGKILLed at each named moment (``UNCOLLAPSE_TEST_CRASH_AT``) of a
fresh build, a ``--rebuild``, a hit, a hit whose fingerprints moved, and the repair of a
corrupt entry. After each kill the cache holds no half entry (every entry passes a full
re-hash), and the next build succeeds with the right output. Races: builds run in parallel
with ``cache clear`` and all succeed with the right outputs. The fast cases run in the normal
suite; the rest are marked ``fuzz``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from uncollapse.cache.crashpoints import ENV, POINTS
from uncollapse.cache.integrity import check_files
from uncollapse.cache.store import Cache
from uncollapse.cli import main

REPO = Path(__file__).resolve().parents[2]

# (scenario, point): every moment a build is killed at; before "renamed" a fresh build has
# no entry yet
MOMENTS = [("fresh", p) for p in ("input-hashed", "key-computed", "locked", "tmp-created",
                                  "built", "checked", "sealed", "manifest-written",
                                  "manifest-synced", "renamed", "committed", "returned")]
MOMENTS += [("rebuild", p) for p in ("built", "sealed", "manifest-synced", "old-moved",
                                     "replaced", "committed")]
MOMENTS += [("hit", p) for p in ("hit-checked", "returned")]
MOMENTS += [("refresh", p) for p in ("manifest-written", "manifest-synced", "refreshed")]
MOMENTS += [("corrupt", p) for p in ("bad-found", "bad-moved", "bad-removed", "built",
                                     "renamed")]
FAST = {("fresh", "built"), ("fresh", "manifest-written"), ("rebuild", "old-moved"),
        ("corrupt", "bad-moved"), ("refresh", "refreshed")}


def tokens(path: Path, images: int) -> Path:
    path.write_text("".join(f"{i:07d}.jpg#{n}\tcaption {n} of image {i} .\n"
                            for i in range(images) for n in range(5)))
    return path


def cli(*args, crash: str | None = None, **popen) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != ENV}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    command = [sys.executable, "-m", "uncollapse"]
    if crash:  # the kill points act only where the test hooks are on
        env[ENV] = crash
        command = [sys.executable, str(REPO / "tests" / "hooked_cli.py")]
    return subprocess.Popen([*command, *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def run_in_process(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_no_half_entry(root: Path) -> int:
    """Every entry of the cache is whole: a readable manifest and files that match it."""
    entries = Cache(root).entries()
    for entry in entries:
        assert entry.broken is None, entry.broken
        assert check_files(entry.path, entry.files, full=True)[0] == []
    assert run_in_process("cache", "verify", "--cache-dir", root).exit_code == 0
    return len(entries)


def assert_next_build_is_right(root: Path, source: Path, out: Path, expected: pl.DataFrame):
    result = run_in_process("build", "captions", source, "--cache-dir", root, "-o", out,
                            "--quiet")
    assert result.exit_code == 0, result.output
    assert pl.read_parquet(out).equals(expected)
    assert_no_half_entry(root)
    removed, kept = Cache(root).clear_counts()
    assert (removed, kept) == (1, 0)
    assert list(root.rglob(".tmp-*")) == []  # leftovers of the dead build went too


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reference")
    source = tokens(folder / "captions.token.txt", 40)
    result = run_in_process("build", "captions", source, "--cache-dir", folder / "cache",
                            "-o", folder / "expected.parquet", "--quiet")
    assert result.exit_code == 0, result.output
    return source, pl.read_parquet(folder / "expected.parquet")


def prepare(scenario: str, root: Path, source: Path) -> list[str]:
    """Bring the cache to the scenario's state; return the extra build arguments."""
    if scenario == "fresh":
        return []
    assert run_in_process("build", "captions", source, "--cache-dir", root,
                          "--quiet").exit_code == 0
    [entry] = Cache(root).entries()
    cached = entry.file("captions.parquet")
    if scenario == "refresh":
        os.utime(cached, ns=(1, 1))
    if scenario == "corrupt":
        data = bytearray(cached.read_bytes())
        data[len(data) // 2] ^= 0x04
        cached.chmod(0o644)
        cached.write_bytes(bytes(data))
    return ["--rebuild"] if scenario == "rebuild" else []


@pytest.mark.parametrize(("scenario", "point"), [
    pytest.param(*m, id="-".join(m), marks=() if m in FAST else pytest.mark.fuzz)
    for m in MOMENTS])
def test_a_build_killed_at_any_moment_leaves_no_half_entry(tmp_path, reference, scenario,
                                                           point):
    assert point in POINTS
    source, expected = reference
    root = tmp_path / "cache"
    extra = prepare(scenario, root, source)
    proc = cli("build", "captions", source, "--cache-dir", root, "-o", tmp_path / "killed.parquet",
               "--quiet", *extra, crash=point)
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL  # it reached the moment and died there
    assert not (tmp_path / "killed.parquet").exists()
    if (scenario, point) == ("corrupt", "bad-found"):  # killed before it touched the entry:
        verify = run_in_process("cache", "verify", "--cache-dir", root)  # still reported
        assert verify.exit_code == 1 and "CACHE_HASH_MISMATCH" in verify.output
    else:
        entries = assert_no_half_entry(root)
    if scenario == "fresh":
        assert entries == (MOMENTS.index((scenario, point)) >= MOMENTS.index(("fresh",
                                                                               "renamed")))
    assert_next_build_is_right(root, source, tmp_path / "next.parquet", expected)


def test_the_kill_points_cover_at_least_20_moments():
    assert len(MOMENTS) >= 20 and len(set(MOMENTS)) == len(MOMENTS)
    assert {p for _, p in MOMENTS} == set(POINTS)


@pytest.mark.fuzz
def test_builds_killed_at_20_times_spread_over_a_slow_build(tmp_path, reference):
    source = tokens(tmp_path / "big.token.txt", 20_000)
    root = tmp_path / "cache"
    start = time.monotonic()
    timing = cli("build", "captions", source, "--cache-dir", tmp_path / "timing", "--quiet",
                 "-o", tmp_path / "expected.parquet")
    assert timing.wait(300) == 0
    duration = time.monotonic() - start
    expected = pl.read_parquet(tmp_path / "expected.parquet")
    for i in range(20):
        proc = cli("build", "captions", source, "--cache-dir", root, "--quiet", "--rebuild")
        time.sleep(duration * (i + 0.5) / 20)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=120)
        assert_no_half_entry(root)
    assert_next_build_is_right(root, source, tmp_path / "next.parquet", expected)


def concurrent_round(tmp_path: Path, sources: list[Path], expected: list[pl.DataFrame],
                     builds: int) -> None:
    root = tmp_path / "cache"
    stop, cleared = threading.Event(), []

    def clear_forever():
        while not stop.wait(0.005):  # clear again and again while the builds run
            cleared.append(Cache(root).clear_counts())

    clearer = threading.Thread(target=clear_forever)
    clearer.start()
    try:
        procs = []
        for i in range(builds):
            extra = ["--rebuild"] if i % 3 == 2 else []
            procs.append(cli("build", "captions", sources[i % len(sources)], "--cache-dir", root,
                             "--quiet", "-o", tmp_path / f"out{i}.parquet", *extra))
        clears = [cli("cache", "clear", "--cache-dir", root) for _ in range(2)]
        results = [(p.wait(300), p.stderr.read()) for p in procs + clears]
    finally:
        stop.set()
        clearer.join(60)
    assert [rc for rc, _ in results] == [0] * len(results), results
    for i in range(builds):
        assert pl.read_parquet(tmp_path / f"out{i}.parquet").equals(expected[i % len(sources)])
    assert len(cleared) >= 1
    assert_no_half_entry(root)


@pytest.fixture
def three_sources(tmp_path):
    sources = [tokens(tmp_path / f"s{k}.token.txt", 20 + 7 * k) for k in range(3)]
    expected = []
    for k, source in enumerate(sources):
        out = tmp_path / f"expected{k}.parquet"
        assert run_in_process("build", "captions", source, "--cache-dir", tmp_path / "ref",
                              "-o", out, "--quiet").exit_code == 0
        expected.append(pl.read_parquet(out))
    return sources, expected


def test_six_builds_in_parallel_with_clears_all_succeed(tmp_path, three_sources):
    concurrent_round(tmp_path, *three_sources, builds=6)


@pytest.mark.fuzz
@pytest.mark.parametrize("round_", range(5))
def test_many_rounds_of_parallel_builds_and_clears(tmp_path, three_sources, round_):
    concurrent_round(tmp_path, *three_sources, builds=9)

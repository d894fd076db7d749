"""Racing inputs: an input changes while a build runs, at one of the build's named moments.

One example runs one real build in-process with the test hooks of
``uncollapse.cache.crashpoints`` on. When the build reaches a drawn moment (each moment that a
fresh build, a hit or a ``--rebuild`` reaches), a drawn change is made to one of its inputs, as
another program would: the file replaced by another (``mv``), rewritten in place with the same
size, appended to, touched (same bytes, new mtime), replaced and then put back to its old bytes
once the builder has read it, or, for a folder, a file edited, added or removed. The cache is
empty, or already holds the entry of the original input (a hit), or is asked to ``--rebuild``
it. Four builds: ``build captions`` (Flickr tokens), ``build chunks`` of a JSONL file and of a
folder of text files, and ``build sequences`` (the vectors ``.npy`` changes).

Invariants, besides those of every run (the inputs are exempt: they change on purpose):

1. every entry in the cache holds exactly what a fresh build of the bytes its key names gives:
   its key's input digests are those of one state the input had, and its output equals that
   state's reference output (built without hooks, in another cache);
2. a build that exits 0 writes (``-o``) the output of one state of the input;
3. a build refused because its input changed exits 2, names the input and says so;
4. the next build, with nothing changing, exits 0 and writes the output of the input as it is.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from hypothesis import strategies as st

from fuzz.invariants import Case, Outcome, snapshot, violations
from fuzz.mutations import CORPUS
from fuzz.runner import run_in_process
from uncollapse.cache import crashpoints
from uncollapse.cache.store import Cache

TARGET = "racing-inputs"
FILE_CHANGES = ["mv_other", "in_place", "append", "touch", "mv_then_restore"]
FOLDER_CHANGES = ["edit_file", "add_file", "remove_file", "mv_file", "edit_then_restore"]
# the moments each kind of build reaches (the repair of a corrupt entry is the cache target's)
MOMENTS = {
    "fresh": ("input-hashed", "key-computed", "locked", "tmp-created", "built", "checked",
              "sealed", "manifest-written", "manifest-synced", "renamed", "committed",
              "returned"),
    "hit": ("input-hashed", "key-computed", "locked", "hit-checked", "returned"),
    "rebuild": ("input-hashed", "key-computed", "locked", "tmp-created", "built", "checked",
                "sealed", "manifest-written", "manifest-synced", "old-moved", "replaced",
                "committed", "returned"),
}
REFUSED = "the input changed while it was being built"


@dataclass(frozen=True)
class Build:
    name: str
    stage: str
    output: str  # the output's name in the cache entry
    out: str     # the -o file name

    def setup(self, work: Path) -> tuple[Path, list[str]]:
        """Copy the seeds into ``work/in``; return the input that will change and the command
        line without ``-o``/``--cache-dir``."""
        folder = work / "in"
        folder.mkdir(parents=True)
        if self.name == "captions":
            source = _copy("captions/Flickr8k.token.txt", folder)
            return source, ["build", "captions", str(source)]
        if self.name == "chunks-jsonl":
            source = _copy("chunks/docs.jsonl", folder)
            return source, ["build", "chunks", str(source)]
        if self.name == "chunks-folder":
            docs = folder / "docs"
            docs.mkdir()
            paragraphs = [p for p in (CORPUS / "chunks" / "wikitext.txt").read_text(
                encoding="utf-8-sig").split("\n \n") if p.strip()]
            for i, part in enumerate(np.array_split(np.array(paragraphs, dtype=object), 3)):
                (docs / f"doc{i}.txt").write_text("\n\n".join(part))
            return docs, ["build", "chunks", str(docs)]
        chunks = _copy("sequences/chunks.parquet", folder)
        vectors = _copy("sequences/vectors.npy", folder)
        return vectors, ["build", "sequences", str(chunks), "--vectors", str(vectors),
                         "--context", "2"]


BUILDS = [Build("captions", "captions", "captions.parquet", "out.parquet"),
          Build("chunks-jsonl", "chunks", "chunks.parquet", "out.parquet"),
          Build("chunks-folder", "chunks", "chunks.parquet", "out.parquet"),
          Build("sequences", "sequences", "sequences.npz", "out.npz")]


def _copy(seed: str, folder: Path) -> Path:
    return Path(shutil.copyfile(CORPUS / seed, folder / Path(seed).name))


def _variant(data: bytes, path: Path) -> bytes:
    """Other valid bytes of the same size: vectors doubled plus one; in JSON lines every
    ``Document`` written in capitals; in a text file the letters of its middle third swapped
    in case (other captions, image names or paragraphs, still well formed)."""
    if path.suffix == ".npy":
        array = np.load(path, allow_pickle=False)
        header = len(data) - array.nbytes
        return data[:header] + (array * 2 + 1).astype(array.dtype).tobytes()
    if path.suffix == ".jsonl":
        return data.replace(b"Document", b"DOCUMENT")
    third = len(data) // 3
    return data[:third] + data[third:2 * third].swapcase() + data[2 * third:]


def _replace(path: Path, data: bytes) -> None:
    other = path.with_name(f".race-{path.name}")
    other.write_bytes(data)
    os.replace(other, path)


def _plan(change: str, changed: Path) -> tuple[Callable[[], None], Callable[[], None] | None]:
    """(the change, and what puts the old bytes back once the builder has read the input)."""
    if changed.is_dir():
        files = sorted(changed.glob("*.txt"))
        target, original = files[0], files[0].read_bytes()
        edit = {"edit_file": lambda: target.write_bytes(_variant(original, target)),
                "edit_then_restore": lambda: target.write_bytes(_variant(original, target)),
                "add_file": lambda: (changed / "zz-added.txt").write_text("Added text here.\n"),
                "remove_file": lambda: files[-1].unlink(),
                "mv_file": lambda: _replace(target, _variant(original, target))}[change]
        restore = (lambda: target.write_bytes(original)) if change == "edit_then_restore" \
            else None
        return edit, restore
    original = changed.read_bytes()
    variant = _variant(original, changed)

    def in_place():
        with open(changed, "r+b") as fh:
            fh.write(variant)

    def append():
        with open(changed, "ab") as fh:
            fh.write(b"\n" if changed.suffix != ".npy" else bytes(16))

    def touch():
        stat = changed.stat()
        os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))

    edit = {"mv_other": lambda: _replace(changed, variant), "in_place": in_place,
            "append": append, "touch": touch,
            "mv_then_restore": lambda: _replace(changed, variant)}[change]
    restore = (lambda: _replace(changed, original)) if change == "mv_then_restore" else None
    return edit, restore


def _once(action):
    done = []

    def run():
        if not done:
            done.append(True)
            action()
    return run


def _state(build: Build, changed: Path, work: Path, setup_args: list[str],
           references: dict) -> tuple[dict, object]:
    """(input digests of the key, reference output) of the input as it is now, built without
    hooks in a cache of its own (remembered by the bytes, across examples)."""
    if changed.is_dir():
        fingerprint = tuple(sorted((p.name, p.read_bytes()) for p in changed.iterdir()))
    else:
        fingerprint = changed.read_bytes()
    key = (build.name, fingerprint)
    if key not in references:
        root = work / f"reference-{len(references)}"
        out = work / f"reference-{len(references)}{Path(build.out).suffix}"
        case = Case(TARGET, "reference", "", [*setup_args, "--cache-dir", str(root), "-o",
                                               str(out), "--quiet"], work, {})
        outcome = run_in_process(case)
        if outcome.exit_code != 0:
            raise RuntimeError(f"the reference build failed: {outcome.output}")
        [entry] = Cache(root).entries(build.stage)
        references[key] = (_digests(entry.manifest), _read(out))
        shutil.rmtree(root)
        out.unlink()
    return references[key]


def _digests(manifest: dict) -> dict:
    return {role: value["sha256"] for role, value in manifest["key_inputs"]["inputs"].items()}


def _read(path: Path):
    if path.suffix == ".parquet":
        return pq.read_table(path)
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def _same(a, b) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(
            np.array_equal(a[k], b[k]) for k in a)
    return not isinstance(b, dict) and a.equals(b)


_REFERENCES: dict = {}


def _keep(changed: Path, work: Path):
    """What puts the input back as it was: its bytes, or a copy of the folder."""
    if not changed.is_dir():
        return changed.read_bytes()
    return Path(shutil.copytree(changed, work / "keep"))


def _put_back(changed: Path, kept) -> None:
    if isinstance(kept, bytes):
        _replace(changed, kept)
    else:
        shutil.rmtree(changed)
        shutil.copytree(kept, changed)


def explore_once(data: st.DataObject, work: Path, log) -> None:
    """Draw one build, moment, change and cache state; run it; check every invariant."""
    build = data.draw(st.sampled_from(BUILDS), label="build")
    scenario = data.draw(st.sampled_from(sorted(MOMENTS)), label="cache")
    point = data.draw(st.sampled_from(MOMENTS[scenario]), label="moment")
    changed, args = build.setup(work)
    change = data.draw(st.sampled_from(FOLDER_CHANGES if changed.is_dir() else FILE_CHANGES),
                       label="change")
    edit, restore = _plan(change, changed)
    # the two states the input will hold, each with its reference output (made first)
    kept = _keep(changed, work)
    states = [_state(build, changed, work, args, _REFERENCES)]
    edit()
    states.append(_state(build, changed, work, args, _REFERENCES))
    _put_back(changed, kept)
    edit, restore = _plan(change, changed)  # the plan again, for the input as put back
    root, out = work / "cache", work / build.out
    common = ["--cache-dir", str(root), "--quiet"]
    if scenario != "fresh":
        seeded = run_in_process(Case(TARGET, "seed", "", [*args, *common], work, {}))
        if seeded.exit_code != 0:
            raise RuntimeError(f"the seed build failed: {seeded.output}")
    fired = []
    case = Case(TARGET, f"{change}@{point}", changed.name,
                [*args, *common, "-o", str(out), *(["--rebuild"] if scenario == "rebuild"
                                                   else [])],
                work, {}, {"output": out}, [work / "in", work / "keep", root], note=scenario)
    before = snapshot(work)
    with contextlib.ExitStack() as hooks:
        hooks.enter_context(crashpoints.acting_at(point, _once(lambda: (fired.append(point),
                                                                        edit()))))
        if restore is not None:  # the old bytes back once the builder has read the changed
            hooks.enter_context(crashpoints.acting_at("built", _once(restore)))
        outcome = run_in_process(case)
    case.mutation += "" if fired else " (not reached)"
    broken = violations(case, outcome, before)
    broken += _entries_hold_their_state(root, build, states)
    if outcome.exit_code == 0 and out.is_file():
        if not any(_same(_read(out), ref) for _, ref in states):
            broken.append(("a build commits only the bytes its key names",
                           f"exit 0 wrote {out.name}, the output of no state of the input"))
    if REFUSED in outcome.output and (outcome.exit_code != 2 or str(changed) not in
                                      outcome.output):
        broken.append(("a refused build exits 2 naming its input",
                       f"exit {outcome.exit_code}: {outcome.output.strip()[-300:]}"))
    log.add(case, outcome, broken)
    _next_build_is_right(build, args, common, work, changed, log)


def _entries_hold_their_state(root: Path, build: Build, states: list) -> list[tuple[str, str]]:
    broken = []
    for entry in Cache(root).entries(build.stage):
        if entry.broken:
            broken.append(("every entry is whole", entry.broken))
            continue
        digests = _digests(entry.manifest)
        refs = [ref for want, ref in states if want == digests]
        if not refs:
            broken.append(("a build commits only the bytes its key names",
                           "an entry is keyed by input digests of no state of the input"))
        elif not _same(_read(entry.file(build.output)), refs[0]):
            broken.append(("a build commits only the bytes its key names",
                           f"an entry of {build.stage} holds the output of other bytes than "
                           "its key names"))
    return broken


def _next_build_is_right(build: Build, args: list[str], common: list[str], work: Path,
                         changed: Path, log) -> None:
    out = work / f"next{Path(build.out).suffix}"
    case = Case(TARGET, "next build", str(changed.name), [*args, *common, "-o", str(out)], work,
                {}, {"output": out}, [work / "in", work / "keep", work / "cache", out])
    before = snapshot(work)
    outcome = run_in_process(case)
    broken = violations(case, outcome, before)
    _, expected = _state(build, changed, work, args, _REFERENCES)
    if outcome.exit_code != 0:
        broken.append(("the next build succeeds", f"exit {outcome.exit_code}: "
                                                  f"{outcome.output.strip()[-300:]}"))
    elif not _same(_read(out), expected):
        broken.append(("the next build succeeds", "it wrote another output than a fresh build "
                                                  "of the input as it is"))
    log.add(case, outcome, broken)


def run_seeds(work: Path) -> Outcome:
    """Each build once on its unchanged seeds, without hooks (exit 0 expected of every one)."""
    for build in BUILDS:
        folder = work / build.name
        changed, args = build.setup(folder)
        out = folder / build.out
        outcome = run_in_process(Case(TARGET, "seed", changed.name,
                                      [*args, "--cache-dir", str(folder / "cache"), "--quiet",
                                       "-o", str(out)], folder, {}))
        if outcome.exit_code != 0 or not out.is_file():
            return outcome
    return Outcome(0, "")

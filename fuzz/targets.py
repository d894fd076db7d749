"""The fuzz targets: one per reader and per command family, each with its seeds and command.

A target names the corpus seeds its command reads (by role), how to call the command on a copy
of them in a fresh folder, and the options whose values are worth making hostile. ``draw_case``
turns a target and a hypothesis draw into one ``Case``: a copy of the seeds with one of them
mutated (``fuzz.mutations``, ``fuzz.arrays``), or a special file in place of an input or output,
or one hostile option value.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import strategies as st

from fuzz.arrays import STRUCTURED
from fuzz.invariants import Case
from fuzz.mutations import BYTE_MUTATIONS, CORPUS

P = dict[str, Path]
Command = Callable[[P, Path], tuple[list[str], dict[str, Path], list[Path]]]

HOSTILE_OPTION_VALUES = ["-1", "0", "-9223372036854775809", "9223372036854775808", "nan", "inf",
                         "-inf", "1e400", "", "abc", "1e12"]
HOSTILE_NAMES = ["", ",", "..", "../x", "/etc", "a\tb", "nosuch", "image_id,image_id",
                 "Smiling,Smiling", "-1"]


@dataclass(frozen=True)
class Target:
    name: str
    family: str
    seeds: dict[str, str]
    command: Command
    options: dict[str, list[str]] = field(default_factory=dict)
    primary: str = "source"
    slow: bool = False

    def paths(self, work: Path) -> P:
        return {role: work / "in" / Path(seed).name for role, seed in self.seeds.items()}


def _build(kind: str, out_name: str, *extra: str, source_role: str = "source") -> Command:
    def command(p: P, work: Path):
        out, report = work / out_name, work / "report.json"
        source = [str(p[source_role])] if source_role in p else []
        args = ["build", kind, *source, *[_fill(a, p) for a in extra], "-o", str(out),
                "--json", str(report), "--cache-dir", str(work / "cache"), "--quiet"]
        return args, {"output": out, "report": report}, [work / "cache"]
    return command


def _check(*words: str) -> Command:
    def command(p: P, work: Path):
        report = work / "report.json"
        return [_fill(w, p) for w in words] + ["--json", str(report)], {"report": report}, []
    return command


def _train(*words: str) -> Command:
    def command(p: P, work: Path):
        run = work / "run"
        return ([_fill(w, p) for w in words] + ["--out", str(run), "--device", "cpu", "--quiet",
                                                "--steps", "2", "--warmup-steps", "1",
                                                "--log-every", "1", "--monitor-warmup", "1000"],
                {}, [run])
    return command


def _fill(word: str, p: P) -> str:
    return str(p[word[1:]]) if word.startswith("@") else word


SIZE = ["-1", "0", "9223372036854775808", "abc"]

TARGETS: list[Target] = [
    Target("captions-tokens", "build", {"source": "captions/Flickr8k.token.txt"},
           _build("captions", "captions.parquet"), {"--splits": HOSTILE_NAMES}),
    Target("captions-flickr-csv", "build", {"source": "captions/results.csv"},
           _build("captions", "captions.parquet")),
    Target("captions-coco-json", "build", {"source": "captions/captions_val2017.json"},
           _build("captions", "captions.parquet"), {"--split": HOSTILE_NAMES}),
    Target("captions-parquet", "build", {"source": "captions/flickr30k.parquet"},
           _build("captions", "captions.parquet"), {"--splits": HOSTILE_NAMES}),
    Target("chunks-wikitext", "build", {"source": "chunks/wikitext.txt"},
           _build("chunks", "chunks.parquet", "--unit", "line"),
           {"--doc-pattern": ["(", "", "\\", "(?P<x>", "[", ".*", "(a)(b)", "^$"]}),
    Target("chunks-jsonl", "build", {"source": "chunks/docs.jsonl"},
           _build("chunks", "chunks.parquet"), {"--text-field": HOSTILE_NAMES,
                                                "--doc-field": HOSTILE_NAMES}),
    Target("chunks-parquet", "build", {"source": "chunks/docs.parquet"},
           _build("chunks", "chunks.parquet"), {"--text-field": HOSTILE_NAMES}),
    Target("sequences-build", "build", {"source": "sequences/chunks.parquet",
                                        "vectors": "sequences/vectors.npy"},
           _build("sequences", "seq.npz", "--vectors", "@vectors", "--context", "2"),
           {"--context": SIZE + ["5000"]}),
    Target("attributes-celeba", "build", {"source": "attributes/list_attr_celeba.txt",
                                          "identities": "attributes/identity_CelebA.txt",
                                          "partition": "attributes/list_eval_partition.txt"},
           _build("attributes", "attrs.parquet", "--identities", "@identities",
                  "--partition", "@partition"), {"--attributes": HOSTILE_NAMES}),
    Target("attributes-csv", "build", {"source": "attributes/attrs.csv"},
           _build("attributes", "attrs.parquet"), {"--attributes": HOSTILE_NAMES}),
    Target("scenes-build", "build", {}, _build("scenes", "scenes.npz", "--num", "4", "--size",
                                               "16", source_role="none"),
           {"--num": SIZE, "--size": SIZE + ["3"], "--max-objects": SIZE + ["300"],
            "--min-objects": SIZE + ["7"], "--min-visible": SIZE + ["100000"]}, primary="none"),
    Target("validate-captions-parquet", "validate", {"table": "tables/captions.parquet"},
           _check("validate", "captions", "@table"),
           {"--group-size": SIZE, "--min-group": SIZE, "--max-group": SIZE,
            "--max-singleton-share": HOSTILE_OPTION_VALUES}, primary="table"),
    Target("validate-captions-csv", "validate", {"table": "tables/captions.csv"},
           _check("validate", "captions", "@table"), primary="table"),
    Target("validate-sequences-dense", "validate", {"file": "sequences/dense.npz"},
           _check("validate", "sequences", "@file"),
           {"--max-duplicate-share": HOSTILE_OPTION_VALUES}, primary="file"),
    Target("validate-sequences-compact", "validate", {"file": "sequences/compact.npz"},
           _check("validate", "sequences", "@file"), primary="file"),
    Target("validate-scenes", "validate", {"file": "scenes/scenes.npz"},
           _check("validate", "scenes", "@file"), {"--min-visible": SIZE}, primary="file"),
    Target("validate-attributes", "validate", {"table": "tables/attrs.parquet"},
           _check("validate", "attributes", "@table", "--min-rows", "1"),
           {"--min-rows": SIZE, "--attributes": HOSTILE_NAMES}, primary="table"),
    Target("validate-flips", "validate", {"table": "tables/attrs.parquet"},
           _check("validate", "flips", "--table", "@table", "--batch-size", "8"),
           {"--batch-size": SIZE, "--per-group": SIZE, "--max-flips": SIZE + ["40"],
            "--min-flips": SIZE, "--attributes": HOSTILE_NAMES}, primary="table"),
    Target("batches-grouped", "audit", {"table": "tables/captions.parquet"},
           _check("validate", "batches", "@table", "--sampler", "grouped", "-b", "10", "-k", "2",
                  "--quiet"),
           {"-b": SIZE, "-k": SIZE, "-w": SIZE, "-e": SIZE, "--seed": SIZE,
            "--group-column": HOSTILE_NAMES}, primary="table"),
    Target("batches-sequences", "audit", {"table": "sequences/dense.npz"},
           _check("validate", "batches", "@table", "--sampler", "diverse", "-b", "8", "-m", "2",
                  "--quiet"), {"-m": SIZE, "--doc-column": HOSTILE_NAMES}, primary="table"),
    Target("diagnose-match-ids", "diagnose", {"table": "tables/captions.parquet"},
           _check("diagnose", "match-ids", "@table", "-b", "8", "--quiet"),
           {"-b": SIZE, "--max-batches": SIZE}, primary="table"),
    Target("diagnose-embeddings", "diagnose", {"pred": "embeddings/pred.npy",
                                               "targets": "embeddings/targets.npy",
                                               "labels": "embeddings/labels.npy"},
           _check("diagnose", "embeddings", "@pred", "--targets", "@targets", "--labels",
                  "@labels"),
           {"--max-samples": SIZE, "--seed": SIZE,
            "--min-rank-fraction": HOSTILE_OPTION_VALUES}, primary="pred"),
    Target("train-contrastive", "train", {"captions": "tables/captions.parquet",
                                          "text": "embeddings/targets.npy"},
           _train("train", "contrastive", "--captions", "@captions", "--text-features", "@text",
                  "--batch-size", "8", "--hidden", "16"),
           {"--batch-size": SIZE}, primary="captions", slow=True),
    Target("train-lvm", "train", {"sequences": "sequences/compact.npz"},
           _train("train", "lvm", "--sequences", "@sequences", "--batch-size", "8", "--layers",
                  "1", "--hidden", "16"), {"--batch-size": SIZE}, primary="sequences",
           slow=True),
    Target("train-slots", "train", {"scenes": "scenes/scenes.npz"},
           _train("train", "slots", "--scenes", "@scenes", "--batch-size", "4", "--slots", "4",
                  "--slot-dim", "8", "--channels", "8"), {"--slots": SIZE},
           primary="scenes", slow=True),
    Target("train-flow", "train", {"embeddings": "embeddings/attr_embeddings.npy",
                                   "attributes": "tables/attrs.parquet"},
           _train("train", "flow", "--embeddings", "@embeddings", "--attributes", "@attributes",
                  "--attributes-to-flip", "Smiling,Male", "--batch-size", "4", "--per-group",
                  "1", "--hidden", "16"),
           {"--per-group": SIZE}, primary="embeddings", slow=True),
]

BY_NAME = {t.name: t for t in TARGETS}

# inputs that have crashed a native parser (a segfault would end an in-process run)
NATIVE_CRASHERS = {"deep_json", "known_bad"}
SPECIALS = ["fifo_input", "directory_input", "output_is_input", "report_is_input",
            "device_output", "fifo_output", "symlink_input_outside"]


def copy_seeds(target: Target, work: Path) -> P:
    (work / "in").mkdir(parents=True, exist_ok=True)
    paths = target.paths(work)
    for role, seed in target.seeds.items():
        shutil.copyfile(CORPUS / seed, paths[role])
    return paths


def draw_case(target: Target, data: st.DataObject, work: Path, *,
              allow_subprocess: bool = True) -> Case:
    """Copy the seeds into ``work`` and make one hostile change, drawn by ``data``."""
    paths = copy_seeds(target, work)
    marker = work / "PICKLE_EXECUTED"
    classes = ["bytes"] * 4 if paths else []
    if any(p.suffix in STRUCTURED for p in paths.values()):
        classes += ["structured"] * 3
    if target.options:
        classes += ["option"]
    specials = [s for s in SPECIALS if paths or s in ("device_output", "fifo_output")]
    if not allow_subprocess:
        specials = [s for s in specials if s in ("directory_input", "output_is_input",
                                                 "report_is_input", "symlink_input_outside")]
    if specials:
        classes += ["special"]
    kind = data.draw(st.sampled_from(classes), label="class")
    role = data.draw(st.sampled_from(sorted(paths)), label="role") if paths else "none"
    note, empty_input, subprocess = "", False, False
    extra: list[str] = []
    special: list[Path] = []
    replace_output: Path | None = None
    if kind == "bytes":
        name = data.draw(st.sampled_from(sorted(BYTE_MUTATIONS)), label="mutation")
        blob = BYTE_MUTATIONS[name](paths[role].read_bytes(), data)
        paths[role].write_bytes(blob)
        empty_input = not blob and role == target.primary
        mutation = name
        subprocess = allow_subprocess and name in NATIVE_CRASHERS
    elif kind == "structured":
        role = data.draw(st.sampled_from(sorted(r for r, p in paths.items()
                                                if p.suffix in STRUCTURED)), label="role")
        paths[role].write_bytes(STRUCTURED[paths[role].suffix](paths[role], data, marker))
        mutation = f"structured{paths[role].suffix}"
    elif kind == "option":
        option = data.draw(st.sampled_from(sorted(target.options)), label="option")
        value = data.draw(st.sampled_from(target.options[option]), label="value")
        extra = [option, value]
        mutation, note, subprocess = "option", f"{option} {value!r}", allow_subprocess
    else:
        mutation = data.draw(st.sampled_from(specials), label="special")
        subprocess = allow_subprocess
        if mutation == "fifo_input":
            paths[role].unlink()
            os.mkfifo(paths[role])
            special.append(paths[role])
        elif mutation == "directory_input":
            paths[role].unlink()
            paths[role].mkdir()
        elif mutation == "symlink_input_outside":
            outside = work.parent / f"{work.name}-outside{paths[role].suffix}"
            shutil.move(paths[role], outside)
            paths[role].symlink_to(outside)
        elif mutation in ("device_output", "fifo_output"):
            replace_output = work / "special.out"
            if mutation == "fifo_output":
                os.mkfifo(replace_output)
            else:
                os.mknod(replace_output, stat.S_IFCHR | 0o666, os.makedev(1, 3))
            special.append(replace_output)
    args, outputs, owned = target.command(paths, work)
    if mutation in ("output_is_input", "report_is_input", "device_output", "fifo_output"):
        flag = "-o" if mutation == "output_is_input" and "output" in outputs else "--json"
        if mutation in ("device_output", "fifo_output") and "output" in outputs:
            flag = data.draw(st.sampled_from(["-o", "--json"]), label="flag")
        target_path = replace_output if replace_output is not None else paths[role]
        args = _replace_flag(args, flag, str(target_path))
        role_name = "output" if flag == "-o" else "report"
        outputs = {**outputs, role_name: target_path}
        note = f"{flag} {target_path.name}"
    return Case(target=target.name, mutation=mutation, role=role, args=args + extra, work=work,
                inputs=paths, outputs=outputs, owned=owned, marker=marker, special=special,
                empty_input=empty_input, subprocess=subprocess, note=note)


def seed_case(target: Target, work: Path) -> Case:
    """The unmutated seeds: every target must pass them (exit 0) for its findings to mean much."""
    paths = copy_seeds(target, work)
    args, outputs, owned = target.command(paths, work)
    return Case(target=target.name, mutation="none", role="none", args=args, work=work,
                inputs=paths, outputs=outputs, owned=owned, marker=work / "PICKLE_EXECUTED")


def _replace_flag(args: list[str], flag: str, value: str) -> list[str]:
    if flag in args:
        i = args.index(flag)
        return [*args[:i + 1], value, *args[i + 2:]]
    return [*args, flag, value]

"""The run-directory families: damaged checkpoints, and hostile ``--out`` directories.

``checkpoints``: a real contrastive run (checkpoints at steps 2 and 4, trained once per process
and copied into each example's folder) has one or both checkpoints damaged: their bytes (any
byte mutation: bit flips, truncation, another file's bytes, ...), their digest file (removed,
emptied, another digest, another name, mutated), or their contents rewritten with a matching
digest (a key dropped, a value of the wrong type or sign, NaN weights, a weight of another
shape, the whole state replaced by a list, a number or a tensor). Then ``evaluate`` and
``train --resume`` run on it. Besides the invariants of every run: a damaged checkpoint is never
used (``evaluate``'s JSON names the checkpoint it used, which must be byte-identical to the one
written by the training, or damaged only in the optimiser or sampler state, which evaluate does
not read); with a good checkpoint left both commands exit 0, with none both exit 2; a resume that
exits 2 leaves the run directory as it was.

``run-dirs``: ``train contrastive --out OUT`` (with or without ``--resume``) where OUT is one of:
nothing yet (nested), an empty folder, a folder of the user's files (its own ``metrics.jsonl``,
``config.json`` of another tool, notes), a link to such a folder elsewhere, a link to an empty
folder, a dangling link, a regular file, a path below a file, a FIFO, a complete run, an
unfinished run (stopped before its first checkpoint), a folder of stale temporary and lock files,
a run whose ``config.json`` names another recipe, or a run that another training holds. Besides
the invariants of every run: the exit code is the one the kind of OUT calls for (0 or 2), the
user's files (and a linked folder's) are byte-identical afterwards, a refused OUT that did not
exist still does not, and an accepted OUT holds a whole run (config, evaluation, a checkpoint
that passes its digest and checks).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from hypothesis import strategies as st

from fuzz.invariants import Case, Outcome
from fuzz.mutations import BYTE_MUTATIONS, CORPUS

SEEDS = {"captions": "tables/captions.parquet", "text": "embeddings/targets.npy"}
TRAIN = ["train", "contrastive", "--batch-size", "8", "--hidden", "16", "--device", "cpu",
         "--quiet", "--steps", "4", "--checkpoint-every", "2", "--warmup-steps", "1",
         "--log-every", "1", "--monitor-warmup", "1000"]
CHECKPOINTS = ("step-00000004.pt", "step-00000002.pt")
STATE_DAMAGE = ["drop_key", "retype", "nan_weights", "other_shape", "not_a_dict",
                "rng_text", "optimizer_garbage", "sampler_garbage", "model_config_list"]
DIGEST_DAMAGE = ["removed", "emptied", "other_digest", "other_name", "mutated"]
_TEMPLATE: list[Path] = []


def train_args(work: Path, out: Path, *extra: str) -> list[str]:
    inputs = inputs_of(work)
    return [*TRAIN[:2], "--captions", str(inputs["captions"]), "--text-features",
            str(inputs["text"]), *TRAIN[2:], "--out", str(out), *extra]


def inputs_of(work: Path) -> dict[str, Path]:
    return {role: work / "in" / Path(seed).name for role, seed in SEEDS.items()}


def template(run_in_process) -> Path:
    """A folder with the seeds in ``in/`` and a finished run in ``run/`` (made once)."""
    if _TEMPLATE:
        return _TEMPLATE[0]
    folder = Path(tempfile.mkdtemp(prefix="fuzz-run-template-"))
    (folder / "in").mkdir()
    for role, seed in SEEDS.items():
        shutil.copyfile(CORPUS / seed, inputs_of(folder)[role])
    outcome = run_in_process(Case("checkpoints", "none", "none",
                                  train_args(folder, folder / "run"), folder, {}))
    if outcome.exit_code != 0:
        raise RuntimeError(f"the run template's training failed: {outcome.output}")
    _TEMPLATE.append(folder)
    return folder


def copy_template(work: Path, run_in_process) -> Path:
    source = template(run_in_process)
    shutil.copytree(source / "in", work / "in")
    shutil.copytree(source / "run", work / "run")
    return work / "run"


def seed_case(name: str, work: Path, run_in_process) -> Case:
    """The unmutated case of ``name``: evaluate the run as trained, or train into a new
    directory."""
    if name == "checkpoints":
        run = copy_template(work, run_in_process)
        report = work / "evaluate.json"
        return Case(name, "none", "none", ["evaluate", str(run), "--device", "cpu", "--json",
                                           str(report)], work, inputs_of(work),
                    {"report": report}, [run])
    shutil.copytree(template(run_in_process) / "in", work / "in")
    return Case(name, "none", "none", train_args(work, work / "out"), work, inputs_of(work), {},
                [work / "out"])


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _bytes_or_none(path: Path) -> bytes | None:
    return path.read_bytes() if path.is_file() else None


def _write_with_digest(path: Path, state) -> None:
    import torch

    torch.save(state, path)
    path.with_name(path.name + ".sha256").write_text(f"{_digest(path)}  {path.name}\n")


def _damage_state(path: Path, data: st.DataObject) -> str:
    import torch

    state = torch.load(path, weights_only=True)
    damage = data.draw(st.sampled_from(STATE_DAMAGE), label="state damage")
    first = next(iter(state["model"]))
    if damage == "drop_key":
        key = data.draw(st.sampled_from(sorted(state)), label="key")
        del state[key]
        damage = f"drop_key {key}"
    elif damage == "retype":
        key = data.draw(st.sampled_from(["step", "epoch", "batch_in_epoch", "recipe", "model",
                                         "optimizer", "sampler", "rng", "model_config"]))
        value = data.draw(st.sampled_from(["4", 4.5, -1, 2**70, [], None, True,
                                           "tensor"]), label="value")
        state[key] = torch.zeros(2) if value == "tensor" else value
        damage = f"retype {key}={value!r}"
    elif damage == "nan_weights":
        state["model"][first] = torch.full_like(state["model"][first], float("nan"))
    elif damage == "other_shape":
        state["model"][first] = torch.zeros(3, 5)
    elif damage == "not_a_dict":
        state = data.draw(st.sampled_from([[1, 2], 7, "state", None]), label="state")
    elif damage == "rng_text":
        state["rng"] = {"cpu": "seed"}
    elif damage == "optimizer_garbage":
        state["optimizer"] = {"state": {}, "param_groups": [{"params": [99]}]}
    elif damage == "sampler_garbage":
        state["sampler"] = {"version": 1, "kind": "x"}
    else:
        state["model_config"] = [1, 2]
    _write_with_digest(path, state)
    return f"state {damage}"


def _damage_digest(path: Path, data: st.DataObject) -> str:
    side = path.with_name(path.name + ".sha256")
    damage = data.draw(st.sampled_from(DIGEST_DAMAGE), label="digest damage")
    if damage == "removed":
        side.unlink()
    elif damage == "emptied":
        side.write_text("")
    elif damage == "other_digest":
        side.write_text(f"{'0' * 64}  {path.name}\n")
    elif damage == "other_name":
        side.write_text(f"{_digest(path)}  step-99999999.pt\n")
    else:
        name = data.draw(st.sampled_from(sorted(BYTE_MUTATIONS)), label="mutation")
        side.write_bytes(BYTE_MUTATIONS[name](side.read_bytes(), data))
        damage = f"mutated {name}"
    return f"digest {damage}"


def draw_checkpoint_cases(data: st.DataObject, work: Path, run_in_process,
                          allow_subprocess: bool = True) -> list[tuple[Case, object]]:
    run = copy_template(work, run_in_process)
    originals = {name: ((run / "checkpoints" / name).read_bytes(),
                        (run / "checkpoints" / f"{name}.sha256").read_bytes())
                 for name in CHECKPOINTS}
    which = data.draw(st.sampled_from(["newest", "older", "both"]), label="which")
    chosen = {"newest": CHECKPOINTS[:1], "older": CHECKPOINTS[1:], "both": CHECKPOINTS}[which]
    notes: list[str] = []
    model_intact: list[str] = []  # only what a resume needs is damaged: evaluate may use it
    for name in chosen:
        path = run / "checkpoints" / name
        kind = data.draw(st.sampled_from(["bytes", "digest", "state"]), label="kind")
        if kind == "bytes":
            mutation = data.draw(st.sampled_from(sorted(BYTE_MUTATIONS)), label="mutation")
            path.write_bytes(BYTE_MUTATIONS[mutation](path.read_bytes(), data))
            notes.append(f"{name} bytes {mutation}")
        elif kind == "digest":
            notes.append(f"{name} {_damage_digest(path, data)}")
        else:
            note = _damage_state(path, data)
            notes.append(f"{name} {note}")
            if note.endswith(("optimizer_garbage", "sampler_garbage")):
                model_intact.append(name)
    # a mutation that changed nothing leaves a good checkpoint
    good = [n for n in CHECKPOINTS if _bytes_or_none(run / "checkpoints" / n) == originals[n][0]
            and _bytes_or_none(run / "checkpoints" / f"{n}.sha256") == originals[n][1]]
    report = work / "evaluate.json"
    inputs = inputs_of(work)
    note = "; ".join(notes)
    evaluate = Case("checkpoints", which, "checkpoint", ["evaluate", str(run), "--device", "cpu",
                                                         "--json", str(report)],
                    work, inputs, {"report": report}, [run], note=note)
    resume = Case("checkpoints", which, "checkpoint", train_args(work, run, "--resume"), work,
                  inputs, {}, [run], note=note)
    return [(evaluate, _evaluated_good(report, good + model_intact)),
            (resume, _resumed(run, good))]


def _evaluated_good(report: Path, good: list[str]):
    def check(case: Case, outcome: Outcome) -> list[tuple[str, str]]:
        if outcome.exit_code == 0:
            used = json.loads(report.read_text())["checkpoint"]
            if used not in good:
                return [("a damaged checkpoint is never used", f"evaluate used {used}")]
            return []
        if good:
            return [("a good checkpoint left is used", f"exit {outcome.exit_code} with {good[0]} "
                     "intact")]
        return [] if outcome.exit_code == 2 else [("no good checkpoint is exit 2",
                                                   f"exit {outcome.exit_code}")]
    return check


def _resumed(run: Path, good: list[str]):
    before: dict[str, str] = {}

    def snapshot() -> dict[str, str]:
        return {str(p.relative_to(run)): _digest(p) for p in sorted(run.rglob("*"))
                if p.is_file() and p.name != ".run.owner"}

    before.update(snapshot())

    def check(case: Case, outcome: Outcome) -> list[tuple[str, str]]:
        if outcome.exit_code == 0:
            return [] if good else [("no good checkpoint is exit 2", "resume exited 0")]
        found = []
        if good:
            found.append(("a good checkpoint left is used", f"resume exit {outcome.exit_code} "
                          f"with {good[0]} intact"))
        if snapshot() != before:
            found.append(("a failed resume writes nothing", "the run directory changed"))
        return found
    return check


# run directories -----------------------------------------------------------------------------
OUT_KINDS = ["new", "empty", "users_files", "link_to_users_files", "link_to_empty",
             "dangling_link", "file", "below_a_file", "fifo", "run", "unfinished", "leftovers",
             "other_recipe", "held"]
USER_FILES = {"metrics.jsonl": '{"step": 1, "accuracy": 0.9}\n', "notes.txt": "mine\n",
              "config.json": '{"name": "my project"}\n', "checkpoints/model.bin": "weights",
              "hosts": "127.0.0.1 localhost\n"}
# exit code by (kind, --resume): 0 trains, 2 is refused
EXPECTED = {("new", False): 0, ("empty", False): 0, ("link_to_empty", False): 0,
            ("unfinished", False): 0, ("leftovers", False): 0, ("run", True): 0}


def _users_folder(path: Path, data: st.DataObject) -> list[str]:
    names = data.draw(st.lists(st.sampled_from(sorted(USER_FILES)), min_size=1, max_size=3,
                               unique=True), label="user files")
    for name in names:
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(USER_FILES[name])
    return names


def draw_run_dir_cases(data: st.DataObject, work: Path, run_in_process,
                       allow_subprocess: bool = True) -> list[tuple[Case, object]]:
    kinds = [k for k in OUT_KINDS if allow_subprocess or k != "fifo"]
    kind = data.draw(st.sampled_from(kinds), label="out kind")
    resume = data.draw(st.booleans(), label="resume")
    out = work / "out"
    outside = work / "elsewhere"
    held = None
    if kind in ("run", "unfinished", "other_recipe", "held"):
        shutil.copytree(copy_template(work, run_in_process), out)
        shutil.rmtree(work / "run")
    else:
        shutil.copytree(template(run_in_process) / "in", work / "in")
    if kind == "new":
        out = work / "runs" / "a" / "out"
    elif kind == "empty":
        out.mkdir()
    elif kind == "users_files":
        out.mkdir()
        _users_folder(out, data)
    elif kind in ("link_to_users_files", "link_to_empty", "dangling_link"):
        if kind != "dangling_link":
            outside.mkdir()
        if kind == "link_to_users_files":
            _users_folder(outside, data)
        out.symlink_to(outside)
    elif kind == "file":
        out.write_text("a file\n")
    elif kind == "below_a_file":
        (work / "afile").write_text("a file\n")
        out = work / "afile" / "out"
    elif kind == "fifo":
        os.mkfifo(out)
    elif kind == "unfinished":
        shutil.rmtree(out / "checkpoints")
        (out / "eval.json").unlink()
        (out / "projection.npz").unlink(missing_ok=True)
    elif kind == "leftovers":
        out.mkdir()
        (out / ".run.lock").write_text("")
        (out / ".config.json.uncollapse-tmp-99999999-00000000-abcd").write_text("{")
    elif kind == "other_recipe":
        config = json.loads((out / "config.json").read_text())
        (out / "config.json").write_text(json.dumps({**config, "recipe": "lvm"}))
    elif kind == "held":
        from uncollapse.trainers.run_lock import RunLock

        held = RunLock(out)
        held.acquire()
    user = {}
    if kind in ("users_files", "link_to_users_files"):
        folder = out if kind == "users_files" else outside
        user = {str(p): _digest(p) for p in folder.rglob("*") if p.is_file()}
    existed = os.path.lexists(out)
    expected = EXPECTED.get((kind, resume), 2)
    args = train_args(work, out, *(["--resume"] if resume else []))
    owned = [out, work / "runs"] + ([outside] if kind == "link_to_empty" else [])
    case = Case("run-dirs", kind, "--out", args, work, inputs_of(work), {}, owned,
                special=[out] if kind == "fifo" else [], subprocess=kind == "fifo",
                note=f"{kind}{' --resume' if resume else ''}")
    return [(case, _out_checked(out, expected, user, existed, held))]


def _out_checked(out: Path, expected: int, user: dict[str, str], existed: bool, held):
    def check(case: Case, outcome: Outcome) -> list[tuple[str, str]]:
        if held is not None:
            held.release()
        found = []
        if outcome.exit_code != expected:
            found.append(("the exit code the --out calls for",
                          f"{case.note}: exit {outcome.exit_code}, expected {expected}"))
        changed = [Path(p).name for p, digest in user.items()
                   if not Path(p).is_file() or _digest(Path(p)) != digest]
        if changed:
            found.append(("the user's files are never touched", f"{changed[0]} changed"))
        if outcome.exit_code != 0 and not existed and os.path.lexists(out):
            found.append(("a refused --out is not created", f"{out.name} exists after exit "
                          f"{outcome.exit_code}"))
        if outcome.exit_code == 0:
            from uncollapse.trainers.run_dir import RunDir

            run = RunDir(out)
            try:
                run.load_checkpoint()
            except Exception as exc:  # any failure to read the run back is the finding
                found.append(("an accepted --out holds a whole run", f"{exc}"[:200]))
            if not run.eval.is_file() or not run.config.is_file():
                found.append(("an accepted --out holds a whole run", "no eval.json or config"))
        return found
    return check

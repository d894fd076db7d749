"""``uncollapse train RECIPE``, ``evaluate``, ``report`` and ``serve``.

``train`` has one command per recipe of ``uncollapse.families.RECIPES``. A recipe's options are
the fields of its config dataclass (``uncollapse.trainers.<recipe>.config``): the help text of
each comes from the class docstring, its Click type from the bounds and choices declared on the
field, and the command's help (summary and example) from the config module's docstring, so the
command line and the Python API cannot drift apart. torch and the recipes are imported inside
the commands.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import inspect
import json
import logging
import re
import types
import typing
import warnings
from collections.abc import Iterator
from pathlib import Path

import click

from uncollapse import families
from uncollapse.cli_paths import DirectoryPath, InputPath, OutputPath
from uncollapse.cli_ranges import count, finite
from uncollapse.trainers.config import DEVICES, TrainConfig

HIDDEN = {"recipe", "out"}
# what evaluate, report and serve read of a run directory (an output elsewhere in it is fine)
RUN_FILES = frozenset({"config.json", "metrics.jsonl", "eval.json", "projection.npz",
                       "checkpoints", "report", "tensorboard"})
RUN_DIR = InputPath(file_okay=False, dir_okay=True, reads_inside=RUN_FILES)
PORT = count(1, 65535)
SERVE_PORT = count(0, 65535)
BODY_BYTES = count(1, 1 << 40)
WRITES = ("Writes RUN_DIR/config.json, metrics.jsonl, checkpoints/, eval.json. --out must be "
          "new, empty or a run of this recipe (with --resume). Exit 1 when the pre-flight check "
          "refuses the inputs or a guard stops the run; 130 on Ctrl-C (the message says whether "
          "a resumable run was left).")


def field_help(cls: type) -> dict[str, str]:
    """``{field: help}`` from the ``Args:`` sections of ``cls``'s and its bases' docstrings."""
    helps: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        doc = inspect.cleandoc(klass.__doc__ or "")
        if "Args:" not in doc:
            continue
        current: list[str] = []
        for line in doc.split("Args:", 1)[1].splitlines():
            match = re.match(r"^    ([\w, ]+): (.*)$", line)
            if match:
                current = [n.strip() for n in match.group(1).split(",")]
                for name in current:
                    helps[name] = match.group(2).strip()
            elif line.startswith("        ") and current:
                for name in current:
                    helps[name] += " " + line.strip()
    return {name: text.replace("``", "") for name, text in helps.items()}


def _base_type(annotation):
    hint = eval(annotation, vars(typing)) if isinstance(annotation, str) else annotation
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return args[0]
    return hint


def option_type(spec: dataclasses.Field):
    """The Click type of a config field, from what the field declares: its choices, that it
    names an input file, or its bounds (a count or a finite float within them)."""
    metadata, kind = spec.metadata, _base_type(spec.type)
    if "choices" in metadata:
        return click.Choice(metadata["choices"])
    if metadata.get("input"):
        return InputPath(missing_ok=True)
    low, high = metadata.get("min"), metadata.get("max")
    if kind is int:
        if low is None:
            raise TypeError(f"{spec.name}: an integer option declares its lower bound "
                            "(option(..., at_least=...))")
        return count(low + 1 if metadata["min_open"] else low,
                     None if high is None else high - 1 if metadata["max_open"] else high)
    if kind is float:
        return finite(None if low is None else float(low), None if high is None else float(high),
                      min_open=bool(metadata.get("min_open")),
                      max_open=bool(metadata.get("max_open")))
    return kind


def config_options(config_class: type[TrainConfig]):
    """Click options for every field of ``config_class`` (``--batch-size`` for batch_size)."""
    helps = field_help(config_class)

    def decorate(command):
        for spec in reversed(dataclasses.fields(config_class)):
            if spec.name in HIDDEN:
                continue
            flag = "--" + spec.name.replace("_", "-")
            text = helps.get(spec.name, "")
            if _base_type(spec.type) is bool:
                option = click.option(flag, spec.name, is_flag=True, default=spec.default,
                                      help=text)
            else:
                option = click.option(flag, spec.name, type=option_type(spec),
                                      default=spec.default, show_default=True, help=text,
                                      required=bool(spec.metadata.get("required")))
            command = option(command)
        return click.option("--out", "out", required=True, type=DirectoryPath(check_contents=True),
                            help="The run directory (config, metrics, checkpoints, eval).")(
            command)

    return decorate


PROSE_WORDS = {"out", "device", "captions", "sequences", "compile", "quiet", "force", "resume",
               "precision", "dropout", "residual", "temperature", "dim", "recipe", "tensorboard",
               "scenes"}


def option_flags(config_class: type[TrainConfig]) -> dict[str, str]:
    """Parameter name -> flag, for rewording the library's errors (``batch_size`` ->
    ``--batch-size``); names that are also plain words are left alone."""
    flags = {f.name: "--" + f.name.replace("_", "-") for f in dataclasses.fields(config_class)
             if f.name not in PROSE_WORDS}
    flags.update({"force=True": "--force", "resume=True": "--resume", "compile=True": "--compile",
                  "out directory": "--out directory"})
    return flags


class _Echo(logging.Handler):
    """Writes each record to stderr with ``click.echo`` (as the commands' own messages)."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(self.format(record), err=True)


@contextlib.contextmanager
def messages_on_stderr() -> Iterator[None]:
    """Show the library's messages (logger ``uncollapse``, warnings and above) on stderr while
    a command runs: a collapse the monitor warns about, near-identical initial slots."""
    handler = _Echo()
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    logger = logging.getLogger("uncollapse")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def _fail(message: str, code: int):
    error = click.ClickException(message)
    error.exit_code = code
    raise error


def train_help(entry: families.RecipeEntry) -> str:
    """The help of ``uncollapse train <recipe>``: the docstring of the recipe's config module
    (its summary, then its ``Example:`` block), with what every run writes between them."""
    module = importlib.import_module(f"{entry.package}.config")
    summary, _, example = inspect.cleandoc(module.__doc__ or entry.summary).partition("Example:")
    text = f"{summary.strip()}\n\n{WRITES}"
    return f"{text}\n\nExample:{example}" if example else text


def make_train_command(entry: families.RecipeEntry) -> click.Command:
    """``uncollapse train <recipe>`` for one entry of ``uncollapse.families.RECIPES``."""
    config_class = entry.config_class()

    def run(allow_change, **options):
        with plain_warnings(), interrupt_exits("training"):
            from uncollapse.cli_report import flags_in_errors
            from uncollapse.errors import ToolError
            from uncollapse.report import to_jsonable
            from uncollapse.trainers.engine import train
            from uncollapse.trainers.recipe import PreflightError, recipe_class
            from uncollapse.trainers.resume import ResumeMismatch
            from uncollapse.validators.collapse.monitor import CollapseError, LossGuardError

            if options["resume"]:
                options = _run_values_for_unset_options(options, config_class)
            config = config_class(**options)
            try:
                with messages_on_stderr():
                    result = train(recipe_class(entry.name), config,
                                   allow_change=allow_change or ())
            except PreflightError as exc:
                _fail(str(exc).replace("force=True", "--force"), 1)
            except (LossGuardError, CollapseError) as exc:
                _fail(f"training stopped: {exc}", 1)
            except ResumeMismatch as exc:
                raise ResumeMismatch(exc.run_dir, exc.changes, flag=_flag) from exc
            except (ToolError, ValueError) as exc:  # bad options or inputs, infeasible batches
                with flags_in_errors(option_flags(config_class)):
                    raise exc if isinstance(exc, ToolError) else ToolError(str(exc)) from exc
            if result.rank == 0:  # under torchrun, rank 0 evaluates and prints for the job
                click.echo(json.dumps(to_jsonable(result.evaluation), indent=2))
                click.echo(f"run directory: {result.run_dir.path}", err=True)

    command = click.command(entry.name, help=train_help(entry), short_help=entry.summary)
    allow = click.option(
        "--allow-change", metavar="OPTIONS",
        help="With --resume: options allowed to differ from the run's (comma-separated, e.g. "
             "lr,temperature); each change is recorded in metrics.jsonl. Without it, --resume "
             "refuses any option that would change the run.")
    return command(allow(config_options(config_class)(run)))


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _run_values_for_unset_options(options: dict, config_class: type[TrainConfig]) -> dict:
    """On --resume, options left at their defaults take the run's values from its config.json
    (so ``--resume`` alone continues the run); options given on the command line are compared
    with the run's by the engine."""
    from uncollapse.trainers.resume import FREE_ON_RESUME

    ctx = click.get_current_context()
    if not (Path(options["out"]) / "config.json").is_file():
        return options  # the engine says what is wrong with the directory
    saved = checked_run_config(options["out"], config_class)
    return {name: saved[name] if (name in saved and name not in FREE_ON_RESUME
                                  and ctx.get_parameter_source(name)
                                  is click.core.ParameterSource.DEFAULT) else value
            for name, value in options.items()}


def checked_run_config(run_dir, config_class: type[TrainConfig]) -> dict:
    """The options of a run's config.json (``RunDir.read_config``: each checked against the
    bounds its flag accepts): a damaged or hand-edited file is exit 2 naming the option."""
    from uncollapse.trainers.run_dir import RunDir

    return RunDir(run_dir).read_config(config_class)


@contextlib.contextmanager
def plain_warnings():
    """Warnings of the library as ``warning: message`` lines on stderr (no source lines)."""
    def show(message, category, filename, lineno, file=None, line=None):
        click.echo(f"warning: {message}", err=True)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


@contextlib.contextmanager
def interrupt_exits(what: str):
    """Ctrl-C: the interrupt's own message (or that ``what`` was interrupted), exit 130."""
    try:
        yield
    except KeyboardInterrupt as exc:
        message = str(exc) or f"{what} interrupted (Ctrl-C)"
        click.echo(f"{message}", err=True)
        raise click.exceptions.Exit(130) from None


def make_train_group() -> click.Group:
    """The ``train`` group: one command per recipe of ``uncollapse.families.RECIPES``."""

    @click.group("train")
    def group():
        """Train a reference recipe on data made and checked by uncollapse (GPU or CPU)."""

    for entry in families.RECIPES:
        group.add_command(make_train_command(entry))
    return group


train_group = make_train_group()


@click.command("evaluate")
@click.argument("run_dir", type=RUN_DIR)
@click.option("--captions", type=InputPath(),
              help="Evaluate on this caption table instead (contrastive).")
@click.option("--text-features", type=InputPath(), help="Text features aligned to --captions.")
@click.option("--image-features", type=InputPath(),
              help="Image features of --captions' images.")
@click.option("--eval-split", help="Split to evaluate on ('all': every row).")
@click.option("--sequences", type=InputPath(),
              help="Evaluate on this sequence file instead (lvm).")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
@click.option("--json", "json_path", type=OutputPath(),
              help="Also write the evaluation here (atomically).")
def evaluate_command(run_dir, captions, text_features, image_features, eval_split, sequences,
                     device, json_path):
    """Re-run a run's evaluation from its newest checkpoint, on its data or any compatible data.

    Example:
        uncollapse evaluate runs/contrastive --captions other.parquet \\
            --text-features other_text.npy --eval-split all
    """
    with plain_warnings(), interrupt_exits("evaluate"), messages_on_stderr():
        from uncollapse.report import to_jsonable
        from uncollapse.trainers.engine import evaluate_run
        from uncollapse.trainers.run_dir import RunDir

        overrides = {k: v for k, v in {"captions": captions, "text_features": text_features,
                                       "image_features": image_features,
                                       "eval_split": eval_split,
                                       "sequences": sequences}.items() if v is not None}
        name = RunDir(run_dir).recipe()
        if name in {entry.name for entry in families.RECIPES}:
            checked_run_config(run_dir, families.recipe(name).config_class())
        try:
            evaluation = evaluate_run(run_dir, overrides, device)
        except ValueError as exc:  # an option of the run's config.json the recipe refuses
            from uncollapse.errors import ToolError

            raise ToolError(f"{exc} (the options are those of {Path(run_dir) / 'config.json'}"
                            " and the data given)") from exc
        if json_path:
            RunDir(run_dir).write_json(Path(json_path), evaluation)
        click.echo(json.dumps(to_jsonable(evaluation), indent=2))


@click.command("report")
@click.argument("run_dir", type=RUN_DIR)
def report_command(run_dir):
    """Plot a run: PNG curves of every loss term and monitor, a PCA projection of predictions
    against targets, the recipe's own figure (flow: trajectories from source to target beside
    the steering baseline; slots: images, reconstructions and per-slot masks), and
    RUN_DIR/report/index.html with all of them (extra: plots).

    Example:
        uncollapse report runs/lvm
    """
    from uncollapse.extras import require

    require("matplotlib", "plots", "uncollapse report")
    with plain_warnings(), interrupt_exits("report"):
        from uncollapse.trainers.config import read_run_config
        from uncollapse.trainers.plots import write_report
        from uncollapse.trainers.run_dir import RunDir

        read_run_config(run_dir)  # a run directory, or exit 2 saying what is missing
        for fault in RunDir(run_dir).check_checkpoints():
            click.echo(f"warning: {fault}", err=True)
        click.echo(str(write_report(run_dir)))


@click.command("serve")
@click.argument("run_dir", type=RUN_DIR)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; beyond this machine (0.0.0.0), set a --token.")
@click.option("--port", type=SERVE_PORT, default=8000, show_default=True,
              help="Port to listen on (0: any free port; the one chosen is printed).")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
@click.option("--max-body", type=BODY_BYTES, default=1 << 20, show_default=True,
              help="Largest request body in bytes; a larger one gets 413 before it is read.")
@click.option("--token", envvar="UNCOLLAPSE_SERVE_TOKEN", show_envvar=True,
              help="Bearer token every request but GET /health must send (Authorization: Bearer "
                   "TOKEN). Prefer the environment variable: a flag shows in the process list.")
def serve_command(run_dir, host, port, device, max_body, token):
    """Serve a trained LVM run over HTTP: POST /predict with context vectors and
    "output": "decoder" (y_dec, raw scale) or "cosine" (y_cos); GET /health (extra: serve).
    Prints where it listens and one line per request on stderr; Ctrl-C stops it (exit 130).

    Example:
        uncollapse serve runs/lvm --port 8000
        curl -s localhost:8000/predict -H 'content-type: application/json' \\
            -d '{"context": [[0.1, ...], ...], "output": "decoder"}'
    """
    from uncollapse.extras import require

    require("fastapi", "serve", "uncollapse serve")
    require("uvicorn", "serve", "uncollapse serve")
    import socket

    from uncollapse.errors import ToolError

    if token is not None and (not token or not token.isascii() or not token.isprintable()
                              or " " in token):
        if click.get_current_context().get_parameter_source("token") \
                is click.core.ParameterSource.ENVIRONMENT and not token:
            token = None  # an empty UNCOLLAPSE_SERVE_TOKEN is no token
        else:
            raise click.BadParameter("a token is printable ASCII without spaces, and not empty",
                                     param_hint="--token")
    with plain_warnings(), interrupt_exits("serve"):
        from uncollapse.trainers.serve import create_app, is_loopback, serve

        try:
            app = create_app(run_dir, device, max_body=max_body, token=token)
        except ValueError as exc:
            raise ToolError(str(exc)) from exc
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            try:  # uvicorn exits 1 on a taken port: say so with exit 2
                probe.bind((host.strip("[]"), port))
            except OSError as exc:
                raise ToolError(f"cannot listen on {host}:{port} ({exc.strerror}); choose "
                                "another --port or stop what holds it") from exc
        if token is None and not is_loopback(host):
            click.echo(f"warning: serving on {host} without a token: anyone who can reach this "
                       "port can use the model. Set UNCOLLAPSE_SERVE_TOKEN (clients send "
                       "'Authorization: Bearer <token>'), or serve on 127.0.0.1 behind a reverse "
                       "proxy that authenticates (README, Serving)", err=True)
        code = serve(app, host, port, say=lambda line: click.echo(line, err=True))
    raise click.exceptions.Exit(code)


COMMANDS = {"": [train_group, evaluate_command, report_command, serve_command]}
